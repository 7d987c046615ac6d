"""What scoring takes in and gives back, shared by the `Scorer` and the streaming pipeline it drives.

An item is a path, an in-memory image (a PIL image or a numpy array) or a `Listed` entry (a row without a score);
each gets one `ScoreResult`. Standard library and numpy only: `edgeiqa.runtime.inputs` (the folder walk) and
`edgeiqa.runtime.pipeline` import it without the scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Listed:
    """An input entry that gets a row without being scored (a folder, a dangling symlink, ...)."""

    path: str
    reason: str


@dataclass
class ScoreResult:
    path: str | None  # None for an array input
    score: float | None
    error: str | None = None
    info: dict = field(default_factory=dict)  # e.g. face_found, raw_score, index

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {"path": self.path, "score": self.score, "status": "ok" if self.ok else "error",
                "error": self.error, **self.info}


def is_pil(obj) -> bool:
    """A PIL image, told without importing Pillow."""
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "getbands")


def is_in_memory(item) -> bool:
    """An image given in memory (a numpy array or a PIL image) rather than a path."""
    return isinstance(item, np.ndarray) or is_pil(item)


def result_for(index: int, item) -> ScoreResult:
    """The (not yet scored) result of input number `index`: a Listed entry's row, an in-memory image's index."""
    if isinstance(item, Listed):
        return ScoreResult(item.path, None, error=item.reason)
    if is_in_memory(item):
        return ScoreResult(None, None, info={"index": index})
    return ScoreResult(str(item), None)
