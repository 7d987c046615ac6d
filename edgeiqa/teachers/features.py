"""Backbone features of a teacher over a list of images: computed once, reused by training and labelling.

With a frozen backbone (the CPU default), teacher training is a head trained on these cached features,
which turns minutes of backbone back-propagation into seconds. `n_aug` extra variants per image (flip +
other fragment offsets) give the head augmented inputs; variant 0 is always the evaluation view.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from tqdm import tqdm

from edgeiqa.data.torchdata import ImageCache
from edgeiqa.data.views import make_views, to_batch


def view_tensors(img: np.ndarray, views, rng) -> list[torch.Tensor]:
    arrays, _ = make_views(img, list(views), rng)
    return [torch.from_numpy(to_batch([arrays[v.name]])) for v in views]


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def extract_features(teacher, paths: list[str], cache: ImageCache, n_aug: int = 0, seed: int = 0,
                     batch_size: int = 8, progress: bool = True, desc: str = "features", aug_paths=None,
                     autocast=contextlib.nullcontext) -> dict:
    """{'eval': (N, F) float32, 'aug': (n_aug, N, F) or None, 'ok': (N,) bool}; failed images stay zeros.

    Augmented variants are computed only for `aug_paths` (the training images; default all)."""
    teacher.eval()
    teacher.to(memory_format=torch.channels_last)  # 1.3-2x faster convolutions on CPU (oneDNN)
    device = _device_of(teacher)
    views = teacher.entry.views
    n = len(paths)
    out = {"eval": torch.zeros(n, teacher.feature_dim), "aug": torch.zeros(n_aug, n, teacher.feature_dim) if n_aug else None,
           "ok": torch.zeros(n, dtype=torch.bool)}
    wanted = set(paths if aug_paths is None else aug_paths)
    jobs = [(i, 0) for i in range(n)] + [(i, a) for a in range(1, n_aug + 1) for i in range(n) if paths[i] in wanted]
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, leave=False)
    for start in range(0, len(jobs), batch_size):
        chunk = []
        for i, a in jobs[start : start + batch_size]:
            img = cache.get(paths[i])
            if img is None:
                continue
            rng = None
            if a > 0:
                rng = np.random.default_rng([seed, a, i])
                if a % 2 == 1:
                    img = np.ascontiguousarray(img[:, ::-1])
            chunk.append((i, a, view_tensors(img, views, rng)))
        bar.update(min(batch_size, len(jobs) - start))
        if not chunk:
            continue
        stacked = [torch.cat([c[2][k] for c in chunk]).to(device).contiguous(memory_format=torch.channels_last)
                   for k in range(len(views))]
        with autocast():
            feats = teacher.encode(*stacked).float().cpu()  # cached features are fp32 on the CPU, whatever ran them
        for (i, a, _), f in zip(chunk, feats):
            if a == 0:
                out["eval"][i] = f
                out["ok"][i] = True
            else:
                out["aug"][a - 1, i] = f
    bar.close()
    return out


@torch.no_grad()
def head_outputs(teacher, feats: torch.Tensor, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N,), opinions (N, hidden)) from cached backbone features."""
    teacher.eval()
    device = _device_of(teacher)
    scores, opinions = [], []
    for k in range(0, feats.shape[0], batch_size):
        s, o = teacher.head(feats[k : k + batch_size].to(device))
        scores.append(s.float().cpu())
        opinions.append(o.float().cpu())
    return torch.cat(scores).numpy().astype(np.float64), torch.cat(opinions).numpy().astype(np.float32)
