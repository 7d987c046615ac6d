"""Compute budget: how many GMACs one image costs the deployed model, all views included.

Counting convention (copied into the README)
--------------------------------------------
- **1 MAC = 1 fused multiply-add**, counted by fvcore's `FlopCountAnalysis` (fvcore calls it a "flop",
  but counts one multiply-add of a conv/linear/matmul as one). GMACs = 1e9 MACs, batch size 1.
- The **whole model as timm builds it** is counted, classifier included (`pretrained=False`: no network,
  the weights do not change the count). This is the convention of the figures in design.md and of the
  AIM 2024 rule, all reproduced within 0.1 %: MobileNetV3-L 4.09 GMACs @720×1280 (10.45 @1231×1907,
  36.7 @2160×3840), GhostNetV2 (`ghostnetv2_100`) 3.24 / 8.29, NF-RegNet-B1 (`nf_regnet_b1`)
  11.15 / 28.44, Swin-T@224 4.51, Swin-B@384 47.19, ViT-B/16@384 55.5. Leaving the ImageNet
  classifier out (`num_classes=0`) would change these by only 1.28 M MACs (0.03 % of MobileNetV3-L).
- **Attention is counted**: timm's fused attention (`F.scaled_dot_product_attention`) is switched off
  per module while counting (and restored afterwards), because fvcore counts SDPA as zero (ViT-B@384
  would read 49.4 instead of 55.5). Any SDPA call that remains (non-timm modules) is counted by a
  handler added here: B·heads·L·S·(E + Ev) MACs, the same as the unfused Q·Kᵀ and A·V matmuls.
- **Views**: a model that takes several inputs (one per view) is counted over all of them; `views`
  reports each view's share. The CLI's multi-view models run one shared backbone per view (UIQA), so the
  total is the sum over views.
- Ops fvcore has no formula for (activations, element-wise add/mul, pooling, softmax) cost no MACs
  and are listed in `skipped_ops` (op → number of calls); none of them is a multiply-add of weights.
- **Cross-check**: torch's `torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2 = MACs) on the same
  model. The two agree except that fvcore also counts BatchNorm/normalisation as 1 MAC per element
  (≈4 % of MobileNetV3-L; <0.3 % for transformers).
- Input sizes are H×W, height first. Over budget, `check_budget` names the largest input of the same
  aspect ratio with both sides multiples of 32 that fits (at most 8 real counts: a search on scale
  guided by a cheap FlopCounterMode estimate on the meta device). A model over 1000 GMACs at the
  requested size is not traced (minutes, many GB): its total is that estimate, and `convention` says so.
  Transformers built for one input size (ViT, Swin) are rebuilt at the requested size
  (`img_size=(H, W)`); for them a smaller model is usually the better way under a budget.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import importlib
import logging
import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn as nn

from edgeiqa.errors import BudgetExceeded, EdgeIQAError

CONVENTION = "1 MAC = 1 fused multiply-add, fvcore FlopCountAnalysis"
DEFAULT_BUDGET_GMACS = 50.0
SIZE_MULTIPLE = 32
MAX_SEARCH_COUNTS = 8
# Above this many GMACs (estimated first with FlopCounterMode on a meta-device copy, which costs no
# memory) fvcore's traced forward pass would take minutes and many GB (ViT at 4K: 22 TMAC): the
# estimate is reported instead and marked so in `convention`.
MAX_TRACE_GMACS = 1000.0

__all__ = [
    "CONVENTION",
    "DEFAULT_BUDGET_GMACS",
    "BudgetReport",
    "BudgetTarget",
    "count_gmacs",
    "check_budget",
    "largest_fitting_input",
    "create_timm_for_budget",
    "resolve_model",
    "format_hw",
]


def format_hw(hw: Sequence[int]) -> str:
    return f"{int(hw[0])}x{int(hw[1])}"


# ---------------------------------------------------------------------------------------------- report
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


# ---------------------------------------------------------------------------------------------- counting
def _sdpa_handle(inputs, outputs):
    """fvcore handle for aten::scaled_dot_product_attention: Q·Kᵀ plus A·V multiply-adds."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    length, emb = q[-2], q[-1]
    src, emb_v = k[-2], v[-1]
    return batch * length * src * (emb + emb_v)


