"""Sharded labelling: under `torchrun`, each rank scores a contiguous slice of the images with a teacher.

Each rank writes its slice atomically to `WORK/<member>.<rank>-of-<world>.npz`, all ranks wait, and the slices
are read back in rank order, so the result holds the same images in the same order as one process would
produce (per-image scores do not depend on which process computed them). A slice already on disk from a
killed job with the same inputs is reused: a resumed job labels only the slices that are missing. Without a
process group this is one slice, rank 0 of 1.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edgeiqa import distributed
from edgeiqa.data.torchdata import ImageCache
from edgeiqa.fileio import atomic_path
from edgeiqa.teachers.train import predict_images


def _slice_key(paths: list[str]) -> str:
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()


def _read_slice(path: Path, key: str) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """A stored slice when it is whole and for exactly these images; None when it must be (re)computed."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return z["scores"], z["opinions"], json.loads(str(z["failed"]))
    except (OSError, ValueError, KeyError, EOFError):  # missing, truncated or foreign file
        return None


def predict_sharded(member_dir: Path, paths: list[str], cache: ImageCache, work: Path, *, accel=None,
                    progress: bool = True, timings: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(scores, opinions, {path: why it failed}) of `member_dir`'s teacher for `paths`, across the job's ranks.

    `timings`, when given, gets the slowest rank's `build_s` (teacher built) and `label_s` (its slice scored), and
    every rank's in `per_rank`: the labelling phase itself, without model building or waiting."""
    own = {"build_s": 0.0, "label_s": 0.0}
    info = distributed.current()
    name = Path(member_dir).name
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    bounds = [distributed.shard_bounds(len(paths), r, info.world_size) for r in range(info.world_size)]
    files = [work / f"{name}.{r:03d}-of-{info.world_size:03d}.npz" for r in range(info.world_size)]
    keys = [_slice_key(paths[a:b]) for a, b in bounds]
    start, stop = bounds[info.rank]
    if _read_slice(files[info.rank], keys[info.rank]) is None:
        mine = paths[start:stop]
        if mine:
            scores, opinions = predict_images(member_dir, mine, cache, progress=progress, accel=accel, timings=own)
        else:  # more ranks than images
            scores, opinions = np.zeros(0), np.zeros((0, 0), np.float32)
        failed = {p: cache.failed[p] for p in mine if p in cache.failed}  # the decoding rank knows why
        with atomic_path(files[info.rank]) as tmp, open(tmp, "wb") as f:
            np.savez(f, key=np.array(keys[info.rank]), scores=scores, opinions=opinions, failed=np.array(json.dumps(failed)))
    distributed.barrier(f"labelling with {name}")
    per_rank = distributed.all_gather_objects({k: round(v, 3) for k, v in own.items()})
    if timings is not None:
        timings.update(build_s=max(t["build_s"] for t in per_rank), label_s=max(t["label_s"] for t in per_rank),
                       per_rank=per_rank)
    parts = [_read_slice(f, k) for f, k in zip(files, keys)]
    missing = [str(f) for f, part in zip(files, parts) if part is None]
    if missing:
        raise RuntimeError(f"labelling slices missing after every rank finished: {missing}")
    failed = {k: v for part in parts for k, v in part[2].items()}
    parts = [p for p in parts if len(p[0])] or parts[:1]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), failed
