"""The budget in the loop: count the deployable student (all views, profile input) with fvcore, and with
`--fit` make it fit, by lowering the input size or by pruning channels with torch-pruning.
"""

from __future__ import annotations

import copy
import math

import torch

from edgeiqa.budget import check_budget, count_gmacs
from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import BudgetExceeded, EdgeIQAError
from edgeiqa.students import create_student, get_student_entry, list_students


def student_inputs(views: list[ViewSpec]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros(1, 3, *v.size) for v in views)


def views_at(views: list[ViewSpec], hw: tuple[int, int]) -> list[ViewSpec]:
    """All views rescaled so that the first one is hw (over-budget messages name the first view's size)."""
    return scaled_views(views, min(hw[0] / views[0].size[0], hw[1] / views[0].size[1]))


def count_student(model, views: list[ViewSpec], budget: float, name: str, cross_check: bool = True):
    """fvcore report of the deployable student: projection head dropped, every view counted."""
    deploy = copy.deepcopy(model).drop_training_heads().eval()
    per_view = {v.name: (deploy.backbone, torch.zeros(1, 3, *v.size)) for v in views}

    def recount(hw):
        return count_registered(name, views_at(views, hw), budget).total_gmacs

    return count_gmacs(deploy, student_inputs(views), per_view=per_view, name=name, budget=budget,
                       input_hw=views[0].size, cross_check=cross_check, recount=recount)


def count_registered(name: str, views: list[ViewSpec], budget: float):
    """fvcore report of a freshly built registered student (random init: weights do not change the count)."""
    return count_student(create_student(name, views, offline_pretrained=False), views, budget, name, cross_check=False)


def scaled_views(views: list[ViewSpec], factor: float) -> list[ViewSpec]:
    """Every view shrunk by `factor`, sides kept multiples of 32 (fragments: of lcm(grid, 8), whole patches)."""
    out = []
    for v in views:
        unit = v.grid * 8 // math.gcd(v.grid, 8) if v.kind == "fragments" else 32
        h, w = (max(unit, int(s * factor) // unit * unit) for s in v.size)
        out.append(ViewSpec(v.kind, (h, w), v.grid))
    return out


def fit_by_input(name: str, views: list[ViewSpec], budget: float, log=print) -> list[ViewSpec]:
    """The largest uniform shrink of all views that fits (binary search, a handful of counts)."""
    lo, hi = 0.05, 1.0
    best = None
    for _ in range(7):
        mid = (lo + hi) / 2
        cand = scaled_views(views, mid)
        if count_registered(name, cand, budget).total_gmacs <= budget:
            best, lo = cand, mid
        else:
            hi = mid
    if best is None:
        raise BudgetExceeded(f"student {name} does not fit {budget} GMACs even at {scaled_views(views, 0.05)}")
    log(f"--fit input: views shrunk to {[f'{v.kind}@{v.size[0]}x{v.size[1]}' for v in best]}")
    return best


def prune_to_budget(model, views: list[ViewSpec], budget: float, log=print, max_rounds: int = 12):
    """Prune backbone channels (torch-pruning, L1 magnitude) step by step until fvcore says it fits.

    The returned model carries `pruning` (method, ratio): `save_student` then stores what `load_student`
    needs to rebuild the narrower layers.
    GhostNet's Ghost modules concatenate and slice channels, which torch-pruning does not model
    reliably: for GhostNet students pruning is refused with a message (lower the input instead).
    """
    import torch_pruning as tp

    if get_student_entry(model.student_name).timm_name.startswith("ghostnet"):
        raise EdgeIQAError("pruning GhostNet students is not supported (concat-slice Ghost modules); use --fit input")
    example = student_inputs(views)
    for ratio in [0.1 * k for k in range(1, max_rounds + 1)]:
        cand = copy.deepcopy(model)
        cand.eval()
        # The head keeps its shape: only backbone channels are pruned.
        heads = [cand.embed, cand.score] + ([cand.projection] if cand.projection is not None else [])
        pruner = tp.pruner.MagnitudePruner(cand, example, importance=tp.importance.MagnitudeImportance(p=1),
                                           pruning_ratio=min(ratio, 0.9), ignored_layers=heads)
        pruner.step()
        # save_student keeps the narrowed layer shapes when a model carries this record
        cand.pruning = {"method": "torch-pruning MagnitudePruner (L1)", "ratio": round(min(ratio, 0.9), 2)}
        report = count_student(cand, views, budget, model.student_name)
        log(f"--fit prune: ratio {ratio:.1f} -> {report.total_gmacs:.2f} GMACs")
        if report.total_gmacs <= budget:
            return cand, report
    raise BudgetExceeded(f"pruning {model.student_name} to 90% did not reach {budget} GMACs")


def pick_student(name: str, views: list[ViewSpec], budget: float, log=print) -> str:
    """`auto` = the most capable registered student that fits; a named one is returned as is."""
    if name != "auto":
        get_student_entry(name)
        return name
    reports = []
    for cand in list_students():
        report = count_registered(cand, views, budget)
        if report.total_gmacs <= budget:
            log(f"student auto -> {cand} ({report.total_gmacs:.2f} GMACs <= {budget})")
            return cand
        log(f"student {cand}: {report.total_gmacs:.2f} GMACs > {budget}, trying the next")
        reports.append(report)
    # None fits: the budget message of the cheapest student, naming the largest input that would fit.
    check_budget(min(reports, key=lambda r: r.total_gmacs), budget)
    raise BudgetExceeded(f"no registered student fits {budget} GMACs")


def floor_gmacs(name: str, views: list[ViewSpec], hidden: int = 256) -> float:
    """A lower bound of `name`'s deployable GMACs at `views`, in a fraction of a second: torch's FlopCounterMode
    on a meta-device copy (convolutions and matmuls only, so never above fvcore's count, which adds the rest)."""
    from edgeiqa.budget.counting import _torch_count

    with torch.device("meta"):  # built without memory or init: only the shapes are counted
        model = create_student(name, views, offline_pretrained=False, hidden=hidden).drop_training_heads().eval()
    macs = _torch_count(model, student_inputs(views))
    return 0.0 if macs is None else macs / 1e9


def precheck_budget(name: str, views: list[ViewSpec], budget: float, fit: str | None, hidden: int = 256) -> None:
    """Refuse in seconds a budget no candidate student can meet at any input the budget search may reach (sides
    down to 32 pixels, fragments to one patch per cell), before the exact fvcore counts and before any teacher
    trains. `--fit prune` narrows channels instead, so its floor is not known here: nothing is refused."""
    if fit == "prune":
        return
    smallest = scaled_views(views, 0.0)  # every side at its unit: the least the input search can try
    candidates = list_students() if name == "auto" else [name]
    floors = {}
    for cand in candidates:
        floors[cand] = floor_gmacs(cand, smallest, hidden)
        if floors[cand] <= budget:  # one may fit: the exact counts decide
            return
    cheapest = min(floors, key=floors.get)
    sizes = ", ".join(f"{v.kind}@{v.size[0]}x{v.size[1]}" for v in smallest)
    who = "no registered student fits" if name == "auto" else f"student {name} does not fit"
    raise BudgetExceeded(f"{who}: {cheapest} costs at least {floors[cheapest]:.4f} GMACs even at the smallest input "
                         f"({sizes}), over the {budget:g} GMAC budget; raise --budget or try --fit prune")
