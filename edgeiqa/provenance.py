"""Where an artefact came from: file hashes and package versions, shared by every stage that writes one."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from pathlib import Path

DEFAULT_PACKAGES = ("edgeiqa", "torch", "onnx", "onnxruntime", "onnxscript", "timm", "numpy", "pillow")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file; of a folder artefact (a Core ML .mlpackage), `sha256_tree`."""
    if Path(path).is_dir():
        return sha256_tree(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_tree(folder: str | Path) -> str:
    """sha256 over the lines '<relative POSIX path> <sha256 of the file>' of every file in `folder`, sorted by path:
    the same for a copy of the folder anywhere, and changed by any renamed, added, removed or edited file."""
    root = Path(folder)
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for rel, p in files:
        h.update(f"{rel} {sha256_file(p)}\n".encode())
    return h.hexdigest()


def package_versions(extra: tuple[str, ...] = ()) -> dict:
    """Versions of the packages that shape a model or a label, read without importing them."""
    out = {"python": platform.python_version()}
    for dist in (*DEFAULT_PACKAGES, *extra):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_commit(root: str | Path) -> str:
    """The short commit of the checkout at `root`, marked when tracked files differ from it ("unknown" without git):
    every results file records the tree that measured it."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def measured(root: str | Path, machine: str) -> dict:
    """The header of a results file: the tree's commit, today's date and the machine's state as the caller says it."""
    from datetime import date

    return {"commit": git_commit(root), "date": date.today().isoformat(), "machine": machine}
