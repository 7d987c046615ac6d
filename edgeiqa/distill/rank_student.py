"""Label-free ranking pre-training of the student's head before distillation: the teachers' recipe
(teachers/rank_head.py) on the student's own ImageNet features.

The student's backbone is frozen for this step only (its pooled multi-level features are computed once for
the synthetic ladders); its scoring head (`embed` + `score`) learns that the more degraded copy of a photo
ranks lower, then (`[distill] ladder_epochs`) learns the teacher ensemble's scores of the same ladder images,
then distillation trains the whole student from there. The ladders are the teachers' own (same bases, copies,
levels and seed), so the teachers' scores come from the ladder features they stored when they ranked
(teachers.pipeline.score_ladders_with_ensemble): 1740 more teacher-labelled images for the cost of a few head passes.
Why: it lifts the distilled student on artefact kinds no label covers (docs/benchmarks.md, leave-kinds-out).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from edgeiqa.backbones import pool_mean_std
from edgeiqa.data.records import Dataset
from edgeiqa.data.torchdata import ImageCache
from edgeiqa.teachers.rank_head import RankSpec, ScorePhase, rank_pretrain_head


class _ScoreHead(nn.Module):
    """The student's scoring layers over pooled features, shaped like a teacher head: (scores, embedding)."""

    def __init__(self, student):
        super().__init__()
        self.embed, self.score = student.embed, student.score

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(pooled)
        return self.score(emb).squeeze(1), emb


class StudentFeatures(nn.Module):
    """An IQAStudent seen as a frozen feature extractor + head (what rank_head expects of a teacher)."""

    def __init__(self, student, views, name: str):
        super().__init__()
        self.student = student
        self.head = _ScoreHead(student)
        self.entry = SimpleNamespace(name=f"student {name}", views=list(views))
        self.feature_dim = student.embed[0].normalized_shape[0]
        self.weights_source = student.weights_source

    def encode(self, *views: torch.Tensor) -> torch.Tensor:
        return torch.cat([pool_mean_std(f) for x in views for f in self.student.backbone(x)], dim=1)


def rank_pretrain_student(student, views, name: str, dataset: Dataset, spec: RankSpec, *, seed: int, out_dir, progress: bool = True,
                          log=None, accel=None, then: ScorePhase | None = None) -> dict:
    """Pre-train `student`'s head in place (ranking, then `then`: the teachers' scores of the ladders); returns what the
    card keeps (rank_head.rank_pretrain_head's dict)."""
    autocast = {}
    if accel is not None:
        student.to(accel.device)
        autocast = {"autocast": accel.autocast}
    return rank_pretrain_head(StudentFeatures(student, views, name), dataset, ImageCache(), spec, seed=seed, out_dir=out_dir,
                              progress=progress, log=log, then=then, **autocast)
