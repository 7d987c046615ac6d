"""`Scorer`: load an exported model (or a student checkpoint) and score images.

Preprocessing is the training pipeline itself: `load_image` (EXIF, any mode -> RGB, size guards) ->
`make_views(rng=None)` (evaluation: fixed fragment offsets) -> `to_batch` (ImageNet normalisation), with
the views read from the artefact's metadata. A raw score goes through the metadata's logistic mapping
when one is set.

Determinism: items are decoded in parallel (`workers` threads) but batched strictly in input order, in
groups of `batch_size` valid items (bad items are skipped, never shift a batch boundary differently
between runs), so the same inputs give the same scores on every run.
"""

from __future__ import annotations

import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from edgeiqa.data.images import MIN_SIDE, load_image, pil_to_rgb
from edgeiqa.data.views import ViewSpec, make_views, to_batch
from edgeiqa.errors import EdgeIQAError, ImageLoadError
from edgeiqa.runtime.backends import open_backend


@dataclass
class ScoreResult:
    path: str | None  # None for an array input
    score: float | None
    error: str | None = None
    info: dict = field(default_factory=dict)  # e.g. face_found, raw_score, index

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {"path": self.path, "score": self.score, "status": "ok" if self.ok else "error",
                "error": self.error, **self.info}


def array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """An in-memory image (H, W), (H, W, 3) or (H, W, 4), uint8 or any depth, to RGB uint8.

    Held to the same minimum size as files (`load_image`)."""
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim >= 2 and min(a.shape[:2]) < MIN_SIDE:
        raise ImageLoadError("<array>", f"too small ({a.shape[1]}x{a.shape[0]}); at least {MIN_SIDE} px per side is needed")
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4)):
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[..., 0]
        if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3:
            return np.ascontiguousarray(a)
        if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 4:
            return pil_to_rgb(Image.fromarray(a, "RGBA"))
        if a.dtype == np.uint8:
            return np.repeat(a[..., None], 3, axis=2)
        if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer):
            from edgeiqa.data.images import _to_uint8

            u = _to_uint8(a)
            return array_to_rgb(u)
    raise EdgeIQAError(f"array input must be (H, W), (H, W, 3) or (H, W, 4); got {a.dtype} {a.shape}")


