"""Model construction for counting: a timm model by name (pretrained=False, rebuilt at the input size
when its architecture fixes one), one input per view through the same backbone, and `BudgetTarget`,
which counts it and knows how to rebuild it at another size for the fitting search.

edgeiqa's own students and teachers are built by their packages (a later stage than this one): the CLI
(`edgeiqa budget`) resolves those names first, so a toolkit name is never counted as timm's model.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from edgeiqa.budget.counting import _counting_mode, _normalise_inputs, _torch_count, count_gmacs
from edgeiqa.budget.report import DEFAULT_BUDGET_GMACS, BudgetReport, format_hw
from edgeiqa.errors import EdgeIQAError


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
        raise unknown_model_error(name)
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


def unknown_model_error(name: str, also_known: Sequence[str] = ()) -> EdgeIQAError:
    """One line naming the closest models first: timm's, plus `also_known` (edgeiqa's students and
    teachers, which the CLI passes: this stage does not import them)."""
    import difflib

    import timm

    pool = list(also_known) + list(timm.list_models())
    close = difflib.get_close_matches(name, pool, n=5, cutoff=0.6)
    if len(close) < 5:
        # Wildcard look-up on the longest word of the name ("mobilenet_v3_large" -> "*mobilenet*").
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
    """The timm model `name` (as timm builds it, classifier included) with one input per view at
    `input_hw`, the same backbone on each. edgeiqa's students and teachers are not resolved here: see
    `edgeiqa.cli.budget_cmd.count_model`, which counts them as `distill` and the teachers deploy them."""
    hw = (int(input_hw[0]), int(input_hw[1]))
    views = list(views) or ["resize"]

    def rebuild(new_hw):
        return resolve_model(name, new_hw, views)

    backbone = create_timm_for_budget(name, hw)
    return _shared_backbone_target(name, backbone, hw, views, rebuild)
