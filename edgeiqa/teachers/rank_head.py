"""Label-free ranking pre-training of a frozen-backbone teacher's head (RankIQA's idea, at head level).

A few unlabelled colour photos (the dataset's `pool` split; its labelled photos when the pool has fewer than
MIN_PHOTOS readable colour images, their labels unused; greyscale ones only for a greyscale data set), each as
itself, a crop and a downscaled copy (`RankSpec.copies`, edgeiqa/data/copies.py), are degraded by every kind of
the degradation library at the ladder severities. Their backbone features are
computed once (like the labelled images'), and the head learns, before it sees any label, that within one
photo x kind ladder the more degraded copy scores lower (rank + fidelity losses on same-ladder pairs). Training
on labels then starts from that head.

Why: labels cover a few artefact kinds; the library covers 36, and this is how the teachers learn the others
(measured by benchmarks/generalise.py: docs/benchmarks.md, leave-kinds-out).

`edgeiqa teachers pretrain` is the backbone version of the same idea (the whole teacher trains; GPU territory).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr

from edgeiqa import distributed
from edgeiqa.data import distortions
from edgeiqa.data.copies import DEFAULT_COPIES, check_copies, make_copy
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
GREY_CHROMA = 2.0  # grey levels of mean |R-G| + |G-B| under which a photo counts as greyscale (JPEG chroma noise is < 1)
LOSSES = {"rank": 1.0, "fidelity": 1.0}
LADDERS_PER_BATCH = 32
LR = 1e-3  # the head starts from scratch here (the profile's teacher lr is for the label phase)


@dataclass(frozen=True)
class RankSpec:
    """The ladders and schedule (a TeacherConfig's rank_* fields); epochs 0 = off. Kinds: the whole library.
    copies: which copies of each base photo get ladders (edgeiqa.data.copies)."""

    epochs: int = 0
    photos: int = 4
    levels: tuple[int, ...] = (1, 2, 4, 6)
    kinds: tuple[str, ...] = field(default_factory=lambda: tuple(k for members in GROUPS.values() for k in members))
    copies: tuple[str, ...] = DEFAULT_COPIES

    def __post_init__(self):
        check_copies(self.copies)

    @classmethod
    def from_config(cls, cfg) -> "RankSpec":
        return cls(int(getattr(cfg, "rank_epochs", 0)), int(getattr(cfg, "rank_photos", 4)),
                   tuple(int(v) for v in getattr(cfg, "rank_levels", (1, 2, 4, 6))),
                   copies=tuple(getattr(cfg, "rank_copies", DEFAULT_COPIES)))

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "photos": self.photos, "levels": list(self.levels), "kinds": len(self.kinds),
                "copies": list(self.copies)}


@dataclass(frozen=True)
class ScorePhase:
    """A second pass over the same ladders after the ranking: `epochs` epochs with `scores_of(bases)` (one target per
    ladder row, in `ladder_features`' order; a distilling student passes its teachers' scores) and `losses`."""

    epochs: int
    losses: dict
    scores_of: Callable[[list[str]], np.ndarray]


def is_greyscale(img: np.ndarray) -> bool:
    """True for a photo with (almost) no chroma: mean |R-G| + |G-B| under GREY_CHROMA grey levels."""
    x = img.astype(np.int16)
    return float(np.abs(x[..., 0] - x[..., 1]).mean() + np.abs(x[..., 1] - x[..., 2]).mean()) < GREY_CHROMA


def base_photos(dataset: Dataset, cache: ImageCache, n: int, seed: int) -> tuple[list[str], str, int]:
    """Up to `n` readable images (at least MIN_SIDE px a side) to degrade, drawn (seeded) from the pool split, else
    from the labelled splits; and how many greyscale images were passed over.

    Colour images come first: a greyscale base teaches the head that any colour is an artefact (every noise kind
    adds chroma to it, and its best copy is grey), so desaturated photos then rank *above* their originals
    (docs/benchmarks.md, leave-kinds-out). Greyscale bases are used only where fewer than MIN_PHOTOS colour ones
    exist."""
    found = []
    for splits in (("pool",), ("train", "val")):
        candidates = sorted({str(r.path) for r in dataset.records if r.split in splits})
        order = np.random.default_rng([seed, 7]).permutation(len(candidates))
        colour, grey = [], []
        for i in order:
            img = cache.get(candidates[i])
            if img is not None and min(img.shape[:2]) >= MIN_SIDE:
                (grey if is_greyscale(img) else colour).append(candidates[i])
                if len(colour) == n:
                    break
        if len(colour) >= MIN_PHOTOS:  # colour photos of the pool, else of train/val (read only when needed)
            return colour[:n], splits[0], len(grey)
        found.append((colour, grey, splits[0]))
    for colour, grey, source in found:  # a greyscale data set: its greyscale photos all the same
        if len(colour) + len(grey) >= MIN_PHOTOS:
            return (colour + grey)[:n], source, 0
    raise EdgeIQAError(f"{dataset.spec}: ranking pre-training needs at least {MIN_PHOTOS} readable images of at least "
                       f"{MIN_SIDE} px a side in the pool or train/val splits, found {max(len(c) + len(g) for c, g, _ in found)}")


def _shrunk(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    if max(h, w) <= MAX_SIDE:
        return img
    s = MAX_SIDE / max(h, w)
    return np.asarray(Image.fromarray(img).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))


def ladder_features(teacher, bases: list[str], cache: ImageCache, spec: RankSpec, seed: int, progress: bool,
                    autocast=None) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(features, target = -severity, ladder id) of every copy (`spec.copies`) of every base and its degraded
    versions; one copy at a time in memory. A copy under MIN_SIDE px a side is passed over. Copies and degradations
    are seeded per (base, copy, kind, severity), so every rank of a torchrun job builds the same; the "photo" copy
    keeps the seeds it had before copies existed."""
    feats, targets, ladders = [], [], []
    kw = {"autocast": autocast} if autocast is not None else {}
    n_ladders = 0
    for b, path in enumerate(bases):
        photo = _shrunk(cache.get(path))
        for c, copy_name in enumerate(spec.copies):
            base = make_copy(photo, copy_name, np.random.default_rng([seed, b, 13, c]))
            if min(base.shape[:2]) < MIN_SIDE:
                continue
            local = ImageCache()
            keys = [f"rank/{b}/{copy_name}/original"]
            local.images[keys[0]] = base
            for k, kind in enumerate(spec.kinds):
                for sev in spec.levels:
                    key = f"rank/{b}/{copy_name}/{kind}_{sev}"
                    rng_key = [seed, b, k, sev] if copy_name == "photo" else [seed, b, k, sev, c]
                    local.images[key] = distortions.apply(base, kind, sev, np.random.default_rng(rng_key))
                    keys.append(key)
            out = extract_features(teacher, keys, local, progress=progress,
                                   desc=f"{teacher.entry.name} ranking ladders {b + 1}/{len(bases)} {copy_name}", **kw)
            # the original joins every kind's ladder at severity 0
            for k in range(len(spec.kinds)):
                rows = [0] + [1 + k * len(spec.levels) + j for j in range(len(spec.levels))]
                feats.append(out["eval"][rows])
                targets += [0.0] + [-float(s) for s in spec.levels]
                ladders += [n_ladders + k] * len(rows)
            n_ladders += len(spec.kinds)
    return torch.cat(feats), np.asarray(targets, np.float32), np.asarray(ladders)


def cached_ladder_features(teacher, bases, cache, spec: RankSpec, seed: int, out_dir: Path, progress: bool, autocast=None,
                           store: bool = True):
    """`ladder_features`, stored in the member dir and reused while bases, ladder, weights and views are the same
    (store=False: read the stored ones if they match, never write: a later stage reading a teacher's dir)."""
    key = hashlib.sha256(json.dumps([bases, list(spec.kinds), list(spec.levels), list(spec.copies), seed, teacher.weights_source,
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
    if store and distributed.current().is_main:
        with atomic_path(path) as tmp:
            torch.save({"key": key, "feats": feats, "targets": torch.from_numpy(targets), "ladders": torch.from_numpy(ladders)}, tmp)
    return feats, targets, ladders


@torch.no_grad()
def head_scores(head, feats: torch.Tensor) -> np.ndarray:
    head.eval()
    return head(feats.to(next(head.parameters()).device))[0].float().cpu().numpy()


def pair_accuracy(head, feats: torch.Tensor, targets: np.ndarray, ladders: np.ndarray) -> float:
    """Share of same-ladder pairs the head orders like their severities."""
    s = head_scores(head, feats)
    right = total = 0
    for lad in np.unique(ladders):
        i = np.flatnonzero(ladders == lad)
        ds, dt = s[i][:, None] - s[i][None, :], targets[i][:, None] - targets[i][None, :]
        mask = dt > 0
        right += int((ds[mask] > 0).sum())
        total += int(mask.sum())
    return right / max(1, total)


def pretrain_head(head, feats: torch.Tensor, targets: np.ndarray, ladders: np.ndarray, epochs: int, lr: float, seed: int,
                  losses: dict = LOSSES) -> dict:
    """`epochs` passes over the ladders (LADDERS_PER_BATCH per step, `losses`: rank + fidelity unless given); pair
    accuracy against `targets` before/after."""
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
            loss, _ = combined_loss(losses, batch)
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
                       progress: bool = True, autocast=None, log=None, then: ScorePhase | None = None) -> dict:
    """The whole step for one member: bases, cached ladder features, head pre-training (and `then`, if given, on the
    same ladders). Returns what member.json (or the student's card) keeps."""
    bases, source, grey_skipped = base_photos(dataset, cache, spec.photos, seed)
    if log is not None and source != "pool":
        log(f"{teacher.entry.name}: fewer than {MIN_PHOTOS} readable colour pool images; ranking ladders use {len(bases)} "
            f"{source}/val images (labels unused)")
    t0 = time.perf_counter()
    feats, targets, ladders = cached_ladder_features(teacher, bases, cache, spec, seed, out_dir, progress, autocast)
    ladder_s = time.perf_counter() - t0
    torch.manual_seed(seed)
    info = pretrain_head(teacher.head, feats, targets, ladders, spec.epochs, LR, seed)
    labels = np.array([r.score for r in dataset.records if r.split == "train" and r.score is not None], dtype=np.float64)
    if labels.size > 1:
        to_label_scale(teacher.head, feats, float(labels.mean()), float(labels.std()))
    if then is not None and then.epochs > 0:
        scores = np.asarray(then.scores_of(bases), np.float32)
        if scores.shape != targets.shape or not np.isfinite(scores).all():
            raise EdgeIQAError(f"{teacher.entry.name}: {scores.shape[0]} ladder scores for {targets.shape[0]} ladder images"
                               " (or some not finite)")
        # SRCC with the given scores over all ladder images: across kinds too, which the ranking alone cannot order
        before = spearmanr(head_scores(teacher.head, feats), scores)[0]
        pretrain_head(teacher.head, feats, scores, ladders, then.epochs, LR, seed, losses=then.losses)
        info["ladder_scores"] = {"epochs": then.epochs, "losses": dict(then.losses), "srcc_before": round(float(before), 4),
                                 "srcc_after": round(float(spearmanr(head_scores(teacher.head, feats), scores)[0]), 4),
                                 "pair_accuracy_after": round(pair_accuracy(teacher.head, feats, targets, ladders), 4)}
    return {**spec.to_dict(), "bases": bases, "bases_from": source, "greyscale_passed_over": grey_skipped,
            "images": len(np.unique(ladders)) // len(spec.kinds) * (1 + len(spec.kinds) * len(spec.levels)),
            "ladder_features_s": round(ladder_s, 1),
            **info}
