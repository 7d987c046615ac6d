"""Loading model files without running them: every `.pt` edgeiqa reads goes through `load_weights`.

`torch.load(weights_only=False)` unpickles arbitrary objects, so a crafted `student.pt` could run any code when
loaded (docs/security.md). edgeiqa's checkpoints hold only tensors and plain data (dicts, lists, str, numbers),
which torch's weights-only unpickler reads; a file that needs anything more is refused with one line naming it.
"""

from __future__ import annotations

from pathlib import Path

from edgeiqa.errors import EdgeIQAError


class UntrustedFile(EdgeIQAError):
    """A model file that holds Python objects beyond tensors and plain data."""


def load_weights(path: str | Path, *, map_location="cpu", what: str = "model file"):
    """The contents of a torch file of tensors and plain data; a pickle that needs other objects is refused."""
    import pickle

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line or "GLOBAL" in line]
        if not refused:  # a damaged or foreign file, not a crafted one: the caller names it as such
            raise
        detail = refused[0]  # torch names the global it refused ("Unsupported global: GLOBAL os.system ...")
        raise UntrustedFile(f"refused {what} {path}: it holds Python objects beyond tensors and plain data, which "
                            f"edgeiqa never unpickles (loading them could run code): {detail[:200]}") from None
