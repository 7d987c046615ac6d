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
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write (a file or a folder); rename it onto `path` on success.

    The temporary name carries the pid so two processes never share it; on an exception it is removed and
    `path` keeps its old content. A folder target replaces an existing folder of the same name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


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
