"""Compute budget: how many GMACs one image costs the deployed model, all views included.

- `counting`: fvcore counts (the convention, attention counted) with a FlopCounterMode cross-check;
- `fitting`: over budget, the largest input of the same aspect ratio that fits (`check_budget`);
- `models`: timm models built for counting, one input per view (`resolve_model`, `BudgetTarget`);
- `report`: `BudgetReport`, what a count produces.
"""

from edgeiqa.budget.counting import MAX_TRACE_GMACS, MAX_TRACE_PIXELS, count_gmacs
from edgeiqa.budget.fitting import MAX_SEARCH_COUNTS, SIZE_MULTIPLE, check_budget, largest_fitting_input
from edgeiqa.budget.models import (
    BudgetTarget,
    SharedBackboneViews,
    create_timm_for_budget,
    resolve_model,
    unknown_model_error,
)
from edgeiqa.budget.report import CONVENTION, DEFAULT_BUDGET_GMACS, BudgetReport, format_hw

__all__ = [
    "CONVENTION",
    "DEFAULT_BUDGET_GMACS",
    "MAX_SEARCH_COUNTS",
    "MAX_TRACE_GMACS",
    "MAX_TRACE_PIXELS",
    "SIZE_MULTIPLE",
    "BudgetReport",
    "BudgetTarget",
    "SharedBackboneViews",
    "count_gmacs",
    "check_budget",
    "largest_fitting_input",
    "create_timm_for_budget",
    "resolve_model",
    "unknown_model_error",
    "format_hw",
]
