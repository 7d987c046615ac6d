"""`Scorer`: load an exported model (or a student checkpoint) and score images.

Preprocessing is the training pipeline itself: `load_image` (EXIF, any mode -> RGB, size guards) ->
`make_views(rng=None)` (evaluation: fixed fragment offsets) -> `to_batch` (ImageNet normalisation), with
the views read from the artefact's metadata. A raw score goes through the metadata's logistic mapping
when one is set. One opt-in exception, `fast_decode=True` (the default of `edgeiqa score`, off in the
library so eval and bench see exactly the training pipeline): when every view is a `resize` view, a large
JPEG is decoded at a reduced DCT scale that keeps at least twice the view's size (`load_image(draft=...)`),
since the view throws the rest away (benchmarks/score_folder.py: speed gain and score difference).

At load the metadata is checked against the graph (metadata version, view names vs input names, view
sizes vs static input shapes): a model whose metadata does not belong to it is refused with one line.

Determinism: items are decoded in parallel (`workers` threads) but batched strictly in input order
(`edgeiqa.runtime.pipeline`), and a score does not depend on the batch it was computed in (checked by the
tests to 1e-6 for onnxruntime and torch), so the same inputs give the same scores on every run.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from edgeiqa.data.images import MIN_SIDE, load_image, pil_to_rgb
from edgeiqa.data.views import ViewSpec, make_view, make_views, to_batch
from edgeiqa.errors import EdgeIQAError, ImageLoadError, did_you_mean
from edgeiqa.runtime.backends import open_backend
from edgeiqa.runtime.items import ScoreResult, is_in_memory, is_pil
from edgeiqa.runtime.pipeline import score_stream

FACE_EXTRA = "pip install 'edgeiqa[face]'"
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
# Names users type for these that difflib would not find (too unlike the right one).
NAME_ALIASES = {"gpu": "cuda", "nvidia": "cuda", "half": "fp16", "float16": "fp16", "bfloat16": "bf16",
                "float32": "fp32", "float": "fp32", "single": "fp32", "full": "fp32"}


def _hint(name: str, choices) -> str:
    if NAME_ALIASES.get(name) in choices:
        return f"; did you mean {NAME_ALIASES[name]!r}?"
    return did_you_mean(name, choices)


def check_device_name(device: str | None) -> None:
    """`--device` spelt auto, cpu, cuda, cuda:N or mps, else one line naming the nearest (before any loading).
    Whether this machine has that device is the backend's check."""
    if device is None:
        return
    kind, sep, index = device.strip().lower().partition(":")
    if kind in DEVICES and (not sep or (kind == "cuda" and index.isdigit())):
        return
    raise EdgeIQAError(f"unknown device {device!r} (choose auto, cpu, cuda, cuda:N or mps){_hint(kind, DEVICES)}")


def check_precision_name(precision: str | None) -> None:
    """`--precision` spelt fp32, bf16 or fp16, else one line naming the nearest (before any loading)."""
    name = (precision or "fp32").strip().lower()
    if name not in PRECISIONS:
        raise EdgeIQAError(f"unknown precision {precision!r} (choose {', '.join(PRECISIONS)}){_hint(name, PRECISIONS)}")


