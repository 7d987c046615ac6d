"""Atomic writes: the one temp-then-rename helper every stage uses, so a crash never leaves half a file.

Light on purpose (standard library only): the runtime imports it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path, kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write (a file or a folder); rename it onto `path` on success.

    The temporary name carries the pid so two processes never share it; on an exception it is removed and
    `path` keeps its old content. A folder written here is marked as an edgeiqa `kind` folder, and replaces an
    existing folder only when that one is empty or an edgeiqa folder of the same kind (never a user's folder).
    """
    from edgeiqa.outsafe import OutputRefused, folder_kind, mark_dir

    path = Path(path)
    if path.is_dir() and not path.is_symlink() and any(path.iterdir()) and (kind is None or folder_kind(path) != kind):
        raise OutputRefused(f"refusing to replace {path}: it is not an edgeiqa {kind or 'output'} folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(path, "tmp")
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and kind is not None:
            mark_dir(tmp, kind)
        if tmp.is_dir() and path.is_dir():
            old = sibling(path, "old")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def sibling(path: str | Path, tag: str, pid: int | str | None = None) -> Path:
    """The hidden sibling `atomic_path` uses beside `path`: `.<name>.<tag>-<pid>`, tag `tmp` for what is being written
    and `old` for a folder being replaced; pid defaults to this process's (`"*"` makes a glob pattern of it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{os.getpid() if pid is None else pid}")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | Path, obj, **dumps_kwargs) -> Path:
    dumps_kwargs.setdefault("indent", 2)
    dumps_kwargs.setdefault("default", str)
    return write_text_atomic(path, json.dumps(obj, **dumps_kwargs) + "\n")
