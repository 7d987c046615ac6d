"""Carving val out of train for datasets that ship no val split (BIQ2021, most CSVs): one rule for all.

Val is taken from the official train split only, never from test: a seeded, deterministic fraction of train
keys (scenes when the dataset has them, so val scenes are unseen; otherwise images), ranked by SHA-1 of
seed + key so the choice does not depend on row order. The dataset's info records how val was made.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from edgeiqa.data.fewlabels import LABEL_OPTIONS, with_kept_labels
from edgeiqa.data.loading import whole_option
from edgeiqa.data.records import ImageRecord, split_key
from edgeiqa.errors import DatasetError

DEFAULT_VAL_FRACTION = 0.1
MAX_VAL_FRACTION = 0.5  # more would leave train smaller than val
VAL_OPTIONS = {
    "val": f"fraction of train carved into val when the dataset has no val split, in (0, {MAX_VAL_FRACTION}] "
           f"(default {DEFAULT_VAL_FRACTION})",
    "val_seed": "seed of that carving, a whole number (default 0)",
}
SPLIT_OPTIONS = {**VAL_OPTIONS, **LABEL_OPTIONS}  # what a dataset without its own val split accepts


def val_fraction(spec) -> float:
    """The spec's `val=` option, checked: a number in (0, 0.5]."""
    text = spec.option("val")
    if text in (None, ""):
        return DEFAULT_VAL_FRACTION
    try:
        frac = float(text)
    except ValueError:
        frac = float("nan")
    if not 0.0 < frac <= MAX_VAL_FRACTION:
        raise DatasetError(f"dataset {spec.name!r}: option val={text!r} must be a number in (0, {MAX_VAL_FRACTION}]")
    return frac


def val_seed(spec) -> int:
    return whole_option(spec, "val_seed", 0) or 0


def carve_val(records: list[ImageRecord], frac: float, seed: int = 0) -> tuple[list[ImageRecord], dict]:
    """(records with val carved from train, facts for the card). A dataset that has val already is unchanged."""
    if any(r.split == "val" for r in records):
        return records, {"val_from": "the dataset's own val split"}
    keys = sorted({split_key(r) for r in records if r.split == "train"})
    if len(keys) < 2:  # carving would leave nothing to train on
        return records, {"val_from": f"none ({len(keys)} train {'scene or image' if keys else 'records'}: too few to carve val from)"}
    n = min(len(keys) - 1, max(1, round(frac * len(keys))))
    ranked = sorted(keys, key=lambda k: hashlib.sha1(f"{seed}:{k}".encode("utf-8", "surrogateescape")).hexdigest())
    chosen = set(ranked[:n])
    out = [replace(r, split="val") if r.split == "train" and split_key(r) in chosen else r for r in records]
    unit = "scenes" if any(r.scene is not None for r in records) else "images"
    return out, {"val_from": f"{n} of {len(keys)} train {unit} (fraction {frac:g}, seed {seed}, SHA-1 order); "
                             f"test untouched"}


def with_carved_val(spec, records: list[ImageRecord]) -> tuple[list[ImageRecord], dict]:
    """carve_val with the spec's `val` / `val_seed` options."""
    return carve_val(records, val_fraction(spec), val_seed(spec))


def with_train_splits(spec, records: list[ImageRecord]) -> tuple[list[ImageRecord], dict]:
    """The spec's train-side options in order: `labels=` first (the kept labels), then val carved from them."""
    records, labels_info = with_kept_labels(spec, records)
    records, val_info = with_carved_val(spec, records)
    return records, {**val_info, **labels_info}