def check_model_path(model: str | Path, precision: str | None = None) -> str:
    """The backend of an existing model path whose format is known; a precision other than fp32 only for torch
    models (an ONNX graph or engine runs at its exported one). Nothing is loaded."""
    from edgeiqa.export.formats import backend_for_path

    if not Path(model).exists():
        raise EdgeIQAError(f"model not found: {model}")
    backend = backend_for_path(model)
    if (precision or "fp32").strip().lower() != "fp32" and backend != "torch":
        raise EdgeIQAError(f"--precision {precision} applies to torch models (.pt, run folder); {Path(model).name} "
                           f"runs at the precision it was exported at")
    return backend


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
    def __init__(self, backend, path: str | Path, fast_decode: bool = False):
        self.backend = backend
        self.path = Path(path)
        self.metadata = meta = backend.metadata
        self.views = _check_metadata(self.path, meta, backend)
        self.logistic = meta.get("logistic")
        self.uses_face = any(v.kind == "face" for v in self.views)
        if self.uses_face and importlib.util.find_spec("cv2") is None:
            raise EdgeIQAError(f"{self.path} has a face view, which needs OpenCV (not installed): {FACE_EXTRA}")
        self.has_full = any(v.kind == "full" for v in self.views)  # then a batch holds images of one size
        # Reduced-size JPEG decoding only when every view resizes the whole image (no native pixels needed);
        # otherwise resize views start from a box-reduced copy (>= 2x the view) of the full decode.
        resize_only = all(v.kind == "resize" for v in self.views)
        self.fast = bool(fast_decode) and any(v.kind == "resize" for v in self.views)
        self.draft = 2 * max(max(v.size) for v in self.views) if (self.fast and resize_only) else None
        # With only resize and fragments views a decoded RGB file stays a PIL image: resize views reduce it,
        # fragments crop it; the whole-image copy into numpy (as slow as the decode on 12 MP) is skipped.
        self._keep_pil = self.fast and all(v.kind in ("resize", "fragments") for v in self.views)

    @classmethod
    def load(cls, path: str | Path, providers=None, device: str | None = None, threads: int | None = None,
             fast_decode: bool = False, precision: str | None = None) -> "Scorer":
        """Open a model by suffix: `.onnx` (onnxruntime), `.xml` (OpenVINO IR, CPU plugin), `.tflite` (LiteRT),
        `.mlpackage` (Core ML, macOS only), `.engine` (TensorRT), `.pt` or a run folder (torch).

        providers: explicit onnxruntime provider list (names or aliases such as "cpu", "cuda"); the first
        must be the one that runs. device: "cpu" (default), "cuda" or "cuda:N". threads: intra-op threads
        (default: 1 for torch, every usable core for onnxruntime and OpenVINO; `backend.threads` says which).
        fast_decode: reduced-size JPEG decoding for resize-only models (opt-in; see the module docstring).
        precision: fp32 (default), or bf16/fp16 autocast for a torch model on a GPU.
        """
        backend = open_backend(path, providers=providers, device=device, threads=threads, precision=precision)
        return cls(backend, path, fast_decode=fast_decode)

    def describe(self) -> dict:
        return {"model": str(self.path), "backend": self.backend.name, "provider": self.backend.provider,
                "device": self.backend.device, "precision": getattr(self.backend, "precision", None),
                "threads": self.backend.threads, "format": self.metadata.get("format"),
                "views": [v.to_dict() for v in self.views], "logistic": self.logistic is not None,
                "fast_decode": self.fast}

    # ------------------------------------------------------------------------------------------------
    def to_rgb(self, item) -> np.ndarray:
        """A path, a PIL image or an array -> RGB uint8 (H, W, 3), as training reads it."""
        if isinstance(item, np.ndarray):
            return array_to_rgb(item)
        if is_pil(item):
            return pil_image_to_rgb(item)
        return load_image(item, draft=self.draft)

    def decode(self, item):
        """`to_rgb`, except that on the fast path a decoded RGB file may stay a PIL image (see __init__)."""
        if self._keep_pil and not is_in_memory(item):
            return load_image(item, draft=self.draft, keep_pil=True)
        return self.to_rgb(item)

    def preprocess(self, item) -> tuple[dict[str, np.ndarray], dict]:
        """One item (path, PIL image or array) -> ({view name: uint8 view}, info). Raises ImageLoadError/EdgeIQAError."""
        return self.make_views(self.decode(item))

    def make_views(self, img) -> tuple[dict[str, np.ndarray], dict]:
        """The views of a decoded image (`decode`): the training views, or on the fast path resize views
        from a box-reduced copy and the others from the native pixels."""
        if not self.fast:
            return make_views(img, self.views, rng=None)
        views, info = {}, {}
        for spec in self.views:
            src = _box_reduced(img, spec.size) if spec.kind == "resize" else img
            views[spec.name], extra = make_view(src, spec, rng=None)
            info.update(extra)
        return views, info

    def safe_preprocess(self, item):
        """((views, info), None) or (None, reason): one odd file never stops the others."""
        try:
            return self.preprocess(item), None
        except ImageLoadError as exc:
            return None, exc.reason
        except EdgeIQAError as exc:
            return None, str(exc)
        except MemoryError:
            return None, "out of memory while decoding"
        except Exception as exc:  # noqa: BLE001 - malformed inputs trip odd errors deep in decoders
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

    def infer(self, batch: list[tuple["ScoreResult", dict]]) -> None:
        """Run one batch of (result, views) and fill each result's score (or its error)."""
        if not batch:
            return
        try:
            raw = self._run_batch([v for _, v in batch])
        except Exception as exc:  # noqa: BLE001 - retry one by one so only the culprit fails
            if len(batch) > 1:
                for one in batch:
                    self.infer([one])
                return
            batch[0][0].error = f"inference failed: {type(exc).__name__}: {exc}"
            return
        mapped = self._map(raw)
        for (res, _), r, m in zip(batch, raw, mapped):
            if not (math.isfinite(float(r)) and math.isfinite(float(m))):
                res.error = "model returned a non-finite score"
                continue
            res.score = float(m)
            if self.logistic is not None:
                res.info["raw_score"] = float(r)

    def iter_score(self, items: Iterable, batch_size: int = 8, workers: int = 1, on_done=None):
        """Score a stream of items; yields one ScoreResult per item, in input order, with bounded memory.

        An item is a path, a PIL image, an array, or a `(path, reason)` pair for an entry listed without
        scoring (a folder walk's non-files). See `edgeiqa.runtime.pipeline`."""
        if batch_size < 1:
            raise EdgeIQAError(f"batch size must be >= 1, got {batch_size}")
        yield from score_stream(self, items, batch_size=batch_size, workers=max(1, int(workers or 1)))

    def score(self, items: Sequence | Iterable, batch_size: int = 8, workers: int = 1,
              progress: bool = False) -> list[ScoreResult]:
        """Score paths, PIL images and/or arrays. One result per item, in input order; bad items carry `error`."""
        items = list(items)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), unit="img", file=sys.stderr, dynamic_ncols=True, desc="scoring")
        out = []
        try:
            for res in self.iter_score(items, batch_size=batch_size, workers=workers):
                out.append(res)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return out

    def score_arrays(self, images: Sequence, batch_size: int = 8, workers: int = 1) -> list[ScoreResult]:
        """Score in-memory images (PIL images or (H, W[, 3|4]) arrays of any depth), e.g. camera frames.

        Same preprocessing as files (a PIL image's EXIF orientation is applied, as for a file); results in
        input order with `info["index"]`; a bad image gets an error, the others are scored."""
        images = list(images)
        for i, im in enumerate(images):
            if not is_in_memory(im):
                raise EdgeIQAError(f"score_arrays: item {i} is a {type(im).__name__}; give PIL images or numpy arrays")
        return self.score(images, batch_size=batch_size, workers=workers)

    def score_one(self, item) -> float:
        """Score one image; raises the item's error instead of returning it."""
        (res,) = self.score([item], batch_size=1)
        if res.error:
            raise EdgeIQAError(f"{res.path or 'array'}: {res.error}")
        return res.score