@contextlib.contextmanager
def _counting_mode(model):
    """eval(), no_grad, timm fused attention off, warnings and fvcore logging quiet; all restored."""
    was_training = model.training
    fused = [(m, m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")]
    timm_cfg = None
    with contextlib.suppress(ImportError):
        import timm.layers.config as timm_cfg  # noqa: F811
    old_global = getattr(timm_cfg, "_USE_FUSED_ATTN", None)
    fv_logger = logging.getLogger("fvcore")
    old_level = fv_logger.level
    try:
        model.eval()
        for m, _ in fused:
            m.fused_attn = False
        if old_global is not None:
            timm_cfg._USE_FUSED_ATTN = 0
        fv_logger.setLevel(logging.ERROR)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for m, value in fused:
            m.fused_attn = value
        if old_global is not None:
            timm_cfg._USE_FUSED_ATTN = old_global
        fv_logger.setLevel(old_level)
        model.train(was_training)


class _KwargsModel(nn.Module):
    """Make a dict-input model traceable: positional tensors -> keyword arguments."""

    def __init__(self, model, keys):
        super().__init__()
        self.inner = model
        self.keys = list(keys)

    def forward(self, *tensors):
        return self.inner(**dict(zip(self.keys, tensors)))


def _normalise_inputs(model, inputs):
    if isinstance(inputs, torch.Tensor):
        return model, (inputs,)
    if isinstance(inputs, Mapping):
        keys = list(inputs)
        return _KwargsModel(model, keys), tuple(inputs[k] for k in keys)
    return model, tuple(inputs)


def _describe_failure(name: str, inputs: tuple, exc: Exception) -> EdgeIQAError:
    shapes = ", ".join("x".join(str(d) for d in getattr(t, "shape", ())) for t in inputs)
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return EdgeIQAError(f"could not run {name} on input {shapes} to count it: {msg}")


def _fvcore_count(model, inputs: tuple, name: str) -> tuple[int, Counter]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

    counter = FlopCountAnalysis(model, inputs)
    counter.set_op_handle("aten::scaled_dot_product_attention", _sdpa_handle)
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    counter.tracer_warnings("none")
    try:
        total = counter.total()
    except (RuntimeError, AssertionError, ValueError, TypeError, IndexError) as exc:
        raise _describe_failure(name, inputs, exc) from exc
    return int(total), Counter(counter.unsupported_ops())


def _torch_count(model, inputs: tuple) -> float | None:
    """MACs by torch's FlopCounterMode (FLOPs / 2), on a meta-device copy when possible (no memory,
    no compute); on the real model otherwise. None when neither runs."""
    from torch.utils.flop_counter import FlopCounterMode

    def run(m, xs):
        counter = FlopCounterMode(display=False)
        with counter:
            m(*xs)
        return counter.get_total_flops() / 2

    try:
        meta_model = copy.deepcopy(model).to("meta")
        meta_inputs = tuple(x.to("meta") if isinstance(x, torch.Tensor) else x for x in inputs)
        return run(meta_model, meta_inputs)
    except Exception:  # noqa: BLE001 - a model that cannot run on meta is counted for real below
        pass
    try:
        return run(model, inputs)
    except Exception:  # noqa: BLE001 - the cross-check is advisory
        return None


def _hw_of(inputs: tuple) -> str:
    for x in inputs:
        shape = getattr(x, "shape", None)
        if shape is not None and len(shape) >= 2:
            return format_hw(shape[-2:])
    return "?"


def _total_gmacs(model, inputs, name: str) -> tuple[float, Counter, bool, float | None]:
    """(GMACs, skipped ops, traced, FlopCounterMode GMACs) of one model call. Reports the FlopCounterMode
    estimate instead of tracing when the model is far too large to trace (see MAX_TRACE_GMACS)."""
    model, xs = _normalise_inputs(model, inputs)
    with _counting_mode(model):
        estimate = _torch_count(model, xs)
        estimate = None if estimate is None else estimate / 1e9
        if estimate is not None and estimate > MAX_TRACE_GMACS:
            return estimate, Counter(), False, estimate
        macs, skipped = _fvcore_count(model, xs, name)
    return macs / 1e9, skipped, True, estimate


def count_gmacs(
    model,
    inputs,
    *,
    per_view: Mapping[str, tuple[Any, Any]] | None = None,
    total_from_views: bool = False,
    name: str | None = None,
    input_hw: Sequence[int] | None = None,
    view_name: str = "input",
    budget: float = DEFAULT_BUDGET_GMACS,
    cross_check: bool = True,
    fixed_input: bool = False,
    recount: Callable[[tuple[int, int]], float] | None = None,
    estimate: Callable[[tuple[int, int]], float] | None = None,
) -> BudgetReport:
    """Count `model(*inputs)` (a tensor, a tuple of tensors, or a dict of keyword tensors).

    per_view: view name -> (module, input) for the branch each view runs; each is counted on its own
      (identical module + input shape counted once). Without it `views` = {view_name: total}.
    total_from_views: the model is nothing but those branches (a shared backbone per view, outputs
      concatenated): the total is the sum over views, so the backbone is traced once, not once per view.
    recount: hw -> total GMACs at another input size, used by `check_budget` to find the largest input
      that fits; estimate: hw -> a cheap approximation of it that guides that search (optional).
    """
    name = name or type(model).__name__
    model_n, xs = _normalise_inputs(model, inputs)
    hw = format_hw(input_hw) if input_hw is not None else _hw_of(xs)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    traced = True

    views: dict[str, float] = {}
    skipped: Counter = Counter()
    if per_view:
        cache: dict[tuple, tuple[float, Counter, bool, float | None]] = {}
        for vname, (module, vin) in per_view.items():
            _, vxs = _normalise_inputs(module, vin)
            key = (id(module), tuple(tuple(getattr(x, "shape", ())) for x in vxs))
            if key not in cache:
                cache[key] = _total_gmacs(module, vin, name)
            if total_from_views:
                skipped.update(cache[key][1])
            views[vname] = cache[key][0]
            traced = traced and cache[key][2]
    cross = None
    if per_view and total_from_views:
        total = sum(views.values())
        if cross_check:
            with _counting_mode(model_n):
                cross_macs = _torch_count(model_n, xs)
            cross = None if cross_macs is None else cross_macs / 1e9
    else:
        total, skipped, traced_total, cross = _total_gmacs(model, inputs, name)
        traced = traced and traced_total
        if not per_view:
            views = {view_name: total}
    if not cross_check:
        cross = None
    convention = CONVENTION
    if not traced:
        convention += (
            f"; this model is over {MAX_TRACE_GMACS:g} GMACs at {hw}, too large to trace: "
            "the figure is torch FlopCounterMode's estimate"
        )
    return BudgetReport(
        model=name,
        input=hw,
        total_gmacs=float(total),
        views={k: float(v) for k, v in views.items()},
        params_m=float(params_m),
        skipped_ops={str(k): int(v) for k, v in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))},
        cross_check_gmacs=cross,
        budget_gmacs=float(budget),
        convention=convention,
        fixed_input=fixed_input,
        recount=recount,
        estimate=estimate,
    )


