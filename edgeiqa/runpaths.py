"""Paths stored inside a run folder (card.json, LabelSet manifest) are relative to that folder.

So a run folder can be moved, copied to a device or used from any working directory. A path outside the
folder (e.g. `distill --teachers SHARED`) is stored absolute. Reading, a relative path is resolved against
the folder first; cards written before this rule held paths relative to the working directory, and those
still resolve when they exist from there.
"""

from __future__ import annotations

import os
from pathlib import Path


def to_run_path(path: str | Path, run: str | Path) -> str:
    """`path` as stored in a file of folder `run`: relative when inside `run`, else absolute."""
    path, run = Path(path).resolve(), Path(run).resolve()
    if path == run or run in path.parents:
        return Path(os.path.relpath(path, run)).as_posix()
    return str(path)


def resolve_run_path(raw: str | Path, run: str | Path) -> Path:
    """A stored path read back: absolute as is; relative against `run`, else (older cards) the working directory."""
    p = Path(raw).expanduser()
    if p.is_absolute():
        return p
    inside = Path(run) / p
    if inside.exists() or not p.exists():
        return inside
    return p
