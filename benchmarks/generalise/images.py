"""The benchmark's images: every photo (the sample set's and EXTRA_POOL) degraded by every library kind, in memory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from edgeiqa.data import degradations  # noqa: F401  (registers the library's kinds)
from edgeiqa.data import distortions
from edgeiqa.data.copies import DEFAULT_COPIES, make_copy
from edgeiqa.data.degradations.groups import GROUPS, kinds_in_group
from edgeiqa.data.sample import PHOTOS, SEED, Photo, photo_source, prepare_photo, score_for
from edgeiqa.data.torchdata import ImageCache
from edgeiqa.teachers.rank_head import is_greyscale

EXTRA_POOL = (
    Photo("gravel", "skimage", "data/gravel.png", "pool", False, "gravel texture, greyscale"),
    Photo("coins", "skimage", "data/coins.png", "pool", False, "coins, greyscale"),
    Photo("moon", "skimage", "data/moon.png", "pool", False, "moon surface, greyscale"),
    Photo("ihc", "skimage", "data/ihc.png", "pool", False, "stained tissue, microscope"),
    Photo("motorcycle_right", "skimage", "data/motorcycle_right.png", "pool", False, "stereo pair's other view"),
    Photo("retina", "skimage", "data/retina.jpg", "pool", False, "fundus photograph"),
    Photo("cell", "skimage", "data/cell.png", "pool", False, "cell, microscope, greyscale"),
    Photo("page", "skimage", "data/page.png", "pool", False, "scanned text page, greyscale"),
)
RANK_COPIES = tuple(c for c in DEFAULT_COPIES if c != "photo")  # built beside each colour pool photo's own ladders


@dataclass(frozen=True)
class Img:
    key: str
    photo: str
    split: str  # the photo's split
    kind: str  # "original" for the undistorted photo
    severity: int
    score: float


def image_seed(photo: str, kind: str, severity: int) -> int:
    """One seed per degraded image (the sample set, since sample-v2, uses one per scene; this benchmark keeps the
    per-image seeds its published numbers and cached features were made with)."""
    digest = hashlib.sha256(f"{SEED}/{photo}/{kind}/{severity}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def library_kinds(per_group: int | None) -> list[str]:
    return [k for g in GROUPS for k in kinds_in_group(g)[:per_group]]


def build_images(kinds: list[str], levels, progress: bool) -> tuple[list[Img], ImageCache]:
    """Every photo's original and its degraded ladder, in memory (keys look like paths; nothing is written); and for
    each colour pool photo its other ranking copies (RANK_COPIES: photo `name@copy`, split "rank", used only as
    ranking bases)."""
    from tqdm import tqdm

    cache = ImageCache()
    imgs: list[Img] = []

    def add_ladder(name, split, base, bar):
        key = f"gen/{name}/original"
        cache.images[key] = base
        imgs.append(Img(key, name, split, "original", 0, score_for(0)))
        bar.update(1)
        for kind in kinds:
            for sev in levels:
                key = f"gen/{name}/{kind}_{sev}"
                rng = np.random.default_rng(image_seed(name, kind, sev))
                cache.images[key] = distortions.apply(base, kind, sev, rng)
                imgs.append(Img(key, name, split, kind, sev, score_for(sev)))
                bar.update(1)

    photos = list(PHOTOS) + list(EXTRA_POOL)
    with tqdm(total=len(photos) * (1 + len(kinds) * len(levels)), desc="degrading", unit="img", disable=not progress) as bar:
        for p in photos:
            base = prepare_photo(photo_source(p))
            add_ladder(p.name, p.split, base, bar)
            if p.split == "pool" and not is_greyscale(base):  # the product's copies of a colour ranking base
                for copy_name in RANK_COPIES:
                    bar.total += 1 + len(kinds) * len(levels)
                    rng = np.random.default_rng(image_seed(p.name, f"copy/{copy_name}", 0))
                    add_ladder(f"{p.name}@{copy_name}", "rank", make_copy(base, copy_name, rng), bar)
    return imgs, cache
