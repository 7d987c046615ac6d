"""Teacher registry (timm style): `@register_teacher` in one file per family; the registered function
builds the teacher (`create_teacher(name)` calls it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgeiqa.data.views import ViewSpec
from edgeiqa.registry import Registry


@dataclass(frozen=True)
class TeacherEntry:
    name: str
    fn: Callable  # fn(pretrained=False, hidden=256) -> IQATeacher
    timm_name: str
    views: tuple[ViewSpec, ...]
    shared_backbone: bool = True  # False = one backbone per view (UIQA); True = one backbone for all views
    encoder: str = "pooled"  # "pooled" (timm head-less pooled vector) or "multilevel" (mean+std of feature levels)
    timm_kwargs: dict = field(default_factory=dict)
    description: str = ""


TEACHERS: Registry[TeacherEntry] = Registry("teacher", TeacherEntry, known_extra=", or 'ensemble'")


def register_teacher(name: str, *, timm_name: str, views, shared_backbone: bool = True, encoder: str = "pooled", timm_kwargs=None):
    specs = tuple(ViewSpec(k, tuple(size)) for k, size in views)
    return TEACHERS.register(name, timm_name=timm_name, views=specs, shared_backbone=shared_backbone, encoder=encoder,
                             timm_kwargs=dict(timm_kwargs or {}))


def create_teacher(name: str, pretrained: bool = False, hidden: int = 256):
    """A registered teacher (IQATeacher). `pretrained=True` asks timm's hub (network); shipped weights load offline."""
    return TEACHERS.create(name, pretrained=pretrained, hidden=hidden)


def list_teachers() -> list[str]:
    return sorted(TEACHERS)


def is_registered(name: str) -> bool:
    return name in TEACHERS


def get_teacher_entry(name: str) -> TeacherEntry:
    return TEACHERS.get(name)
