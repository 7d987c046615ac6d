"""Training losses by name, shared by teacher training and distillation.

Every loss takes a `LossBatch` and returns a scalar. Pairwise losses (`fidelity`, `rank`) compare only
images of the same scene when scenes are known: in PIQ23 and the sample set, scores are comparable within
a scene and not across scenes, so cross-scene pairs would teach noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgeiqa.errors import EdgeIQAError
from edgeiqa.registry import Registry


@dataclass
class LossBatch:
    pred: torch.Tensor  # (N,) predicted scores
    target: torch.Tensor  # (N,) targets on the label scale (ground truth or calibrated pseudo-labels)
    scene: torch.Tensor  # (N,) integer scene ids; -1 = no scene (all such images are one group)
    weight: torch.Tensor  # (N,) per-sample weight (pseudo-labels count less than ground truth)
    proj: torch.Tensor | None = None  # (N, D) student projection, for `feature`
    feat: torch.Tensor | None = None  # (N, D) teacher opinion features, for `feature`
    feat_mask: torch.Tensor | None = None  # (N,) bool: which rows have a teacher feature


# name -> loss function `fn(LossBatch) -> scalar`; the registered function computes the loss.
LOSSES = Registry("loss")
register_loss = LOSSES.register


def _pairs(batch: LossBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (i, j), i < j, in the same scene with different targets."""
    n = batch.pred.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=batch.pred.device)
    same = batch.scene[i] == batch.scene[j]
    differ = batch.target[i] != batch.target[j]
    keep = same & differ
    return i[keep], j[keep]


@register_loss("mse")
def mse(b: LossBatch) -> torch.Tensor:
    return (b.weight * (b.pred - b.target) ** 2).sum() / b.weight.sum().clamp_min(1e-8)


@register_loss("l1")
def l1(b: LossBatch) -> torch.Tensor:
    return (b.weight * (b.pred - b.target).abs()).sum() / b.weight.sum().clamp_min(1e-8)


@register_loss("plcc")
def plcc(b: LossBatch) -> torch.Tensor:
    """1 - Pearson correlation over the batch (scale-free; needs >= 3 distinct targets)."""
    if b.pred.numel() < 3 or b.target.std() < 1e-8:
        return b.pred.sum() * 0
    p = b.pred - b.pred.mean()
    t = b.target - b.target.mean()
    r = (p * t).sum() / (p.norm() * t.norm() + 1e-8)
    return (1 - r) / 2


@register_loss("fidelity")
def fidelity(b: LossBatch) -> torch.Tensor:
    """Fidelity loss (Tsai et al.) on same-scene pairs, with a Thurstone-style target probability."""
    i, j = _pairs(b)
    if i.numel() == 0:
        return b.pred.sum() * 0
    p_pred = torch.sigmoid(b.pred[i] - b.pred[j])
    p_true = (b.target[i] > b.target[j]).float()
    w = b.weight[i] * b.weight[j]
    loss = 1 - torch.sqrt(p_pred * p_true + 1e-8) - torch.sqrt((1 - p_pred) * (1 - p_true) + 1e-8)
    return (w * loss).sum() / w.sum().clamp_min(1e-8)


@register_loss("rank")
def rank(b: LossBatch, margin: float = 0.1) -> torch.Tensor:
    """Margin ranking loss on same-scene pairs."""
    i, j = _pairs(b)
    if i.numel() == 0:
        return b.pred.sum() * 0
    sign = torch.sign(b.target[i] - b.target[j])
    return F.relu(margin - sign * (b.pred[i] - b.pred[j])).mean()


@register_loss("feature")
def feature(b: LossBatch) -> torch.Tensor:
    """1 - cosine similarity between the student's projection and the teacher's opinion feature."""
    if b.proj is None or b.feat is None:
        return b.pred.sum() * 0
    mask = b.feat_mask if b.feat_mask is not None else torch.ones_like(b.pred, dtype=torch.bool)
    if not mask.any():
        return b.pred.sum() * 0
    return (1 - F.cosine_similarity(b.proj[mask], b.feat[mask], dim=1)).mean()


def check_loss_weights(weights: dict[str, float]) -> dict[str, float]:
    for name, w in weights.items():
        LOSSES.get(name)  # unknown -> EdgeIQAError with the closest name
        if float(w) < 0:
            raise EdgeIQAError(f"loss weight for {name!r} must be >= 0, got {w}")
    if not any(float(w) > 0 for w in weights.values()):
        raise EdgeIQAError("at least one loss needs a positive weight")
    return {k: float(v) for k, v in weights.items()}


def parse_loss_spec(text: str) -> dict[str, float]:
    """'mse=1,plcc=0.5,fidelity' -> {'mse': 1.0, 'plcc': 0.5, 'fidelity': 1.0} (the CLI's --losses)."""
    out = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value) if value else 1.0
        except ValueError:
            raise EdgeIQAError(f"bad loss weight in {part!r}: expected NAME=NUMBER") from None
    return check_loss_weights(out)


def combined_loss(weights: dict[str, float], batch: LossBatch) -> tuple[torch.Tensor, dict[str, float]]:
    total = batch.pred.sum() * 0
    parts = {}
    for name, w in weights.items():
        if w > 0:
            value = LOSSES.create(name, batch)
            parts[name] = float(value.detach())
            total = total + w * value
    return total, parts
