"""What a count produces: `BudgetReport` (total, per view, parameters, cross-check, budget) and the
conventions shared by every part of the budget package."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

CONVENTION = "1 MAC = 1 fused multiply-add, fvcore FlopCountAnalysis"
DEFAULT_BUDGET_GMACS = 50.0


def format_hw(hw: Sequence[int]) -> str:
    return f"{int(hw[0])}x{int(hw[1])}"


@dataclass
class BudgetReport:
    model: str
    input: str  # "HxW", height first
    total_gmacs: float
    views: dict[str, float]
    params_m: float
    skipped_ops: dict[str, int]
    cross_check_gmacs: float | None
    budget_gmacs: float = DEFAULT_BUDGET_GMACS
    convention: str = CONVENTION
    fixed_input: bool = False  # the architecture is built for one input size (ViT, Swin)
    # hw -> total GMACs at that input: lets `check_budget` find the largest input that fits.
    recount: Callable[[tuple[int, int]], float] | None = field(default=None, repr=False, compare=False)
    # hw -> a cheap estimate of the same (FlopCounterMode on the meta device) that guides the search.
    estimate: Callable[[tuple[int, int]], float] | None = field(default=None, repr=False, compare=False)

    @property
    def fits(self) -> bool:
        return self.total_gmacs <= self.budget_gmacs

    def to_dict(self) -> dict:
        def r(x):
            return None if x is None else round(float(x), 4)

        return {
            "model": self.model,
            "input": self.input,
            "total_gmacs": r(self.total_gmacs),
            "views": {k: r(v) for k, v in self.views.items()},
            "params_m": r(self.params_m),
            "skipped_ops": dict(self.skipped_ops),
            "cross_check_gmacs": r(self.cross_check_gmacs),
            "budget_gmacs": r(self.budget_gmacs),
            "fits": bool(self.fits),
            "convention": self.convention,
        }