# ---------------------------------------------------------------------------------------------- fitting
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


# ---------------------------------------------------------------------------------------------- models
def _timm_is_fixed(model) -> bool:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    pe = getattr(model, "patch_embed", None)
    return bool(cfg.get("fixed_input_size")) or getattr(pe, "img_size", None) is not None


def _zero_tensors_on_cpu(model):
    """Materialise a meta-device model on CPU with zeros (the count does not depend on values)."""
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            t.zero_()
    for m in model.modules():
        for v in vars(m).values():
            if isinstance(v, torch.Tensor) and v.is_meta:
                raise RuntimeError("plain tensor attribute left on meta")
    return model


def _timm_create(name: str, **kwargs):
    """timm.create_model(pretrained=False); on the meta device then zero-filled when that works
    (random init of ViT-B/Swin-B costs seconds; the count does not depend on weights)."""
    import timm

    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = timm.create_model(name, pretrained=False, **kwargs)
        return _zero_tensors_on_cpu(model)
    except Exception:  # noqa: BLE001 - some architectures compute at init: build them normally
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return timm.create_model(name, pretrained=False, **kwargs)


def create_timm_for_budget(name: str, input_hw: Sequence[int]):
    """The timm model `name` as timm builds it (classifier included, pretrained=False: no network),
    rebuilt with `img_size=(H, W)` when the architecture has a fixed input size (ViT, Swin)."""
    import timm

    hw = (int(input_hw[0]), int(input_hw[1]))
    if not timm.is_model(name):
        raise _unknown_model_error(name)
    try:
        model = _timm_create(name)
    except Exception as exc:  # noqa: BLE001
        raise EdgeIQAError(f"timm could not build {name}: {exc}") from exc
    if _timm_is_fixed(model):
        built = getattr(getattr(model, "patch_embed", None), "img_size", None)
        if built is None:
            built = tuple((model.pretrained_cfg or {}).get("input_size", (3, 0, 0))[1:])
        if tuple(built) != hw:
            try:
                model = _timm_create(name, img_size=hw)
            except Exception as exc:  # noqa: BLE001
                raise EdgeIQAError(
                    f"{name} has a fixed input size ({format_hw(built)}) and timm cannot rebuild it at "
                    f"{format_hw(hw)}: {exc}. Try a size whose sides are multiples of the patch size "
                    "(Swin: of 32 x window size), or a convolutional model."
                ) from exc
        model.edgeiqa_fixed_input = True
    return model


