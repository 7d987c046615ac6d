"""Expand the paths a user gives into a stream of entries: every entry under a folder gets a row.

A regular file is yielded as a path to score, whatever its name: any format Pillow opens is scored (GIF
and multi-page TIFF: the first frame, what a viewer shows), anything else gets its reason from the
loader ("not an image", "truncated", ...). Entries that are not files are yielded as `Listed` rows:
a dangling symlink, a symlink loop, a folder named like an image (its contents are walked too), a
symlinked folder already being walked (not followed twice), a FIFO/socket/device, an unreadable folder.

Folders are walked depth-first with each folder's entries sorted by name, lazily (a million files are
never held as a list); an explicitly named path that does not exist gets a "file not found" row.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Iterable, Iterator

from edgeiqa.data.images import IMAGE_EXTENSIONS
from edgeiqa.runtime.pipeline import Listed


def _broken_link(path: str) -> Listed | None:
    """A Listed row for a symlink whose target cannot be reached, else None."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Listed(path, "symlink loop (the link points back to itself)")
        if exc.errno == errno.ENOENT:
            return Listed(path, f"dangling symlink (target {os.readlink(path)!r} does not exist)")
        return Listed(path, f"cannot read: {exc.strerror}")
    return None


def _walk_dir(folder: str, ancestors: frozenset) -> Iterator[str | Listed]:
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it)
    except OSError as exc:
        yield Listed(folder, f"cannot read folder: {exc.strerror}")
        return
    for name in names:
        path = os.path.join(folder, name)
        yield from _entry(path, ancestors)


def _entry(path: str, ancestors: frozenset) -> Iterator[str | Listed]:
    if os.path.islink(path):
        broken = _broken_link(path)
        if broken is not None:
            yield broken
            return
    try:
        st = os.stat(path)
    except OSError as exc:
        yield Listed(path, f"cannot read: {exc.strerror}")
        return
    if stat.S_ISDIR(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            yield Listed(path, "symlink to a folder that contains it (a loop); not followed")
            return
        if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
            yield Listed(path, "is a folder, not an image (its contents are listed separately)")
        yield from _walk_dir(path, ancestors | {key})
    elif stat.S_ISREG(st.st_mode):
        yield path
    else:
        yield Listed(path, "not a regular file (FIFO, socket or device)")


def walk_inputs(paths: Iterable[str | os.PathLike]) -> Iterator[str | Listed]:
    """Files to score and Listed rows for everything else, each path once (the first time it is met)."""
    seen: set[str] = set()
    for raw in paths:
        p = os.fspath(raw)
        if not os.path.lexists(p):
            entries: Iterable = [Listed(str(Path(p)), "file not found")]
        else:
            entries = _entry(str(Path(p)), frozenset())
        for e in entries:
            key = e.path if isinstance(e, Listed) else e
            if key in seen:
                continue
            seen.add(key)
            yield e
