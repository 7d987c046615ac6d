"""Expand the paths a user gives into a stream of entries: every entry under a folder gets a row.

A regular file is yielded as a path to score, whatever its name: any format Pillow opens is scored (GIF
and multi-page TIFF: the first frame, what a viewer shows), anything else gets its reason from the
loader ("not an image", "truncated", ...). Entries that are not files are yielded as `Listed` rows:
a dangling symlink, a symlink loop, a folder named like an image (its contents are walked too), a
symlinked folder already being walked (not followed twice), a FIFO/socket/device, an unreadable folder.

Order: entries come out sorted by path (plain string order, the order of the output), lazily: a folder's
entries are sorted with a sub-folder's contents placed where "name/" sorts (so `a-x` comes before `a/b`, as
in a sort of the full paths) and the walk recurses in that order; several PATHs are merged in path order
and a path met twice (overlapping PATHs) is dropped when it comes again. Only one folder's listing per
level is held, never the list of all files. An explicitly named path that does not exist gets a
"file not found" row (`edgeiqa score` refuses such a PATH up front; this row is for one that vanished since). (An unreadable folder's row comes where its contents would, so it may follow a
sibling such as `name-x`; the output checks its order at the end and sorts again if needed, so such a
slip costs speed, never correctness.)
"""

from __future__ import annotations

import bisect
import errno
import heapq
import os
import stat
from pathlib import Path
from typing import Iterable, Iterator

from edgeiqa.data.images import IMAGE_EXTENSIONS
from edgeiqa.runtime.items import Listed


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


def _listing(folder: str) -> list[tuple[str, str, bool]]:
    """(sort key, name, walk?) for each entry: every entry at its name, a folder's contents at "name/"."""
    items = []
    with os.scandir(folder) as it:
        for e in it:
            items.append((e.name, e.name, False))
            try:
                if e.is_dir():  # follows symlinks; False for a dangling one
                    items.append((e.name + "/", e.name, True))
            except OSError:
                pass
    items.sort()
    return items


def _walk_dir(folder: str, ancestors: frozenset) -> Iterator[str | Listed]:
    try:
        items = _listing(folder)
    except OSError as exc:
        yield Listed(folder, f"cannot read folder: {exc.strerror}")
        return
    to_walk: dict[str, tuple] = {}  # folders met at their name, walked at "name/"
    for key, name, walk in items:
        path = os.path.join(folder, name)
        if walk:
            if name in to_walk:
                yield from _walk_dir(path, ancestors | {to_walk.pop(name)})
            continue
        rows, sub = _classify(path, ancestors)
        yield from rows
        if sub is not None:
            if _has_walk_item(items, name):
                to_walk[name] = sub
            else:  # became a folder since the listing (a race): walk it now
                yield from _walk_dir(path, ancestors | {sub})


def _has_walk_item(items: list, name: str) -> bool:
    i = bisect.bisect_left(items, (name + "/", name, True))
    return i < len(items) and items[i] == (name + "/", name, True)


def _classify(path: str, ancestors: frozenset) -> tuple[list, tuple | None]:
    """The rows of one entry itself, and (st_dev, st_ino) when it is a folder to walk."""
    if os.path.islink(path):
        broken = _broken_link(path)
        if broken is not None:
            return [broken], None
    try:
        st = os.stat(path)
    except OSError as exc:
        return [Listed(path, f"cannot read: {exc.strerror}")], None
    if stat.S_ISDIR(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            return [Listed(path, "symlink to a folder that contains it (a loop); not followed")], None
        if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
            return [Listed(path, "is a folder, not an image (its contents are listed separately)")], key
        return [], key
    if stat.S_ISREG(st.st_mode):
        return [path], None
    return [Listed(path, "not a regular file (FIFO, socket or device)")], None


def _root(p: str) -> Iterator[str | Listed]:
    if not os.path.lexists(p):
        yield Listed(p, "file not found")
        return
    rows, sub = _classify(p, frozenset())
    yield from rows
    if sub is not None:
        yield from _walk_dir(p, frozenset({sub}))


def _key(entry) -> str:
    return entry.path if isinstance(entry, Listed) else entry


def walk_inputs(paths: Iterable[str | os.PathLike]) -> Iterator[str | Listed]:
    """Files to score and Listed rows for everything else, in path order, each path once."""
    roots = [_root(str(Path(os.fspath(raw)))) for raw in paths]
    last = None
    for e in heapq.merge(*roots, key=_key):
        k = _key(e)
        if k == last:
            continue
        last = k
        yield e
