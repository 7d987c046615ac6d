"""Profiles: one TOML file fixes the data, views, input size, budget and training recipe of a run.

Built-in profiles live beside this file (`sample`, `uhd-iqa`, `piq23`, `fiqa`); `--profile FILE.toml`
loads a user's own. Keys are checked against SCHEMA: an unknown key is an error that names the closest
valid key, so a typo never silently falls back to a default. Values are checked too (RANGES, views, loss
names and weights, a non-empty ensemble), and command-line overrides (`--budget`, `--epochs`, `--losses`) go
through the same checks (`load_profile(..., overrides=)`): every bad setting fails here, in a second,
before a run writes anything or trains anything.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from edgeiqa.bounds import MAX_BATCH
from edgeiqa.data.copies import check_copies
from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError, did_you_mean

HERE = Path(__file__).parent

# section -> {key: expected python type(s)}; top-level keys under "".
SCHEMA: dict[str, dict[str, tuple]] = {
    "": {"name": (str,), "description": (str,), "data": (str,), "budget_gmacs": (int, float), "seed": (int,),
         "student": (dict,), "teacher": (dict,), "distill": (dict,)},
    "student": {"name": (str,), "views": (list,), "input": (list,), "hidden": (int,), "freeze_blocks": (int,)},
    "teacher": {"ensemble": (list,), "epochs": (int,), "head_epochs": (int,), "batch_size": (int,), "lr": (int, float), "losses": (dict,),
                "self_train": (bool,), "rank_epochs": (int,), "rank_photos": (int,), "rank_levels": (list,), "rank_copies": (list,),
                "feature_aug": (int,)},
    "distill": {"epochs": (int,), "batch_size": (int,), "lr": (int, float), "losses": (dict,), "pseudo_weight": (int, float),
                "rank_epochs": (int,), "ladder_epochs": (int,)},
}
REQUIRED = {"": ("name", "student", "teacher", "distill"), "student": ("views",)}
# (section, key) -> (lowest allowed, whether the lowest is allowed itself)
RANGES: dict[tuple[str, str], tuple[float, bool]] = {
    ("", "budget_gmacs"): (0, False), ("", "seed"): (0, True),
    ("student", "hidden"): (1, True), ("student", "freeze_blocks"): (0, True),
    ("teacher", "epochs"): (1, True), ("teacher", "head_epochs"): (1, True), ("teacher", "batch_size"): (1, True),
    ("teacher", "lr"): (0, False), ("teacher", "rank_epochs"): (0, True), ("teacher", "rank_photos"): (2, True),
    ("teacher", "feature_aug"): (0, True),
    ("distill", "epochs"): (1, True), ("distill", "batch_size"): (1, True), ("distill", "lr"): (0, False),
    ("distill", "pseudo_weight"): (0, True), ("distill", "rank_epochs"): (0, True), ("distill", "ladder_epochs"): (0, True),
}


# (section, key) -> highest allowed: larger batches never fit a device's memory at our input sizes; each feature variant
# is one more backbone pass over every training image
HIGHEST: dict[tuple[str, str], int] = {("teacher", "batch_size"): MAX_BATCH, ("distill", "batch_size"): MAX_BATCH,
                                       ("teacher", "feature_aug"): 8}


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def _check_keys(section: str, table: dict, where: str) -> None:
    allowed = SCHEMA[section]
    for key, value in table.items():
        if key not in allowed:
            hint = did_you_mean(key, allowed, cutoff=0.5) or f" (valid: {', '.join(allowed)})"
            label = f"[{section}] " if section else ""
            raise EdgeIQAError(f"{where}: unknown key {label}{key!r}{hint}")
        if not isinstance(value, allowed[key]) or (isinstance(value, bool) and bool not in allowed[key]):
            raise EdgeIQAError(f"{where}: key {key!r} must be {' or '.join(t.__name__ for t in allowed[key])}, got {value!r}")
    for key in REQUIRED.get(section, ()):
        if key not in table:
            raise EdgeIQAError(f"{where}: missing required key {key!r}" + (f" in [{section}]" if section else ""))


def _check_values(data: dict, where: str) -> None:
    """Ranges, loss names and weights, the ensemble's members: what would otherwise fail mid-run (or not at all)."""
    import math

    for (section, key), (low, inclusive) in RANGES.items():
        table = data if not section else data[section]
        if key not in table:
            continue
        v = table[key]
        label = f"[{section}] {key}" if section else key
        if not math.isfinite(v) or v < low or (v == low and not inclusive):
            raise EdgeIQAError(f"{where}: {label} must be {'>=' if inclusive else '>'} {low}, got {v!r}")
        if v > HIGHEST.get((section, key), math.inf):
            raise EdgeIQAError(f"{where}: {label} must be <= {HIGHEST[(section, key)]}, got {v!r}")
    if "input" in data["student"]:
        size = data["student"]["input"]
        if len(size) != 2:
            raise EdgeIQAError(f"{where}: [student] input must be [height, width], got {size}")
    levels = data["teacher"].get("rank_levels")
    if levels is not None and (not levels or not all(type(v) is int and 1 <= v <= 6 for v in levels)):
        raise EdgeIQAError(f"{where}: [teacher] rank_levels must be ladder severities 1..6, got {levels!r}")
    copies = data["teacher"].get("rank_copies")
    if copies is not None:
        try:
            check_copies(copies)
        except EdgeIQAError as exc:
            raise EdgeIQAError(f"{where}: [teacher] {exc}") from None
    d = data["distill"]
    if d.get("ladder_epochs", 0) > 0 and d.get("rank_epochs", 0) == 0:
        raise EdgeIQAError(f"{where}: [distill] ladder_epochs needs [distill] rank_epochs > 0 (it trains on the ranking "
                           f"step's ladders), got ladder_epochs = {d['ladder_epochs']} with rank_epochs = {d.get('rank_epochs', 0)}")
    members = data["teacher"].get("ensemble")
    # Names are checked against the registry by teachers.pipeline.resolve_members, first thing in every command.
    if members is not None and (not members or not all(isinstance(m, str) and m for m in members)):
        raise EdgeIQAError(f"{where}: [teacher] ensemble must name at least one teacher, got {members!r}")


