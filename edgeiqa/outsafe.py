"""Output safety: every command that writes asks here first, so edgeiqa never deletes or overwrites what it did not write.

The rule (docs/security.md): an output is a new path, or a folder/file that edgeiqa itself wrote for the same kind
of artefact, or the command refuses with one line (exit 2) before any work. A folder edgeiqa writes carries a
marker file naming its kind; folders written before the marker existed are recognised by their manifest/card.
`--force` may replace an edgeiqa artefact or an unrelated *file* the user names, never a foreign folder.
An output that is one of the command's inputs, or lies inside a folder it scans, is refused.

Standard library only: the runtime (`edgeiqa score`) uses it too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from edgeiqa import __version__
from edgeiqa.errors import EdgeIQAError

MARKER = ".edgeiqa.json"
# Files that identify a folder of each kind written before the marker existed (kind -> any of these), checked in
# this order: a teachers folder also holds a card.json, so it is tried before a run folder.
KNOWN_FILES = {
    "teachers": ("ensemble.json",),
    "labelset": ("features.safetensors",),
    "sample": ("labels.csv",),
    "bench": ("bench.json",),
    "pretrain": ("pretrained.pt",),
    "run": ("card.json", "student.pt"),
    "export": (),
}


class OutputRefused(EdgeIQAError):
    """An output that would overwrite an input, a foreign file or folder, or cannot be written."""


def folder_kind(path: str | Path) -> str | None:
    """The kind of edgeiqa artefact folder `path` is ('run', 'teachers', ...), or None for a foreign one."""
    path = Path(path)
    marker = path / MARKER
    if marker.is_file():
        try:
            kind = json.loads(marker.read_text(encoding="utf-8")).get("kind")
        except (OSError, ValueError, AttributeError):
            return None
        return kind if isinstance(kind, str) else None
    for kind, names in KNOWN_FILES.items():
        if any((path / n).is_file() for n in names):
            return kind
    return None


def _resolved(p: str | Path) -> Path:
    return Path(os.path.abspath(Path(p).expanduser()))


def check_not_input(out: str | Path, *, inputs: Iterable[str | Path] = (), scanned: Iterable[str | Path] = (),
                    flag: str = "--out") -> None:
    """Refuse an output that is one of `inputs`, lies inside one of the `scanned` folders, or holds an input
    inside it (writing it would replace what is being read)."""
    out_r = _resolved(out)
    for given in inputs:
        if given is None:
            continue
        inp = _resolved(given)
        if out_r == inp or (out_r.exists() and inp.exists() and _same_file(out_r, inp)):
            raise OutputRefused(f"{flag} {out} is also an input of this command; choose another path")
        if out_r in inp.parents:
            raise OutputRefused(f"{flag} {out} holds an input of this command ({given}); choose another path")
    for folder in scanned:
        if folder is None:
            continue
        f = _resolved(folder)
        if f.is_dir() and f in out_r.parents:
            raise OutputRefused(f"{flag} {out} lies inside {folder}, which this command scans (a rerun would read its "
                                f"own output); write it elsewhere")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_writable(path: str | Path, *, flag: str = "--out") -> None:
    """Refuse a path whose nearest existing ancestor is not a folder we can create entries in (tried, then undone)."""
    p = _resolved(path)
    anc = p.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise OutputRefused(f"{flag} {path}: {anc} is a file, not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".edgeiqa-probe-", dir=anc)
    except OSError as exc:
        raise OutputRefused(f"{flag} {path}: cannot write in {anc} ({exc.strerror or exc})") from None
    os.rmdir(probe)


def check_out_dir(path: str | Path, kind: str, *, inputs: Iterable[str | Path] = (), flag: str = "--out") -> Path:
    """Validate a folder output before any work: new, empty, or an edgeiqa `kind` folder; else one-line refusal."""
    if kind not in KNOWN_FILES:
        raise ValueError(f"unknown artefact kind {kind!r}")
    p = Path(path)
    check_not_input(p, inputs=inputs, flag=flag)
    if p.exists() or p.is_symlink():
        if not p.is_dir():
            raise OutputRefused(f"{flag} {path} is a file; a folder is expected")
        found = folder_kind(p)
        if found is None and any(p.iterdir()):
            raise OutputRefused(f"{flag} {path} exists and edgeiqa did not write it (no {MARKER}); edgeiqa never "
                                f"replaces a folder it did not write: choose a new folder")
        if found is not None and found != kind:
            raise OutputRefused(f"{flag} {path} is an edgeiqa {found} folder, not a {kind} folder; choose another path")
        if not os.access(p, os.W_OK | os.X_OK):
            raise OutputRefused(f"{flag} {path}: folder is not writable")
    else:
        check_writable(p, flag=flag)
    return p


def mark_dir(path: str | Path, kind: str) -> Path:
    """Create `path` (and parents) and record that edgeiqa owns it as a `kind` folder. Idempotent."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        marker = p / MARKER
        if not marker.is_file():
            tmp = p / f".{MARKER}.tmp-{os.getpid()}"
            tmp.write_text(json.dumps({"kind": kind, "edgeiqa": __version__}) + "\n", encoding="utf-8")
            os.replace(tmp, marker)
    except OSError as exc:
        raise OutputRefused(f"cannot write {path}: {exc.strerror or exc}") from None
    return p


