"""GMACs of a registered teacher as it runs: every backbone on its own view plus the IQA head."""

from __future__ import annotations

import torch

from edgeiqa.budget import DEFAULT_BUDGET_GMACS, BudgetReport, count_gmacs
from edgeiqa.teachers.registry import create_teacher


def count_teacher(name: str, budget: float = DEFAULT_BUDGET_GMACS, cross_check: bool = True) -> BudgetReport:
    """fvcore report of teacher `name` at its registered views (random init: weights do not change the
    count). The total is the whole model, as `teachers train` records it; `views` gives each view's
    backbone share (the head is the small remainder). Its views are fixed by the registry, so an
    over-budget teacher gets no smaller input proposed."""
    teacher = create_teacher(name).eval()
    entry = teacher.entry
    inputs = tuple(torch.zeros(1, 3, *v.size) for v in entry.views)
    per_view = {v.name: (teacher.backbones[0 if entry.shared_backbone else k], (inputs[k],))
                for k, v in enumerate(entry.views)}
    return count_gmacs(teacher, inputs, per_view=per_view, name=name, budget=budget, input_hw=entry.views[0].size,
                       cross_check=cross_check)
