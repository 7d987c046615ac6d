"""One registry for everything chosen by name: students, teachers, losses, degradations, dataset loaders, export
formats and their export functions (timm's style).

    STUDENTS = Registry("student", StudentEntry)

    @STUDENTS.register("mobilenetv3_large", timm_name="mobilenetv3_large_100", capability=30)
    def mobilenetv3_large(views, **kwargs):          # the registered function builds the thing
        return build_student("mobilenetv3_large", views, **kwargs)

    STUDENTS.create("mobilenetv3_large", views)       # == mobilenetv3_large(views)

An entry is a frozen dataclass with at least `name`, `fn` (the registered function) and `description`
(the function's docstring unless given); the keywords of `register` fill its other fields. A table whose rows
are written out whole (dataset loaders, the export formats) puts each ready-made row in with `add`. Unknown names
are a user error (exit 2) with the closest registered name; registering a name twice is a programming
error (ValueError).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

from edgeiqa.errors import EdgeIQAError, did_you_mean


@dataclass(frozen=True)
class Entry:
    """The default entry: a name, the function that builds the thing, and a one-line description."""

    name: str
    fn: Callable
    description: str = ""


E = TypeVar("E")


class Registry(Mapping, Generic[E]):
    """name -> entry, in registration order. `kind` names the things in messages ("student", "loss")."""

    def __init__(self, kind: str, entry_type: type = Entry, known_extra: str = ""):
        self.kind = kind
        self.entry_type = entry_type
        self.known_extra = known_extra  # e.g. ", or 'ensemble'": other names the caller also accepts
        # The table itself; a plain dict so a test can swap one entry with monkeypatch.setitem.
        self.entries: dict[str, E] = {}

    def register(self, name: str, **fields: Any) -> Callable[[Callable], Callable]:
        """Decorator: add the function under `name`; `fields` fill the entry (description = docstring)."""

        def wrap(fn: Callable) -> Callable:
            fields.setdefault("description", (fn.__doc__ or "").strip())
            self.add(self.entry_type(name=name, fn=fn, **fields))
            return fn

        return wrap

    def add(self, entry: E) -> E:
        """Put a ready-made entry (anything with a `name`: a table row) under its name; returns it."""
        name = entry.name  # type: ignore[attr-defined]
        if name in self.entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self.entries[name] = entry
        return entry

    def get(self, name: str) -> E:  # type: ignore[override]  (raises instead of returning a default)
        """The entry of `name`; unknown -> EdgeIQAError naming the registered ones and the closest."""
        try:
            return self.entries[name]
        except (KeyError, TypeError):
            raise EdgeIQAError(
                f"unknown {self.kind} {name!r} (known: {', '.join(self.entries)}{self.known_extra})"
                f"{did_you_mean(str(name), self.entries)}"
            ) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the registered function of `name`: it builds (or, for a loss or degradation, computes) the thing."""
        return self.get(name).fn(*args, **kwargs)

    def list(self) -> list[str]:
        return list(self.entries)

    # Mapping: `name in REG`, `list(REG)`, `REG[name]` (KeyError when unknown), `len(REG)`.
    def __getitem__(self, name: str) -> E:
        return self.entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.entries)})"