def _check_losses(data: dict, where: str) -> None:
    """Loss names and weights. Last of the checks: the loss table lives beside the losses (it imports torch)."""
    for section in ("teacher", "distill"):
        for name, w in (data[section].get("losses") or {}).items():
            if isinstance(w, bool) or not isinstance(w, (int, float)):
                raise EdgeIQAError(f"{where}: [{section}] losses: weight of {name!r} must be a number, got {w!r}")
    from edgeiqa.losses import check_loss_weights  # names and weights, with "did you mean"

    for section in ("teacher", "distill"):
        losses = data[section].get("losses")
        if losses is not None:
            try:
                check_loss_weights(losses)
            except (EdgeIQAError, TypeError, ValueError) as exc:
                raise EdgeIQAError(f"{where}: [{section}] losses: {exc}") from None


def _apply_overrides(data: dict, overrides: dict | None) -> None:
    """'section.key' (or 'key') -> value; None values are skipped (the option was not given)."""
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.rpartition(".")
        (data.setdefault(section, {}) if section else data)[key] = value


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
            size = entry["size"]
            views.append(ViewSpec(entry["kind"], tuple(size) if isinstance(size, list) else size, entry.get("grid", 7)))
        else:
            raise EdgeIQAError(f"{where}: bad view entry {entry!r}")
    if not views:
        raise EdgeIQAError(f"{where}: [student] views is empty: name at least one view")
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


def load_profile(name_or_path: str, overrides: dict | None = None) -> Profile:
    """A built-in profile by name, or a TOML file by path, with command-line `overrides` ('distill.epochs': 3),
    every key and value checked."""
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
    _apply_overrides(data, overrides)
    where = str(path) + (" (with command-line options)" if any(v is not None for v in (overrides or {}).values()) else "")
    for section in ("", "student", "teacher", "distill"):  # again: overrides are checked like the file
        _check_keys(section, data[section] if section else data, where)
    _check_values(data, where)
    profile = Profile(data)
    profile["_source"] = str(path)
    try:
        profile.student_views  # validate views now, not mid-run
    except EdgeIQAError as exc:
        raise EdgeIQAError(f"{where}: {exc}" if not str(exc).startswith(str(path)) else str(exc)) from None
    _check_losses(data, where)
    return profile
