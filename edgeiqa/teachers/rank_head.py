"""Label-free ranking pre-training of a frozen-backbone teacher's head (RankIQA's idea, at head level).

A few unlabelled photos (the dataset's `pool` split; its labelled photos when the pool has fewer than
MIN_PHOTOS readable images, their labels unused) are degraded by every kind of the degradation library at
the ladder severities. Their backbone features are computed once (like the labelled images'), and the head
learns, before it sees any label, that within one photo x kind ladder the more degraded copy scores lower
(rank + fidelity losses on same-ladder pairs). Training on labels then starts from that head.

Why: labels cover a few artefact kinds; the library covers 36. Measured by benchmarks/generalise.py
(leave-kinds-out, heads on frozen features, ranking only on training-fold kinds, 3 seeds): the teacher
ensemble's per-scene mean SRCC on held-out groups rose from 0.828 to 0.861, each member's by 0.02-0.05.

`edgeiqa teachers pretrain` is the backbone version of the same idea (the whole teacher trains; GPU territory).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgeiqa import distributed
from edgeiqa.data import distortions
from edgeiqa.data.degradations import GROUPS
from edgeiqa.data.records import Dataset
from edgeiqa.data.torchdata import ImageCache
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path
from edgeiqa.losses import LossBatch, combined_loss
from edgeiqa.teachers.features import extract_features

MIN_PHOTOS = 2  # one photo alone would teach its own content, not quality
MAX_SIDE = 1024  # bases are shrunk to this before degrading: 145 copies of a 4K photo would not fit in memory
MIN_SIDE = 64  # smaller images are passed over: several kinds (patch shuffle, JPEG 2000, ...) need real area
LOSSES = {"rank": 1.0, "fidelity": 1.0}
LADDERS_PER_BATCH = 32
LR = 1e-3  # the head starts from scratch here (the profile's teacher lr is for the label phase)


@dataclass(frozen=True)
class RankSpec:
    """The ladders and schedule (a TeacherConfig's rank_* fields); epochs 0 = off. Kinds: the whole library."""

    epochs: int = 0
    photos: int = 4
    levels: tuple[int, ...] = (1, 2, 4, 6)
    kinds: tuple[str, ...] = field(default_factory=lambda: tuple(k for members in GROUPS.values() for k in members))

    @classmethod
    def from_config(cls, cfg) -> "RankSpec":
        return cls(int(getattr(cfg, "rank_epochs", 0)), int(getattr(cfg, "rank_photos", 4)),
                   tuple(int(v) for v in getattr(cfg, "rank_levels", (1, 2, 4, 6))))

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "photos": self.photos, "levels": list(self.levels), "kinds": len(self.kinds)}


def base_photos(dataset: Dataset, cache: ImageCache, n: int, seed: int) -> tuple[list[str], str]:
    """Up to `n` readable images (at least MIN_SIDE px a side) to degrade, drawn (seeded) from the pool split,
    else from the labelled splits."""
    for splits in (("pool",), ("train", "val")):
        candidates = sorted({str(r.path) for r in dataset.records if r.split in splits})
        order = np.random.default_rng([seed, 7]).permutation(len(candidates))
        picked = []
        for i in order:
            img = cache.get(candidates[i])
            if img is not None and min(img.shape[:2]) >= MIN_SIDE:
                picked.append(candidates[i])
                if len(picked) == n:
                    break
        if len(picked) >= MIN_PHOTOS:
            return picked, splits[0]
    raise EdgeIQAError(f"{dataset.spec}: ranking pre-training needs at least {MIN_PHOTOS} readable images of at least "
                       f"{MIN_SIDE} px a side in the pool or train/val splits, found {len(picked)}")


def _shrunk(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    if max(h, w) <= MAX_SIDE:
        return img
    s = MAX_SIDE / max(h, w)
    return np.asarray(Image.fromarray(img).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))


