"""Teacher registry (timm style): `@register_teacher` in one file per family, `create_teacher` to build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError, did_you_mean


@dataclass(frozen=True)
class TeacherEntry:
    name: str
    timm_name: str
    views: tuple[ViewSpec, ...]
    shared_backbone: bool  # False = one backbone per view (UIQA); True = one backbone for all views
    encoder: str  # "pooled" (timm head-less pooled vector) or "multilevel" (mean+std of feature levels)
    timm_kwargs: dict
    description: str


_TEACHERS: dict[str, TeacherEntry] = {}


def register_teacher(name: str, *, timm_name: str, views, shared_backbone: bool = True, encoder: str = "pooled", timm_kwargs=None):
    def wrap(fn: Callable) -> Callable:
        if name in _TEACHERS:
            raise ValueError(f"teacher {name!r} registered twice")
        specs = tuple(ViewSpec(k, tuple(size)) for k, size in views)
        _TEACHERS[name] = TeacherEntry(name, timm_name, specs, shared_backbone, encoder, dict(timm_kwargs or {}), (fn.__doc__ or "").strip())
        return fn

    return wrap


def list_teachers() -> list[str]:
    return sorted(_TEACHERS)


def is_registered(name: str) -> bool:
    return name in _TEACHERS


def get_teacher_entry(name: str) -> TeacherEntry:
    if name not in _TEACHERS:
        raise EdgeIQAError(f"unknown teacher {name!r} (registered: {', '.join(list_teachers())}, or 'ensemble')"
                           f"{did_you_mean(name, _TEACHERS)}")
    return _TEACHERS[name]