@dataclass
class BudgetTarget:
    """What `resolve_model` hands to `count_gmacs`: the deployed model, its example inputs, the
    per-view branches, and how to rebuild it at another size (for the fitting search)."""

    name: str
    input_hw: tuple[int, int]
    model: Any
    inputs: tuple
    per_view: dict[str, tuple[Any, Any]] | None = None
    total_from_views: bool = False
    fixed_input: bool = False
    rebuild: Callable[[tuple[int, int]], "BudgetTarget"] | None = None

    def count(self, budget: float = DEFAULT_BUDGET_GMACS, cross_check: bool = True) -> BudgetReport:
        recount = estimate = None
        if self.rebuild is not None:
            rebuild = self.rebuild

            def recount(hw):
                return rebuild(tuple(hw)).count(budget, cross_check=False).total_gmacs

            def estimate(hw):
                return rebuild(tuple(hw)).estimate()

        view_name = next(iter(self.per_view)) if self.per_view and len(self.per_view) == 1 else "input"
        per_view = self.per_view if self.per_view and len(self.per_view) > 1 else None
        try:
            return self._count(per_view, view_name, budget, cross_check, recount, estimate)
        except EdgeIQAError as exc:
            if not self.fixed_input:
                raise
            raise EdgeIQAError(
                f"{exc} ({self.name} is a fixed-size architecture rebuilt at {format_hw(self.input_hw)}; "
                "try sides that are multiples of 32, or of 32 x the window size for Swin)"
            ) from exc

    def _count(self, per_view, view_name, budget, cross_check, recount, estimate) -> BudgetReport:
        return count_gmacs(
            self.model,
            self.inputs,
            per_view=per_view,
            total_from_views=self.total_from_views and per_view is not None,
            name=self.name,
            input_hw=self.input_hw,
            view_name=view_name,
            budget=budget,
            cross_check=cross_check,
            fixed_input=self.fixed_input,
            recount=recount,
            estimate=estimate,
        )

    def estimate(self) -> float:
        """Total GMACs by FlopCounterMode on a meta-device copy: no memory, about a second; within a
        few % of the fvcore count (it leaves out normalisation layers)."""
        model, xs = _normalise_inputs(self.model, self.inputs)
        with _counting_mode(model):
            macs = _torch_count(model, xs)
        if macs is None:
            return self.count(cross_check=False).total_gmacs
        return macs / 1e9


