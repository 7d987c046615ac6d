"""GMACs of a teacher as it runs: every backbone on its own view plus the IQA head. The one count behind
`edgeiqa budget --model TEACHER`, the GMACs `teachers train` records per member and the bench's teacher row."""

from __future__ import annotations

import functools

import torch

from edgeiqa.budget import DEFAULT_BUDGET_GMACS, BudgetReport, count_gmacs
from edgeiqa.teachers.registry import create_teacher


def count_teacher(teacher, budget: float = DEFAULT_BUDGET_GMACS, cross_check: bool = True, *, views=None,
                  name: str | None = None, per_view: bool = True) -> BudgetReport:
    """fvcore report of a teacher: a registered name (built at random init: weights do not change the count) or a
    built IQATeacher, at `views` (default: its registered views). The total is the whole model; with `per_view`,
    `views` also gives each view's backbone share (the head is the small remainder), which costs one more trace
    per backbone. A teacher's views are fixed by the registry, so an over-budget teacher gets no smaller input
    proposed."""
    if isinstance(teacher, str):
        name = name or teacher
        teacher = create_teacher(teacher)
    teacher = teacher.eval()
    entry = teacher.entry
    views = list(views or entry.views)
    inputs = tuple(torch.zeros(1, 3, *v.size) for v in views)
    branches = ({v.name: (teacher.backbones[0 if entry.shared_backbone else k], (inputs[k],))
                 for k, v in enumerate(views)} if per_view else None)
    return count_gmacs(teacher, inputs, per_view=branches, name=name or entry.name, budget=budget,
                       input_hw=views[0].size, cross_check=cross_check)


@functools.lru_cache(maxsize=None)
def teacher_gmacs(name: str) -> float:
    """GMACs of registered teacher `name` at its own views, as a member's card records them (3 decimals); counted
    once per process (it depends on the name only), so the self-training round does not count again."""
    return round(count_teacher(name, cross_check=False, per_view=False).total_gmacs, 3)