def _box_reduced(img, size: tuple[int, int]):
    """`img` (array or PIL image) shrunk by the largest integer box factor that keeps >= 2x `size` (Pillow
    `reduce`), or itself: the bicubic resize of a 12 MP photo to 288 px costs several times the model; from
    this copy it is cheap. A PIL image stays one (the resize view reads it directly)."""
    from PIL import Image

    pil = isinstance(img, Image.Image)
    w, h = img.size if pil else img.shape[1::-1]
    factor = min(h // (2 * size[0]), w // (2 * size[1]))
    if factor < 2:
        return img
    return img.reduce(factor) if pil else np.asarray(Image.fromarray(img).reduce(factor))


def pil_image_to_rgb(img) -> np.ndarray:
    """An in-memory PIL image -> RGB uint8, with the same EXIF rotation and size guard as a file."""
    from PIL import ImageOps

    img = ImageOps.exif_transpose(img)
    rgb = pil_to_rgb(img)
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise ImageLoadError("<image>", f"too small ({rgb.shape[1]}x{rgb.shape[0]}); at least {MIN_SIDE} px per side is needed")
    return np.ascontiguousarray(rgb)


def _check_metadata(path: Path, meta, backend) -> list[ViewSpec]:
    """The views of a model whose metadata belongs to its graph; else one EdgeIQAError line."""
    from edgeiqa.export.metadata import METADATA_VERSION

    if not meta or "views" not in meta:
        raise EdgeIQAError(f"{path}: no edgeiqa metadata (views, normalisation); export models with `edgeiqa export`")
    version = meta.get("edgeiqa_metadata")
    if version != METADATA_VERSION:
        said = "no metadata version" if version is None else f"metadata version {version!r}"
        raise EdgeIQAError(f"{path}: {said}, this runtime reads version {METADATA_VERSION}; re-export the model "
                           "with this edgeiqa version")
    try:
        views = [ViewSpec.from_dict(v) for v in meta["views"]]
    except EdgeIQAError as exc:
        raise EdgeIQAError(f"{path}: bad view in the metadata: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeIQAError(f"{path}: malformed view in the metadata ({type(exc).__name__}: {exc})") from None
    if not views:
        raise EdgeIQAError(f"{path}: the metadata lists no views")
    names = [v.name for v in views]
    if list(backend.input_names) != names:
        raise EdgeIQAError(f"{path}: model inputs {backend.input_names} do not match its metadata views {names}")
    for v in views:
        shape = backend.input_shapes.get(v.name)
        if not shape:
            continue
        want = [3, *v.size]
        if len(shape) != 4 or any(isinstance(g, int) and g != w for g, w in zip(shape[1:], want)
                                  if v.kind != "full"):
            raise EdgeIQAError(f"{path}: metadata view {v.name!r} is {want[1]}x{want[2]} but the graph input "
                               f"{v.name!r} has shape {shape}; the metadata does not belong to this graph (re-export)")
    return views
