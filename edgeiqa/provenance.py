"""Where an artefact came from: file hashes and package versions, shared by every stage that writes one."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from pathlib import Path

DEFAULT_PACKAGES = ("edgeiqa", "torch", "onnx", "onnxruntime", "onnxscript", "timm", "numpy", "pillow")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
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
