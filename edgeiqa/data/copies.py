"""Copies of a ranking base photo: each named copy gets its own synthetic ladders (teachers/rank_head.py).

A ladder teaches the head how one artefact changes one picture at the scale the model's views see it. A crop
(seen larger by a resize view) and a downscaled copy (seen coarser by a fragments view) are the same photo's
content at other scales, so they add ladders without new photos. Measured by benchmarks/generalise.py
(docs/benchmarks.md, leave-kinds-out).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from edgeiqa.errors import EdgeIQAError, did_you_mean

SIDE_SCALE = 5 / 8  # a crop's and a downscaled copy's side, relative to the photo's


def _photo(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return img


def _crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A SIDE_SCALE x SIDE_SCALE window at a seeded position, at native resolution."""
    h, w = img.shape[:2]
    ch, cw = max(1, round(h * SIDE_SCALE)), max(1, round(w * SIDE_SCALE))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return np.ascontiguousarray(img[y : y + ch, x : x + cw])


def _downscaled(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The whole photo at SIDE_SCALE of its sides (Lanczos)."""
    h, w = img.shape[:2]
    size = (max(1, round(w * SIDE_SCALE)), max(1, round(h * SIDE_SCALE)))
    return np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))


# name -> function(img, rng) -> uint8 RGB; "photo" is the base itself.
COPIES = {"photo": _photo, "crop": _crop, "downscaled": _downscaled}
DEFAULT_COPIES = ("photo", "crop", "downscaled")


def check_copies(names) -> tuple[str, ...]:
    """The names, checked: known, none twice, at least one."""
    names = tuple(names)
    if not names:
        raise EdgeIQAError(f"rank_copies must name at least one of {', '.join(COPIES)}")
    for name in names:
        if not isinstance(name, str) or name not in COPIES:
            raise EdgeIQAError(f"unknown ranking copy {name!r} (choose {', '.join(COPIES)}){did_you_mean(str(name), COPIES)}")
    if len(set(names)) != len(names):
        raise EdgeIQAError(f"rank_copies names a copy twice: {list(names)}")
    return names


def make_copy(img: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    return COPIES[check_copies([name])[0]](img, rng)