def ladder_features(teacher, bases: list[str], cache: ImageCache, spec: RankSpec, seed: int, progress: bool,
                    autocast=None) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(features, target = -severity, ladder id) of every base and its degraded copies; one base at a time in
    memory. Degradations are seeded per (base, kind, severity), so every rank of a torchrun job builds the same."""
    feats, targets, ladders = [], [], []
    kw = {"autocast": autocast} if autocast is not None else {}
    for b, path in enumerate(bases):
        base = _shrunk(cache.get(path))
        local = ImageCache()
        keys = [f"rank/{b}/original"]
        local.images[keys[0]] = base
        for k, kind in enumerate(spec.kinds):
            for sev in spec.levels:
                key = f"rank/{b}/{kind}_{sev}"
                local.images[key] = distortions.apply(base, kind, sev, np.random.default_rng([seed, b, k, sev]))
                keys.append(key)
        out = extract_features(teacher, keys, local, progress=progress, desc=f"{teacher.entry.name} ranking ladders {b + 1}/{len(bases)}", **kw)
        # the original joins every kind's ladder at severity 0
        for k in range(len(spec.kinds)):
            rows = [0] + [1 + k * len(spec.levels) + j for j in range(len(spec.levels))]
            feats.append(out["eval"][rows])
            targets += [0.0] + [-float(s) for s in spec.levels]
            ladders += [b * len(spec.kinds) + k] * len(rows)
    return torch.cat(feats), np.asarray(targets, np.float32), np.asarray(ladders)


def cached_ladder_features(teacher, bases, cache, spec: RankSpec, seed: int, out_dir: Path, progress: bool, autocast=None):
    """`ladder_features`, stored in the member dir and reused while bases, ladder, weights and views are the same."""
    key = hashlib.sha256(json.dumps([bases, list(spec.kinds), list(spec.levels), seed, teacher.weights_source,
                                     [v.to_dict() for v in teacher.entry.views]]).encode()).hexdigest()
    path = Path(out_dir) / "rank_features.pt"
    if path.exists():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # damaged or foreign: a cache, so it is recomputed (and rewritten) rather than trusted
            stored = {}
        if isinstance(stored, dict) and stored.get("key") == key:
            return stored["feats"], stored["targets"].numpy(), stored["ladders"].numpy()
    feats, targets, ladders = ladder_features(teacher, bases, cache, spec, seed, progress, autocast)
    if distributed.current().is_main:
        with atomic_path(path) as tmp:
            torch.save({"key": key, "feats": feats, "targets": torch.from_numpy(targets), "ladders": torch.from_numpy(ladders)}, tmp)
    return feats, targets, ladders


@torch.no_grad()
def pair_accuracy(head, feats: torch.Tensor, targets: np.ndarray, ladders: np.ndarray) -> float:
    """Share of same-ladder pairs the head orders like their severities."""
    head.eval()
    s = head(feats.to(next(head.parameters()).device))[0].float().cpu().numpy()
    right = total = 0
    for lad in np.unique(ladders):
        i = np.flatnonzero(ladders == lad)
        ds, dt = s[i][:, None] - s[i][None, :], targets[i][:, None] - targets[i][None, :]
        mask = dt > 0
        right += int((ds[mask] > 0).sum())
        total += int(mask.sum())
    return right / max(1, total)


def pretrain_head(head, feats: torch.Tensor, targets: np.ndarray, ladders: np.ndarray, epochs: int, lr: float, seed: int) -> dict:
    """`epochs` passes over the ladders (LADDERS_PER_BATCH per step, rank + fidelity); pair accuracy before/after."""
    device = next(head.parameters()).device
    before = pair_accuracy(head, feats, targets, ladders)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng([seed, 11])
    ids = np.unique(ladders)
    for _ in range(epochs):
        head.train()
        order = rng.permutation(ids)
        for k in range(0, len(order), LADDERS_PER_BATCH):
            rows = np.flatnonzero(np.isin(ladders, order[k : k + LADDERS_PER_BATCH]))
            pred, _ = head(feats[rows].to(device))
            batch = LossBatch(pred=pred.float(), target=torch.from_numpy(targets[rows]).to(device),
                              scene=torch.from_numpy(ladders[rows]).to(device), weight=torch.ones(len(rows), device=device))
            loss, _ = combined_loss(LOSSES, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return {"pair_accuracy_before": round(before, 4), "pair_accuracy_after": round(pair_accuracy(head, feats, targets, ladders), 4)}


@torch.no_grad()
def to_label_scale(head, feats: torch.Tensor, label_mean: float, label_std: float) -> None:
    """Affine change of the head's last layer (`head.score`) so that its scores on the ladders have the labels'
    mean and spread. Ranking losses leave the scale arbitrary (the main job's first MSE epoch read 93 instead of
    about 3 without it); this keeps every order and lets the label phase start on the label scale."""
    head.eval()
    s = head(feats.to(next(head.parameters()).device))[0].float()
    a = label_std / max(float(s.std()), 1e-6)
    head.score.weight.mul_(a)
    head.score.bias.sub_(float(s.mean())).mul_(a).add_(label_mean)


def rank_pretrain_head(teacher, dataset: Dataset, cache: ImageCache, spec: RankSpec, *, seed: int, out_dir: Path,
                       progress: bool = True, autocast=None, log=None) -> dict:
    """The whole step for one member: bases, cached ladder features, head pre-training. Returns what member.json keeps."""
    bases, source = base_photos(dataset, cache, spec.photos, seed)
    if log is not None and source != "pool":
        log(f"{teacher.entry.name}: fewer than {MIN_PHOTOS} readable pool images; ranking ladders use {len(bases)} "
            f"{source}/val images (labels unused)")
    feats, targets, ladders = cached_ladder_features(teacher, bases, cache, spec, seed, out_dir, progress, autocast)
    torch.manual_seed(seed)
    info = pretrain_head(teacher.head, feats, targets, ladders, spec.epochs, LR, seed)
    labels = np.array([r.score for r in dataset.records if r.split == "train" and r.score is not None], dtype=np.float64)
    if labels.size > 1:
        to_label_scale(teacher.head, feats, float(labels.mean()), float(labels.std()))
    return {**spec.to_dict(), "bases": bases, "bases_from": source, "images": len(bases) * (1 + len(spec.kinds) * len(spec.levels)),
            **info}