class Scorer:
    def __init__(self, backend, path: str | Path):
        self.backend = backend
        self.path = Path(path)
        meta = backend.metadata
        if not meta or "views" not in meta:
            raise EdgeIQAError(
                f"{self.path}: no edgeiqa metadata (views, normalisation); export models with `edgeiqa export`"
            )
        self.metadata = meta
        self.views = [ViewSpec.from_dict(v) for v in meta["views"]]
        names = [v.name for v in self.views]
        if list(backend.input_names) != names:
            raise EdgeIQAError(f"{self.path}: model inputs {backend.input_names} do not match its metadata views {names}")
        self.logistic = meta.get("logistic")
        self.uses_face = any(v.kind == "face" for v in self.views)
        self._has_full = any(v.kind == "full" for v in self.views)

    @classmethod
    def load(cls, path: str | Path, providers=None, device: str | None = None, threads: int | None = None) -> "Scorer":
        """Open a model by suffix: `.onnx` (onnxruntime), `.engine` (TensorRT), `.pt` or a run folder (torch).

        providers: explicit onnxruntime provider list (names or aliases such as "cpu", "cuda"); the first
        must be the one that runs. device: "cpu" (default), "cuda" or "cuda:N".
        """
        backend = open_backend(path, providers=providers, device=device, threads=threads)
        return cls(backend, path)

    def describe(self) -> dict:
        return {"model": str(self.path), "backend": self.backend.name, "provider": self.backend.provider,
                "device": self.backend.device, "format": self.metadata.get("format"),
                "views": [v.to_dict() for v in self.views], "logistic": self.logistic is not None}

    # ------------------------------------------------------------------------------------------------
    def preprocess(self, item) -> tuple[dict[str, np.ndarray], dict]:
        """One item (path or array) -> ({view name: uint8 view}, info). Raises ImageLoadError/EdgeIQAError."""
        if isinstance(item, np.ndarray):
            img = array_to_rgb(item)
        else:
            img = load_image(item)
        views, info = make_views(img, self.views, rng=None)
        return views, info

    def _safe_preprocess(self, item):
        try:
            return self.preprocess(item), None
        except ImageLoadError as exc:
            return None, exc.reason
        except EdgeIQAError as exc:
            return None, str(exc)
        except Exception as exc:  # noqa: BLE001 - one odd file never stops the batch
            return None, f"could not preprocess: {type(exc).__name__}: {exc}"

    def _map(self, raw: np.ndarray) -> np.ndarray:
        if self.logistic is None:
            return raw.astype(np.float64)
        from edgeiqa.metrics import logistic4

        return np.asarray(logistic4(raw.astype(np.float64), self.logistic), dtype=np.float64)

    def _run_batch(self, views_list: list[dict[str, np.ndarray]]) -> np.ndarray:
        n = len(views_list)
        fixed = self.backend.fixed_batch
        if fixed is not None and fixed != n:
            if n > fixed:
                return np.concatenate([self._run_batch(views_list[i:i + fixed]) for i in range(0, n, fixed)])
            views_list = views_list + [views_list[-1]] * (fixed - n)  # pad a static batch
        feeds = {v.name: to_batch([vl[v.name] for vl in views_list]) for v in self.views}
        out = self.backend.run(feeds)
        if out.shape[0] < n:
            raise EdgeIQAError(f"model returned {out.shape[0]} scores for a batch of {n}")
        return out[:n]

    def _flush(self, pending, results):
        if not pending:
            return
        idxs = [i for i, _ in pending]
        views_list = [v for _, v in pending]
        try:
            raw = self._run_batch(views_list)
        except Exception as exc:  # noqa: BLE001 - retry one by one so only the culprit fails
            if len(pending) > 1:
                for one in pending:
                    self._flush([one], results)
                return
            results[idxs[0]].error = f"inference failed: {type(exc).__name__}: {exc}"
            return
        mapped = self._map(raw)
        for i, r, m in zip(idxs, raw, mapped):
            res = results[i]
            if not (math.isfinite(float(r)) and math.isfinite(float(m))):
                res.error = "model returned a non-finite score"
                continue
            res.score = float(m)
            if self.logistic is not None:
                res.info["raw_score"] = float(r)

    def score(self, items: Sequence | Iterable, batch_size: int = 8, workers: int = 1,
              progress: bool = False) -> list[ScoreResult]:
        """Score paths and/or arrays. One result per item, in input order; bad items carry `error`."""
        items = list(items)
        if batch_size < 1:
            raise EdgeIQAError(f"batch size must be >= 1, got {batch_size}")
        workers = max(1, int(workers or 1))
        results = [
            ScoreResult(None if isinstance(it, np.ndarray) else str(it), None,
                        info={} if not isinstance(it, np.ndarray) else {"index": i})
            for i, it in enumerate(items)
        ]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), unit="img", file=sys.stderr, dynamic_ncols=True, desc="scoring")
        chunk = max(batch_size, workers) * 4
        pending: list[tuple[int, dict]] = []
        pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        try:
            for start in range(0, len(items), chunk):
                part = items[start:start + chunk]
                prepared = list(pool.map(self._safe_preprocess, part)) if pool else [self._safe_preprocess(x) for x in part]
                for offset, (out, err) in enumerate(prepared):
                    i = start + offset
                    if err is not None:
                        results[i].error = err
                        continue
                    views, info = out
                    results[i].info.update(info)
                    if self._has_full and pending and _shape_key(pending[0][1]) != _shape_key(views):
                        self._flush(pending, results)  # a batch needs one shape per view
                        pending = []
                    pending.append((i, views))
                    if len(pending) >= batch_size:
                        self._flush(pending, results)
                        pending = []
                if bar is not None:
                    bar.update(len(part))
            self._flush(pending, results)
        finally:
            if pool is not None:
                pool.shutdown()
            if bar is not None:
                bar.close()
        return results

    def score_one(self, item) -> float:
        """Score one image; raises the item's error instead of returning it."""
        (res,) = self.score([item], batch_size=1)
        if res.error:
            raise EdgeIQAError(f"{res.path or 'array'}: {res.error}")
        return res.score


def _shape_key(views: dict[str, np.ndarray]) -> tuple:
    return tuple((k, v.shape) for k, v in views.items())


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2)))
