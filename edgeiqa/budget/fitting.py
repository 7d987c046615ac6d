"""The fitting search: over budget, the largest input of the same aspect ratio (sides multiples of 32)
that fits, found with a handful of real counts; `check_budget` raises `BudgetExceeded` naming it."""

from __future__ import annotations

import re
from typing import Callable

from edgeiqa.budget.report import BudgetReport
from edgeiqa.errors import BudgetExceeded, EdgeIQAError

SIZE_MULTIPLE = 32
MAX_SEARCH_COUNTS = 8


def _candidate(hw: tuple[int, int], k: int) -> tuple[int, int]:
    """k-th size of hw's aspect ratio: the shorter side is 32·k, the longer the nearest multiple of 32."""
    h, w = hw
    short, long_ = (h, w) if h <= w else (w, h)
    s = SIZE_MULTIPLE * k
    lg = max(SIZE_MULTIPLE, SIZE_MULTIPLE * round(long_ * s / short / SIZE_MULTIPLE))
    return (s, lg) if h <= w else (lg, s)


def largest_fitting_input(
    recount: Callable[[tuple[int, int]], float],
    hw: tuple[int, int],
    budget: float,
    total_gmacs: float | None = None,
    max_counts: int = MAX_SEARCH_COUNTS,
    estimate: Callable[[tuple[int, int]], float] | None = None,
) -> tuple[tuple[int, int], float] | None:
    """Largest (H, W) of hw's aspect ratio, sides multiples of 32 and not above hw, whose cost fits.

    At most `max_counts` calls of `recount` (the real fvcore count). Each next size is predicted from a
    cost model calibrated on the last real count: `estimate` (cheap FlopCounterMode on the meta device)
    when given, else MACs ∝ area (about right for convnets). A prediction that fits is confirmed by
    counting the next size up; after three counts the search falls back to plain bisection. None when
    even the smallest size does not fit (or the counts ran out before one that fits was found).
    """
    kmax = min(hw) // SIZE_MULTIPLE
    if kmax < 1:
        return None
    costs: dict[tuple[int, int], float] = {}

    def size_cost(size: tuple[int, int]) -> float:
        if size not in costs:
            costs[size] = float(estimate(size)) if estimate is not None else float(size[0] * size[1])
        return costs[size]

    def model_cost(k: int) -> float:
        return size_cost(_candidate(hw, k))

    lo, hi = 0, kmax + 1  # invariant: size lo fits (0: none found yet), size hi does not
    ratio = None  # real cost / model cost, from the latest real count
    if total_gmacs is not None and total_gmacs > budget:
        if _candidate(hw, kmax) == tuple(hw):
            hi = kmax  # the requested size itself is known not to fit
        base = size_cost(tuple(hw))
        ratio = total_gmacs / base if base > 0 else None
    counted: dict[int, float] = {}
    while hi - lo > 1 and len(counted) < max_counts:
        k = (lo + hi) // 2
        if ratio is not None and len(counted) < 3:
            # largest k in (lo, hi) predicted to fit (the cost model is monotone: bisect on it)
            a, b = lo, hi
            while b - a > 1:
                m = (a + b) // 2
                if model_cost(m) * ratio <= budget:
                    a = m
                else:
                    b = m
            k = min(max(a, lo + 1), hi - 1)
        counted[k] = float(recount(_candidate(hw, k)))
        if counted[k] <= budget:
            lo = k
        else:
            hi = k
        if model_cost(k):
            ratio = counted[k] / model_cost(k)
    if lo == 0:
        return None
    return _candidate(hw, lo), counted[lo]


def check_budget(report: BudgetReport, budget: float | None = None) -> BudgetReport:
    """Return the report when it fits; raise BudgetExceeded (exit code 3) naming the largest input of the
    same aspect ratio (sides multiples of 32) that fits, or saying why none can be named."""
    if budget is not None:
        report.budget_gmacs = float(budget)
    budget = report.budget_gmacs
    if report.fits:
        return report
    msg = (
        f"{report.model} at {report.input} costs {report.total_gmacs:.2f} GMACs, "
        f"over the {budget:g} GMAC budget."
    )
    hw = _parse_hw_or_none(report.input)
    if report.recount is not None and hw is not None:
        try:
            found = largest_fitting_input(report.recount, hw, budget, report.total_gmacs, estimate=report.estimate)
        except EdgeIQAError as exc:
            msg += f" Other input sizes could not be tried ({exc})."
        else:
            msg += _found_text(found)
    elif not report.fixed_input:
        msg += " (This model could not be rebuilt at other sizes to find one that fits.)"
    if report.fixed_input:
        msg += (
            f" Note: {report.model}'s input size is fixed by its architecture (position embeddings / "
            "attention windows); running it at another size changes the model. A smaller model "
            "(e.g. a student such as mobilenetv3_large_100 or a smaller transformer) is usually the better "
            "way to meet the budget."
        )
    raise BudgetExceeded(msg)


def _found_text(found) -> str:
    if found is None:
        return f" No input of this aspect ratio down to {SIZE_MULTIPLE} pixels fits: choose a smaller model."
    (fh, fw), g = found
    return (
        f" The largest input at the same aspect ratio (sides multiples of {SIZE_MULTIPLE}) "
        f"that fits is {fh}x{fw} ({g:.2f} GMACs): --input {fh}x{fw}."
    )


def _parse_hw_or_none(text: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None

