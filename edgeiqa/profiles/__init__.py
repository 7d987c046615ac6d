"""Profiles: one TOML file fixes the data, views, input size, budget and training recipe of a run.

Built-in profiles live beside this file (`sample`, `uhd-iqa`, `piq23`, `fiqa`); `--profile FILE.toml`
loads a user's own. Keys are checked against SCHEMA: an unknown key is an error that names the closest
valid key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError, did_you_mean

HERE = Path(__file__).parent

# section -> {key: expected python type(s)}; top-level keys under "".
SCHEMA: dict[str, dict[str, tuple]] = {
    "": {"name": (str,), "description": (str,), "data": (str,), "budget_gmacs": (int, float), "seed": (int,),
         "student": (dict,), "teacher": (dict,), "distill": (dict,)},
    "student": {"name": (str,), "views": (list,), "input": (list,), "hidden": (int,), "freeze_blocks": (int,)},
    "teacher": {"ensemble": (list,), "epochs": (int,), "head_epochs": (int,), "batch_size": (int,), "lr": (int, float), "losses": (dict,)},
    "distill": {"epochs": (int,), "batch_size": (int,), "lr": (int, float), "losses": (dict,), "pseudo_weight": (int, float)},
}
REQUIRED = {"": ("name", "student", "teacher", "distill"), "student": ("views",)}


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def _check_keys(section: str, table: dict, where: str) -> None:
    allowed = SCHEMA[section]
    for key, value in table.items():
        if key not in allowed:
            hint = did_you_mean(key, allowed, cutoff=0.5) or f" (valid: {', '.join(allowed)})"
            label = f"[{section}] " if section else ""
            raise EdgeIQAError(f"{where}: unknown key {label}{key!r}{hint}")
        if not isinstance(value, allowed[key]) or isinstance(value, bool):
            raise EdgeIQAError(f"{where}: key {key!r} must be {' or '.join(t.__name__ for t in allowed[key])}, got {value!r}")
    for key in REQUIRED.get(section, ()):
        if key not in table:
            raise EdgeIQAError(f"{where}: missing required key {key!r}" + (f" in [{section}]" if section else ""))


def parse_view_list(entries: list, default_size: list | None, where: str) -> list[ViewSpec]:
    views = []
    for entry in entries:
        if isinstance(entry, str):
            if not default_size:
                raise EdgeIQAError(f"{where}: view {entry!r} needs a size: give [student].input or {{kind=..., size=[H, W]}}")
            views.append(ViewSpec(entry, tuple(default_size)))
        elif isinstance(entry, dict):
            extra = set(entry) - {"kind", "size", "grid"}
            if extra or "kind" not in entry or "size" not in entry:
                raise EdgeIQAError(f"{where}: a view table takes kind, size and optional grid; got {sorted(entry)}")
            views.append(ViewSpec(entry["kind"], tuple(entry["size"]), int(entry.get("grid", 7))))
        else:
            raise EdgeIQAError(f"{where}: bad view entry {entry!r}")
    return views


class Profile(dict):
    """The parsed TOML plus `student_views` (ViewSpecs) and `source` (file path)."""

    @property
    def student_views(self) -> list[ViewSpec]:
        st = self["student"]
        return parse_view_list(st["views"], st.get("input"), self.source)

    @property
    def source(self) -> str:
        return self.get("_source", "?")


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name, or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = HERE / f"{name_or_path}.toml"
        if not path.exists():
            raise EdgeIQAError(f"unknown profile {name_or_path!r} (built-in: {', '.join(builtin_profiles())}, or a .toml file)"
                               f"{did_you_mean(name_or_path, builtin_profiles())}")
    elif not path.exists():
        raise EdgeIQAError(f"profile file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EdgeIQAError(f"{path}: invalid TOML: {exc}") from None
    _check_keys("", data, str(path))
    for section in ("student", "teacher", "distill"):
        _check_keys(section, data[section], str(path))
    profile = Profile(data)
    profile["_source"] = str(path)
    profile.student_views  # validate views now, not mid-run
    return profile
