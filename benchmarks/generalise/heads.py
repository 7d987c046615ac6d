"""IQA heads trained on cached features: training items (scene = photo x kind), epochs, best epoch by val."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

from edgeiqa import losses
from edgeiqa.errors import EdgeIQAError
from edgeiqa.teachers.model import IQAHead

from .images import Img

HIDDEN = 256
SCENES_PER_BATCH = 32


@dataclass
class Items:
    rows: np.ndarray  # feature rows
    target: np.ndarray
    scene: np.ndarray  # integer scene ids
    weight: np.ndarray


def make_items(imgs: list[Img], rows: list[int], target=None, weight: float = 1.0) -> Items:
    """Rows of `imgs` as training items; scene = photo x kind, the original joining every kind's scene."""
    out_rows, out_t, out_s = [], [], []
    scene_id: dict[str, int] = {}
    by_photo_kinds: dict[str, set] = {}
    for r in rows:
        if imgs[r].kind != "original":
            by_photo_kinds.setdefault(imgs[r].photo, set()).add(imgs[r].kind)
    for r in rows:
        im = imgs[r]
        kinds = sorted(by_photo_kinds.get(im.photo, ())) if im.kind == "original" else [im.kind]
        for k in kinds:
            out_rows.append(r)
            out_t.append(im.score if target is None else target[r])
            out_s.append(scene_id.setdefault(f"{im.photo}-{k}", len(scene_id)))
    return Items(np.array(out_rows), np.array(out_t, dtype=np.float32), np.array(out_s), np.full(len(out_rows), weight, np.float32))


def join(a: Items, b: Items) -> Items:
    off = a.scene.max() + 1 if a.scene.size else 0
    return Items(np.concatenate([a.rows, b.rows]), np.concatenate([a.target, b.target]), np.concatenate([a.scene, b.scene + off]),
                 np.concatenate([a.weight, b.weight]))


def _batches(items: Items, rng: np.random.Generator):
    scenes = rng.permutation(np.unique(items.scene))
    for k in range(0, len(scenes), SCENES_PER_BATCH):
        yield np.flatnonzero(np.isin(items.scene, scenes[k : k + SCENES_PER_BATCH]))


def _epoch(head, proj, opt, x, items, weights, rng, teacher_feat=None) -> None:
    head.train()
    for idx in _batches(items, rng):
        rows = torch.from_numpy(items.rows[idx])
        pred, opinion = head(x[rows])
        batch = losses.LossBatch(pred=pred, target=torch.from_numpy(items.target[idx]), scene=torch.from_numpy(items.scene[idx]),
                                 weight=torch.from_numpy(items.weight[idx]))
        if proj is not None and teacher_feat is not None:
            batch.proj, batch.feat = proj(opinion), teacher_feat[rows]
        loss, _ = losses.combined_loss(weights, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def _predict(head, x) -> tuple[np.ndarray, np.ndarray]:
    head.eval()
    s, o = head(x)
    return s.numpy().astype(np.float64), o.numpy()


def scene_matrix(imgs, rows) -> tuple[np.ndarray, np.ndarray]:
    """(scenes x images) feature rows and targets of `rows`' ladders; every ladder has the same length."""
    it = make_items(imgs, rows)
    order = np.argsort(it.scene, kind="stable")
    n = np.bincount(it.scene)
    if n.min() != n.max():
        raise EdgeIQAError("ladders of unequal length")
    return it.rows[order].reshape(len(n), -1), it.target[order].reshape(len(n), -1)


def val_score(val: tuple[np.ndarray, np.ndarray], scores: np.ndarray) -> float:
    """Model selection metric on val rows only: per-scene mean SRCC, vectorised over scenes (it runs every epoch;
    scipy's rankdata ranks, a row-wise Pearson of ranks is Spearman's rho)."""
    rows, target = val
    rp, rt = rankdata(scores[rows], axis=1), rankdata(target, axis=1)
    rp, rt = rp - rp.mean(1, keepdims=True), rt - rt.mean(1, keepdims=True)
    denom = np.sqrt((rp**2).sum(1) * (rt**2).sum(1))
    ok = denom > 0
    return float(((rp * rt).sum(1)[ok] / denom[ok]).mean()) if ok.any() else -1.0


def train_head(x, imgs, items: Items, val_rows, *, seed, epochs, weights, rank_items: Items | None = None, rank_epochs=0,
               ladder_items: Items | None = None, teacher_feat=None) -> tuple[np.ndarray, np.ndarray]:
    """Train an IQA head on cached features; keep the epoch with the best val score; (scores, opinions) for all rows.
    rank_items: ranking pre-training first (rank + fidelity, rank_epochs); ladder_items: then as many epochs on the
    teacher's scores of the same ladders (`weights` without the feature loss), as `[distill] ladder_epochs`."""
    torch.manual_seed(seed)
    head = IQAHead(x.shape[1], HIDDEN)
    proj = torch.nn.Linear(HIDDEN, teacher_feat.shape[1]) if teacher_feat is not None else None
    params = list(head.parameters()) + (list(proj.parameters()) if proj is not None else [])
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4, foreach=True)
    val = scene_matrix(imgs, val_rows)
    rng = np.random.default_rng(seed)
    for _ in range(rank_epochs if rank_items is not None else 0):
        _epoch(head, None, opt, x, rank_items, {"rank": 1.0, "fidelity": 1.0}, rng)
    for _ in range(rank_epochs if ladder_items is not None else 0):
        _epoch(head, None, opt, x, ladder_items, {k: v for k, v in weights.items() if k != "feature"}, rng)
    best, best_state = -2.0, None
    for _ in range(epochs):
        _epoch(head, proj, opt, x, items, weights, rng, teacher_feat)
        scores = np.zeros(x.shape[0])
        scores[val_rows] = _predict(head, x[val_rows])[0]
        v = val_score(val, scores)
        if v > best:
            best, best_state = v, {k: t.clone() for k, t in head.state_dict().items()}
    head.load_state_dict(best_state)
    return _predict(head, x)
