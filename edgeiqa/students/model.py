"""IQAStudent: a timm backbone, pooled multi-level features of every view, an MLP that scores.

Each view goes through the same backbone (weights shared, so the parameter count does not grow with
views). From the last feature levels we keep the spatial mean (content, exposure) and standard deviation
(texture energy: noise, blur, blocking), concatenate across levels and views, and regress one score.
`projection` maps the embedding to the teachers' opinion-feature size for feature distillation; it is
used only in training and is not part of the exported graph.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgeiqa.backbones import feature_backbone, pool_mean_std
from edgeiqa.data.views import ViewSpec
from edgeiqa.students.registry import get_student_entry


class IQAStudent(nn.Module):
    def __init__(self, backbone: nn.Module, channels: list[int], views: list[ViewSpec], hidden: int = 256, feature_dim: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.view_backbones: nn.ModuleList | None = None  # set by untie_views() for export only
        self.view_names = [v.name for v in views]
        in_dim = 2 * sum(channels) * len(views)
        self.embed = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU())
        self.score = nn.Linear(hidden, 1)
        self.projection = nn.Linear(hidden, feature_dim) if feature_dim else None

    def freeze_early(self, n_blocks: int) -> "IQAStudent":
        """Freeze the stem and the first `n_blocks` blocks/stages: the high-resolution layers, where
        back-propagation costs most on a CPU and ImageNet features already fit IQA. They stay in eval mode."""
        bb = self.backbone
        if hasattr(bb, "blocks"):
            frozen = [m for m in (getattr(bb, "conv_stem", None), getattr(bb, "bn1", None)) if m is not None] + list(bb.blocks[:n_blocks])
        elif hasattr(bb, "stages"):
            frozen = [bb.stem] + list(bb.stages[:n_blocks])
        else:
            frozen = []
        for m in frozen:
            m.requires_grad_(False)
        self._frozen = frozen
        self.train(self.training)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        for m in getattr(self, "_frozen", []):
            m.eval()
        return self

    def embedding(self, *views: torch.Tensor) -> torch.Tensor:
        backbones = self.view_backbones or [self.backbone] * len(views)
        pooled = [pool_mean_std(f) for bb, x in zip(backbones, views) for f in bb(x)]
        return self.embed(torch.cat(pooled, dim=1))

    def untie_views(self) -> "IQAStudent":
        """One copy of the backbone per view (the same weights, so the same scores): for a converter whose int8
        program cannot share one quantised weight between two views' convolutions (ExecuTorch's XNNPACK delegate
        refuses to load it). The artefact then holds the backbone's weights once per view."""
        if len(self.view_names) > 1:
            rest = [copy.deepcopy(self.backbone) for _ in self.view_names[1:]]
            self.view_backbones = nn.ModuleList([self.backbone, *rest])
        return self

    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        """Scores (N,) for one batch per view, in the order of `view_names`."""
        return self.score(self.embedding(*views)).squeeze(1)

    def forward_train(self, *views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        emb = self.embedding(*views)
        proj = self.projection(emb) if self.projection is not None else None
        return self.score(emb).squeeze(1), proj

    def drop_training_heads(self) -> "IQAStudent":
        """The deployable model: no projection head (export and GMAC counting use this)."""
        self.projection = None
        return self


def build_student(
    name: str,
    views: list[ViewSpec],
    *,
    pretrained: bool = False,
    offline_pretrained: bool = True,
    weights=None,
    hidden: int = 256,
    feature_dim: int | None = None,
) -> IQAStudent:
    """The registered student `name` (its timm backbone and feature levels) with an IQA head over `views`.
    `weights` = a backbone state dict file (not a student.pt). Family files call this."""
    entry = get_student_entry(name)
    backbone, source, channels = feature_backbone(
        entry.timm_name, entry.out_indices, pretrained=pretrained, offline_pretrained=offline_pretrained, weights=weights
    )
    model = IQAStudent(backbone, channels, views, hidden=hidden, feature_dim=feature_dim)
    model.student_name = name
    model.weights_source = source
    return model
