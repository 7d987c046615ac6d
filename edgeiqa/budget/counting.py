"""Compute budget: how many GMACs one image costs the deployed model, all views included.

Counting convention (summarised in docs/design.md)
--------------------------------------------------
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
  reports each view's share. A timm model given several views runs one shared backbone per view, so the
  total is the sum over views; edgeiqa's students and teachers are counted whole (backbone(s) on every
  view plus the IQA head), exactly as they are deployed.
- Ops fvcore has no formula for (activations, element-wise add/mul, pooling, softmax) cost no MACs
  and are listed in `skipped_ops` (op → number of calls); none of them is a multiply-add of weights.
- **Normalisation** is counted as fvcore does (measured on a single layer in eval mode, the mode counts
  run in): BatchNorm 1 MAC per element for the normalisation plus 1 for the affine scale/shift, so
  **2 per element** for the usual affine BN (1 with `affine=False`); LayerNorm and GroupNorm 5 per
  element (their statistics are computed at run time). tests/test_budget.py pins these figures.
- **Cross-check**: torch's `torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2 = MACs) on the same
  model. The two agree except that FlopCounterMode counts no normalisation layer at all (the
  difference is ≈4 % of MobileNetV3-L; <0.3 % for transformers).
- Input sizes are H×W, height first. Over budget, `check_budget` names the largest input of the same
  aspect ratio with both sides multiples of 32 that fits (at most 8 real counts: a search on scale
  guided by a cheap FlopCounterMode estimate on the meta device). A model over 1000 GMACs at the
  requested size, or an input over 4096x4096 pixels, is not traced (minutes, many GB): its total is that
  estimate, and `convention` says so. `edgeiqa budget` refuses sides over 16384 px before any work.
  Transformers built for one input size (ViT, Swin) are rebuilt at the requested size
  (`img_size=(H, W)`); for them a smaller model is usually the better way under a budget.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import warnings
from collections import Counter
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn as nn

from edgeiqa.budget.report import CONVENTION, DEFAULT_BUDGET_GMACS, BudgetReport, format_hw
from edgeiqa.errors import EdgeIQAError

# Above this many GMACs (estimated first with FlopCounterMode on a meta-device copy, which costs no
# memory) fvcore's traced forward pass would take minutes and many GB (ViT at 4K: 22 TMAC): the
# estimate is reported instead and marked so in `convention`.
MAX_TRACE_GMACS = 1000.0
# Above this many pixels in one input the traced pass holds GBs of activations even for a small model (a
# student at 10000x16384: 16 GB, minutes): the meta-device estimate is reported instead, as above.
MAX_TRACE_PIXELS = 4096 * 4096


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


def _max_pixels(inputs: tuple) -> int:
    return max((int(x.shape[-2]) * int(x.shape[-1]) for x in inputs if getattr(x, "ndim", 0) >= 2), default=0)


def _total_gmacs(model, inputs, name: str) -> tuple[float, Counter, bool, float | None]:
    """(GMACs, skipped ops, traced, FlopCounterMode GMACs) of one model call. Reports the FlopCounterMode
    estimate instead of tracing when the model is far too large to trace (see MAX_TRACE_GMACS)."""
    model, xs = _normalise_inputs(model, inputs)
    with _counting_mode(model):
        estimate = _torch_count(model, xs)
        estimate = None if estimate is None else estimate / 1e9
        if estimate is not None and (estimate > MAX_TRACE_GMACS or _max_pixels(xs) > MAX_TRACE_PIXELS):
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
            f"; at {hw} this model is over {MAX_TRACE_GMACS:g} GMACs or an input over {MAX_TRACE_PIXELS / 1e6:.1f} M "
            "pixels, too large to trace: the figure is torch FlopCounterMode's estimate"
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

