"""IQATeacher: backbone(s) over several views, concatenated features -> opinion feature -> score.

UIQA style: with `shared_backbone=False` each view has its own backbone. The opinion feature is the
embedding right before the score layer; students learn to reproduce it (feature distillation).
"""

from __future__ import annotations

import torch
from torch import nn

from edgeiqa.backbones import create_backbone, pool_mean_std
from edgeiqa.teachers.registry import TeacherEntry, get_teacher_entry


class PooledEncoder(nn.Module):
    """A timm model without classifier: its own global pooling gives one vector per image."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.dim = model.num_features

    def forward(self, x):
        return self.model(x)


class MultiLevelEncoder(nn.Module):
    """A features_only CNN: mean+std pooled over its last feature levels."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.dim = 2 * sum(model.feature_info.channels())

    def forward(self, x):
        return torch.cat([pool_mean_std(f) for f in self.model(x)], dim=1)


def build_encoder(entry: TeacherEntry, pretrained: bool, weights=None) -> tuple[nn.Module, str]:
    kwargs = dict(entry.timm_kwargs)
    if entry.encoder == "multilevel":
        model, source = create_backbone(entry.timm_name, pretrained=pretrained, features_only=True, out_indices=(1, 2, 3, 4), **kwargs)
        return MultiLevelEncoder(model), source
    model, source = create_backbone(entry.timm_name, pretrained=pretrained, num_classes=0, **kwargs)
    return PooledEncoder(model), source


class IQAHead(nn.Module):
    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.embed = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(0.1))
        self.score = nn.Linear(hidden, 1)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        opinion = self.embed(feats)
        return self.score(opinion).squeeze(1), opinion


class IQATeacher(nn.Module):
    def __init__(self, entry: TeacherEntry, pretrained: bool = False, hidden: int = 256):
        super().__init__()
        self.entry = entry
        n_backbones = 1 if entry.shared_backbone else len(entry.views)
        encoders, sources = [], []
        for _ in range(n_backbones):
            enc, src = build_encoder(entry, pretrained)
            encoders.append(enc)
            sources.append(src)
        self.backbones = nn.ModuleList(encoders)
        self.weights_source = sources[0]
        self.feature_dim = encoders[0].dim * len(entry.views)
        self.head = IQAHead(self.feature_dim, hidden)
        self.opinion_dim = hidden

    def encode(self, *views: torch.Tensor) -> torch.Tensor:
        """Backbone features of all views, concatenated (the input of the head)."""
        feats = [self.backbones[0 if self.entry.shared_backbone else k](x) for k, x in enumerate(views)]
        return torch.cat(feats, dim=1)

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(score (N,), opinion feature (N, hidden))."""
        return self.head(self.encode(*views))


def build_teacher(name: str, pretrained: bool = False, hidden: int = 256) -> IQATeacher:
    """The registered teacher `name` (backbones per its entry, IQA head). Family files call this."""
    return IQATeacher(get_teacher_entry(name), pretrained=pretrained, hidden=hidden)