def check_out_file(path: str | Path, *, owned: Callable[[Path], bool] | None = None, force: bool = False,
                   inputs: Iterable[str | Path] = (), scanned: Iterable[str | Path] = (), flag: str = "--out") -> Path:
    """Validate a file output before any work: new, written by edgeiqa (`owned(path)`), or replaced with --force."""
    p = Path(path)
    check_not_input(p, inputs=inputs, scanned=scanned, flag=flag)
    if p.is_dir():
        raise OutputRefused(f"{flag} {path} is a folder; a file name is expected")
    if p.exists():
        if not force and not (owned is not None and _owned(owned, p)):
            raise OutputRefused(f"{flag} {path} exists and edgeiqa did not write it; pass --force to replace it, "
                                f"or choose another name")
        if not os.access(p, os.W_OK) or not os.access(p.parent, os.W_OK | os.X_OK):
            raise OutputRefused(f"{flag} {path}: not writable")
    else:
        check_writable(p, flag=flag)
    return p


def check_out_folder_artefact(path: str | Path, *, owned: Callable[[Path], bool] | None = None, force: bool = False,
                              inputs: Iterable[str | Path] = (), flag: str = "--out") -> Path:
    """`check_out_file` for an artefact that is a folder (a Core ML .mlpackage): new, a package edgeiqa wrote
    (`owned(path)`), or replaced whole with --force; never an edgeiqa folder of another kind (a run, a dataset)."""
    p = Path(path)
    check_not_input(p, inputs=inputs, flag=flag)
    if p.exists() or p.is_symlink():
        kind = folder_kind(p) if p.is_dir() else None
        if kind is not None:
            raise OutputRefused(f"{flag} {path} is an edgeiqa {kind} folder, not an exported model; choose another name")
        if not force and not (owned is not None and p.is_dir() and _owned(owned, p)):
            raise OutputRefused(f"{flag} {path} exists and edgeiqa did not write it; pass --force to replace it, "
                                f"or choose another name")
        if not os.access(p.parent, os.W_OK | os.X_OK):
            raise OutputRefused(f"{flag} {path}: not writable")
    else:
        check_writable(p, flag=flag)
    return p


def _owned(owned: Callable[[Path], bool], p: Path) -> bool:
    try:
        return bool(owned(p))
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def remove_own_dir(path: str | Path, kind: str) -> None:
    """Delete a folder only when edgeiqa wrote it as a `kind` folder (`--force` rebuilds); anything else is refused."""
    p = Path(path)
    if not p.exists():
        return
    if folder_kind(p) != kind:
        raise OutputRefused(f"refusing to delete {path}: it is not an edgeiqa {kind} folder")
    shutil.rmtree(p)
