"""Real images for calibration and the parity check, and the parity measurement itself.

Images come from `--calib SPEC` (any dataset spec, or a list of paths in the Python API), else from the
run's profile data, else the sample set. Calibration prefers training-side splits (train, pool, val) and
parity prefers held-out ones (test, val), so int8 ranges are not fitted on the images that judge them.
Picks are spread evenly over the sorted candidates (many scenes, not one scene's ladder). Files that do
not load are skipped and listed.

Parity compares the raw model outputs (before the logistic mapping, which the runtime applies the same
way to both) image by image: max and mean absolute difference and the SRCC between the two.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from edgeiqa.data.images import load_image
from edgeiqa.data.views import ViewSpec, make_views, to_batch
from edgeiqa.errors import EdgeIQAError, ImageLoadError

CALIB_SPLITS = ("train", "pool", "val")
PARITY_SPLITS = ("test", "val")
DEFAULT_PARITY_IMAGES = 16  # rows judged by max |diff|: any image shows a difference
# Rows judged by SRCC (fp16, int8): on 16 images each swapped pair of near-tied photos moves the SRCC by 0.003, a
# third of a 0.99 bar's room, so the check needs more images to judge the artefact rather than the ties.
DEFAULT_SRCC_PARITY_IMAGES = 64


def default_parity_images(min_srcc: float | None) -> int:
    """How many images the export's parity check uses when --imgs is not given, by the row's kind of bar."""
    return DEFAULT_SRCC_PARITY_IMAGES if min_srcc is not None else DEFAULT_PARITY_IMAGES


def check_spec(flag: str, spec) -> None:
    """A dataset spec option parses and names an existing file or folder: checked before any work (a list of
    image paths, the Python API's form, passes)."""
    if spec is None or isinstance(spec, (list, tuple)):
        return
    from edgeiqa.data.datasets import parse_spec, require_target
    from edgeiqa.errors import DatasetError

    try:
        require_target(parse_spec(str(spec)))
    except DatasetError as exc:
        raise DatasetError(f"{flag} {spec}: {exc}") from None


def _default_spec(profile: str | None) -> str:
    if profile:
        try:
            from edgeiqa.profiles import load_profile

            return load_profile(profile).get("data", "sample")
        except Exception:  # noqa: BLE001 - a test/custom profile name that is not built in
            pass
    return "sample"


def candidate_paths(calib, profile: str | None, prefer: Sequence[str]) -> tuple[list[Path], str]:
    """Candidate image paths (preferred splits first) and a description of where they came from."""
    if isinstance(calib, (list, tuple)):
        return [Path(p) for p in calib], f"{len(calib)} given paths"
    spec = calib or _default_spec(profile)
    from edgeiqa.data.datasets import load_dataset

    ds = load_dataset(spec, check_files=False)
    records = sorted(ds.records, key=lambda r: str(r.path))
    first = [r.path for r in records if r.split in prefer]
    rest = [r.path for r in records if r.split not in prefer]
    label = f"{spec} ({'/'.join(prefer)} first)" if first else spec
    return _spread(first) + _spread(rest), label


def _spread(paths: list[Path]) -> list[Path]:
    """Reorder so any prefix is spread evenly over the list (0, n/2, n/4, 3n/4, ...)."""
    n = len(paths)
    if n <= 2:
        return list(paths)
    order, seen = [], set()
    step = n
    while len(order) < n:
        for i in range(0, n, step):
            if i not in seen:
                seen.add(i)
                order.append(i)
        if step == 1:
            break
        step = max(1, step // 2)
    return [paths[i] for i in order]


def load_images(calib, profile: str | None, n: int, prefer: Sequence[str]) -> tuple[list[tuple[str, np.ndarray]], dict]:
    """Up to `n` decoded RGB images; skips files that do not load (listed in the returned info)."""
    if n < 1:
        raise EdgeIQAError(f"number of images must be >= 1, got {n}")
    paths, source = candidate_paths(calib, profile, prefer)
    out, skipped = [], []
    for p in paths:
        if len(out) >= n:
            break
        try:
            out.append((str(p), load_image(p)))
        except ImageLoadError as exc:
            skipped.append({"path": str(p), "reason": exc.reason})
    if not out:
        raise EdgeIQAError(f"no usable images for calibration/parity in {source}" + (f" ({len(skipped)} failed to load)" if skipped else ""))
    if len(out) < n:
        warnings.warn(f"only {len(out)} of the {n} requested images could be used from {source}")
    return out, {"source": source, "n_images": len(out), "requested": n, "skipped": skipped}


def view_batches(images: list[tuple[str, np.ndarray]], views: list[ViewSpec]) -> list[dict[str, np.ndarray]]:
    """One single-image batch per image: {view name: float32 (1, 3, H, W)} through the runtime's views."""
    out = []
    for _, img in images:
        v, _ = make_views(img, views, rng=None)
        out.append({spec.name: to_batch([v[spec.name]]) for spec in views})
    return out


def run_all(run_fn, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([np.asarray(run_fn(b), dtype=np.float64).reshape(-1) for b in batches])


def compare(reference: np.ndarray, candidate: np.ndarray, *, max_abs: float | None = None,
            min_srcc: float | None = None) -> dict:
    """Parity numbers and whether they meet the format's bar."""
    from scipy.stats import spearmanr

    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    diff = np.abs(ref - cand)
    if len(ref) >= 2 and np.ptp(ref) > 0 and np.ptp(cand) > 0:
        srcc = float(spearmanr(ref, cand)[0])
    else:
        srcc = None
    ok = bool(np.all(np.isfinite(cand)))
    if max_abs is not None:
        ok = ok and float(diff.max()) <= max_abs
    if min_srcc is not None:
        ok = ok and srcc is not None and srcc >= min_srcc
    return {
        "n_images": int(len(ref)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "srcc": srcc,
        "reference_std": float(ref.std()),
        "bar": {"max_abs_diff": max_abs, "min_srcc": min_srcc},
        "ok": ok,
    }
