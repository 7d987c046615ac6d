"""`labels=N`: the few-labels situation most users are in, made from a fully labelled dataset.

N train images keep their labels; every other train image becomes part of the unlabelled pool (split `pool`, its
score dropped, so nothing downstream can read it). The choice is seeded and deterministic: train keys (scenes when
the dataset has them, so a scene is never half labelled; otherwise images) ranked by SHA-1 of a salt, the seed and
the key, taken until N images are kept. Val and test are untouched; val is carved afterwards from the kept images.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace

from edgeiqa.data.loading import whole_option
from edgeiqa.data.records import ImageRecord, split_key
from edgeiqa.errors import DatasetError

MIN_LABELS = 2  # one to train on, one to carve val from
LABEL_OPTIONS = {
    "labels": "keep the labels of this many train images and make the other train images the unlabelled pool, "
              "their scores dropped (default: every label kept)",
    "labels_seed": "seed of that choice, a whole number (default 0)",
}


def keep_labels(records: list[ImageRecord], n: int, seed: int = 0) -> tuple[list[ImageRecord], dict]:
    """(records where only ~n train images keep their labels, facts for the card)."""
    train = [r for r in records if r.split == "train" and r.score is not None]
    if n >= len(train):
        raise DatasetError(f"option labels={n} keeps every label: the dataset has {len(train)} labelled train images "
                           f"(ask for fewer, or leave the option out)")
    per_key = Counter(split_key(r) for r in train)
    # a salt of its own: the labelled images and the carved val are independent choices
    ranked = sorted(per_key, key=lambda k: hashlib.sha1(f"labels:{seed}:{k}".encode("utf-8", "surrogateescape")).hexdigest())
    kept, count = set(), 0
    for k in ranked:
        if count >= n:
            break
        kept.add(k)
        count += per_key[k]
    out = [replace(r, split="pool", score=None) if r.split == "train" and r.score is not None and split_key(r) not in kept
           else r for r in records]
    return out, {"labels_from": f"{count} of {len(train)} labelled train images keep their labels (seed {seed}, SHA-1 "
                                f"order); the other {len(train) - count} are the unlabelled pool, scores dropped"}


def with_kept_labels(spec, records: list[ImageRecord]) -> tuple[list[ImageRecord], dict]:
    """keep_labels with the spec's `labels` / `labels_seed` options; unchanged without `labels`."""
    n = whole_option(spec, "labels", MIN_LABELS)
    if n is None:
        return records, {}
    return keep_labels(records, n, whole_option(spec, "labels_seed", 0) or 0)
