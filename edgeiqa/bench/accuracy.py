"""Which images the bench judges accuracy on, and the metrics it reports for each format.

Images: the data's `test` split when it has one (else every labelled image; an unlabelled folder gives
timing only). `max_images` keeps whole scenes, spread evenly over the sorted scene list, so per-scene
SRCC stays defined. Default data: the card's dataset, else the profile's, else `sample`.

Metrics (edgeiqa.metrics.summarize on the scores the deployed model returns, logistic mapping included):
pooled (global) SRCC/PLCC and MAE over all images, with scenes the per-scene median and mean SRCC (PIQ23
protocol), and `original_score_mean` (mean score of the undistorted originals, metrics.original_scores).
Parity vs torch: max |raw score difference| over the same images, the torch student being the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeiqa import metrics
from edgeiqa.data.datasets import load_dataset
from edgeiqa.data.records import ImageRecord
from edgeiqa.errors import DatasetError, EdgeIQAError


ACCURACY_KEYS = ("srcc", "plcc", "mae", "srcc_scene_median", "srcc_scene_mean", "original_score_mean")


@dataclass
class EvalSet:
    spec: str
    split: str | None  # "test", "all labelled" or "unlabelled"
    records: list[ImageRecord]
    labelled: bool
    n_total: int  # images in the chosen split before max_images

    @property
    def paths(self) -> list[str]:
        """Unique image paths in record order (a file referenced by several scenes is scored once)."""
        seen: dict[str, None] = {}
        for r in self.records:
            seen.setdefault(str(r.path), None)
        return list(seen)

    def describe(self) -> dict:
        scenes = {r.scene for r in self.records if r.scene is not None}
        return {"spec": self.spec, "split": self.split, "n_records": len(self.records), "n_images": len(self.paths),
                "n_scenes": len(scenes), "labelled": self.labelled, "n_in_split": self.n_total}


def default_spec(card: dict) -> str:
    if card.get("dataset"):
        return str(card["dataset"])
    from edgeiqa.export.parity import _default_spec

    return _default_spec(card.get("profile"))


def _cap(records: list[ImageRecord], max_images: int | None) -> list[ImageRecord]:
    if not max_images or len({str(r.path) for r in records}) <= max_images:
        return records
    if any(r.scene is not None for r in records):
        by_scene: dict[str, list[ImageRecord]] = {}
        for r in records:
            by_scene.setdefault(str(r.scene), []).append(r)
        names = sorted(by_scene)
        order = []
        step = len(names)
        while len(order) < len(names):  # 0, n/2, n/4, 3n/4, ...: spread over the sorted scenes
            for i in range(0, len(names), max(1, step)):
                if names[i] not in order:
                    order.append(names[i])
            if step <= 1:
                break
            step //= 2
        out, paths = [], set()
        for name in order:
            new = {str(r.path) for r in by_scene[name]} - paths
            if paths and len(paths) + len(new) > max_images:
                continue
            out.extend(by_scene[name])
            paths |= new
        return out
    idx = np.linspace(0, len(records) - 1, max_images).round().astype(int)
    return [records[i] for i in sorted(set(idx))]


def select_eval(spec: str, max_images: int | None = None) -> EvalSet:
    if max_images is not None and max_images < 1:
        raise EdgeIQAError(f"--max-images must be >= 1, got {max_images}")
    ds = load_dataset(spec)
    if not ds.records:
        raise DatasetError(f"dataset {spec!r} has no images")
    labelled = [r for r in ds.records if r.score is not None]
    test = [r for r in labelled if r.split == "test"]
    if test:
        records, split = test, "test"
    elif labelled:
        records, split = labelled, "all labelled"
    else:
        records, split = list(ds.records), "unlabelled"
    records = sorted(records, key=lambda r: (str(r.scene), str(r.path)))
    capped = _cap(records, max_images)
    return EvalSet(spec, split, capped, bool(labelled), len({str(r.path) for r in records}))


def accuracy(evalset: EvalSet, score_of: dict[str, float]) -> dict:
    """srcc, plcc, mae, srcc_scene_median, srcc_scene_mean, original_score_mean, n_eval (records scored)."""
    m = metrics.eval_summary(score_of, evalset.records)
    out = {k: m.get(k) for k in ACCURACY_KEYS}
    out["n_eval"] = m["n_images"]
    return out


def parity(reference: dict[str, float], candidate: dict[str, float]) -> dict:
    """max / mean |diff| of raw scores over the images both scored, and their SRCC."""
    common = [p for p in reference if p in candidate and np.isfinite(reference[p]) and np.isfinite(candidate[p])]
    if not common:
        return {"parity_max_abs": None, "parity_mean_abs": None, "parity_srcc": None}
    a = np.array([reference[p] for p in common])
    b = np.array([candidate[p] for p in common])
    d = np.abs(a - b)
    return {"parity_max_abs": float(d.max()), "parity_mean_abs": float(d.mean()), "parity_srcc": metrics.srcc(b, a)}