class SharedBackboneViews(nn.Module):
    """The CLI's multi-view model: the same backbone on each view, outputs concatenated (UIQA)."""

    def __init__(self, net):
        super().__init__()
        self.backbone = net

    def forward(self, *xs):
        return torch.cat([self.backbone(x).flatten(1) for x in xs], dim=1)


def _shared_backbone_target(name, backbone, hw, views, rebuild) -> BudgetTarget:
    """One backbone run on each view (UIQA-style), outputs concatenated: total = sum over views."""
    views = list(views) or ["resize"]

    x = torch.zeros(1, 3, hw[0], hw[1])
    wrapper = SharedBackboneViews(backbone)
    return BudgetTarget(
        name=name,
        input_hw=hw,
        model=wrapper if len(views) > 1 else backbone,
        inputs=tuple(x for _ in views) if len(views) > 1 else (x,),
        per_view={v: (backbone, (x,)) for v in views},
        total_from_views=True,
        fixed_input=bool(getattr(backbone, "edgeiqa_fixed_input", False)),
        rebuild=rebuild,
    )


REGISTRY_MODULES = ("edgeiqa.students", "edgeiqa.teachers")


def _registry_create(name: str, hw, views):
    """Hook for edgeiqa's own registries: a module in REGISTRY_MODULES that exposes
    `is_registered(name) -> bool` and `create_for_budget(name, input_hw, views)` returning either a
    BudgetTarget (full control: multi-input model, per-view branches) or an nn.Module backbone that is
    run once per view. None when no registry knows the name (or one knows it but has no
    create_for_budget yet and timm has a model of that name: timm's is counted)."""
    for modname in REGISTRY_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        is_reg = getattr(mod, "is_registered", None)
        create = getattr(mod, "create_for_budget", None)
        if callable(is_reg) and is_reg(name):
            if callable(create):
                return create(name, hw, list(views))
            import timm

            if not timm.is_model(name):
                raise EdgeIQAError(
                    f"{name!r} is registered in {modname} but that registry has no create_for_budget() to "
                    "build it for counting; pass a timm model name instead"
                )
    return None


def _registry_names() -> list[str]:
    names: list[str] = []
    for modname in REGISTRY_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        lister = next((getattr(mod, n) for n in ("list_students", "list_teachers", "list_registered")
                       if callable(getattr(mod, n, None))), None)
        if callable(lister):
            with contextlib.suppress(Exception):
                names.extend(str(n) for n in lister())
    return names


def _unknown_model_error(name: str) -> EdgeIQAError:
    import timm

    pool = list(timm.list_models()) + _registry_names()
    close = difflib.get_close_matches(name, pool, n=5, cutoff=0.6)
    if len(close) < 5:
        parts = sorted((p for p in re.split(r"[^a-zA-Z0-9]+", name) if len(p) >= 3), key=len, reverse=True)
        for part in parts[:2]:
            for cand in timm.list_models(f"*{part}*"):
                if cand not in close:
                    close.append(cand)
                if len(close) >= 5:
                    break
    hint = f"; did you mean: {', '.join(close[:5])}?" if close else ""
    return EdgeIQAError(f"unknown model {name!r} (not an edgeiqa student/teacher nor a timm model){hint}")


def resolve_model(name: str, input_hw: Sequence[int], views: Sequence[str] = ("resize",)) -> BudgetTarget:
    """Build what `edgeiqa budget --model NAME` counts: an edgeiqa registered student/teacher when a
    registry knows `name` (see `_registry_create`), else the timm model `name`; one input per view at
    `input_hw`, the same backbone on each."""
    hw = (int(input_hw[0]), int(input_hw[1]))
    views = list(views) or ["resize"]

    def rebuild(new_hw):
        return resolve_model(name, new_hw, views)

    made = _registry_create(name, hw, views)
    if isinstance(made, BudgetTarget):
        if made.rebuild is None:
            made.rebuild = rebuild
        return made
    if isinstance(made, nn.Module):
        return _shared_backbone_target(name, made, hw, views, rebuild)
    backbone = create_timm_for_budget(name, hw)
    return _shared_backbone_target(name, backbone, hw, views, rebuild)
