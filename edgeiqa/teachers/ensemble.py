"""Ensembles: members' scores z-normalised on the labelled training images, combined with weights fitted
on the val split (or given), then mapped to the label scale by a 4-parameter logistic (Efficient-FIQA).

Weights are searched on the simplex (step 0.1, every member >= 0) on the val model-selection metric
(per-scene mean SRCC when scenes exist), with the one-standard-error rule: of the weights whose val metric is
within one standard error of the best, the ones closest to equal weights win. A clearly weak member still gets
weight 0 and cannot drag the ensemble down, but a val split that cannot tell members apart (the sample set's
val ladders saturate near SRCC 1) no longer hands all the weight to whichever member won by noise
(docs/benchmarks.md, leave-kinds-out). With more than 4 members the search falls back to non-negative least
squares on z-scores.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from edgeiqa import metrics
from edgeiqa.data.records import Dataset
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import write_json_atomic
from edgeiqa.teachers.train import MemberResult

ENSEMBLE_FILE = "ensemble.json"


@dataclass
class Ensemble:
    members: list[str]
    weights: dict[str, float]
    znorm: dict[str, list[float]]  # member -> [mean, std] over labelled train images
    calibration: dict  # logistic4 params: ensemble raw -> label scale
    member_calibration: dict[str, dict]
    weights_fitted_on: str  # "val" / "given" / "uniform"
    left_out: list[dict] = field(default_factory=list)  # [{"member", "left_out": reason}]: never trained

    @property
    def active(self) -> list[str]:
        """Members with weight > 0: the only ones run at labelling and deployment (the others add nothing)."""
        return [n for n in self.members if self.weights.get(n, 0.0) > 0]

    @property
    def not_run(self) -> list[str]:
        return [n for n in self.members if n not in self.active]

    def zscore(self, name: str, scores: np.ndarray) -> np.ndarray:
        m, s = self.znorm[name]
        return (np.asarray(scores, dtype=np.float64) - m) / s

    def raw(self, member_scores: dict[str, np.ndarray]) -> np.ndarray:
        """Weighted z-scores of the active members (weight-0 members need not be given)."""
        return sum(self.weights[n] * self.zscore(n, member_scores[n]) for n in self.active)

    def calibrated(self, member_scores: dict[str, np.ndarray]) -> np.ndarray:
        return metrics.logistic4(self.raw(member_scores), self.calibration)

    def save(self, path: Path) -> None:
        write_json_atomic(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> "Ensemble":
        if not path.exists():
            raise EdgeIQAError(f"no ensemble in {path.parent} ({path.name} missing); run `edgeiqa teachers train --teacher ensemble` first")
        return cls(**json.loads(path.read_text()))


def _rows(dataset: Dataset, split: str | tuple, score_of: dict[str, float]):
    splits = (split,) if isinstance(split, str) else split
    return [r for r in dataset.records if r.split in splits and r.score is not None and np.isfinite(score_of.get(str(r.path), np.nan))]


def _simplex(n: int, step: float = 0.1):
    k = int(round(1 / step))
    for combo in itertools.product(range(k + 1), repeat=n):
        if sum(combo) == k:
            yield np.asarray(combo, dtype=np.float64) / k


def standard_error(m: dict) -> float:
    """Standard error of the val model-selection metric (`val_key`) of one `metrics.evaluate` result: over
    scenes when it is the per-scene mean SRCC, else the Fisher-z approximation for Spearman's rho
    (var(atanh rho) ~ 1.06 / (n - 3), Fieller et al. 1957), mapped back by the delta method."""
    per_scene = [s["srcc"] for s in m.get("per_scene", {}).values() if s["srcc"] is not None]
    if m.get("srcc_scene_mean") is not None and len(per_scene) > 1:
        return float(np.std(per_scene, ddof=1) / np.sqrt(len(per_scene)))
    rho, n = m.get("srcc") or 0.0, m.get("n_images", 0)
    return float((1 - rho**2) * np.sqrt(1.06 / (n - 3))) if n > 3 else float("inf")


def one_se_weights(z: np.ndarray, target: np.ndarray, scenes) -> np.ndarray:
    """Simplex weights (step 0.1) by the one-standard-error rule: among the weights whose val metric is within
    one standard error of the best, the closest to equal weights (ties: the better val metric)."""
    grid = list(_simplex(z.shape[1]))
    evals = [metrics.evaluate(z @ w, target, scenes=scenes) for w in grid]
    values = np.array([metrics.val_key(m) for m in evals])
    best = int(np.argmax(values))
    floor = values[best] - standard_error(evals[best])
    equal = np.full(z.shape[1], 1.0 / z.shape[1])
    ok = [i for i in range(len(grid)) if values[i] >= floor - 1e-12]
    return grid[min(ok, key=lambda i: (round(float(np.abs(grid[i] - equal).sum()), 9), -values[i]))]


def fit_ensemble(results: list[MemberResult], dataset: Dataset, weights: dict[str, float] | None = None) -> Ensemble:
    names = [r.name for r in results]
    score_of = {r.name: dict(zip(r.paths, r.scores)) for r in results}
    ok_paths = set.intersection(*[{p for p, s in zip(r.paths, r.scores) if np.isfinite(s)} for r in results])
    common = {p: 0.0 for p in ok_paths}
    train = _rows(dataset, "train", common)
    if len(train) < 3:
        raise EdgeIQAError("the ensemble needs labelled training images scored by every member")
    znorm = {}
    for n in names:
        t = np.array([score_of[n][str(r.path)] for r in train])
        znorm[n] = [float(t.mean()), float(max(t.std(), 1e-8))]
    ens = Ensemble(names, {n: 1.0 / len(names) for n in names}, znorm, {}, {}, "uniform")
    val = _rows(dataset, "val", common)
    if weights:
        unknown = set(weights) - set(names)
        if unknown:
            raise EdgeIQAError(f"weights given for teachers not in the ensemble: {sorted(unknown)}")
        total = sum(weights.values())
        ens.weights = {n: float(weights.get(n, 0.0)) / total for n in names}
        ens.weights_fitted_on = "given"
    elif len(val) >= 3:
        z = np.stack([ens.zscore(n, [score_of[n][str(r.path)] for r in val]) for n in names], axis=1)
        target = np.array([r.score for r in val])
        scenes = [r.scene for r in val] if any(r.scene for r in val) else None
        if len(names) <= 4:
            best_w = one_se_weights(z, target, scenes)
        else:
            tz = (target - target.mean()) / max(target.std(), 1e-8)
            best_w, _ = nnls(z, tz)
            best_w = best_w / best_w.sum() if best_w.sum() > 0 else np.full(len(names), 1 / len(names))
        ens.weights = {n: round(float(w), 4) for n, w in zip(names, best_w)}
        ens.weights_fitted_on = "val"
    # Calibration on every labelled image of train + val (Efficient-FIQA maps pseudo-labels to the MOS scale).
    lab = _rows(dataset, ("train", "val"), common)
    member_scores = {n: np.array([score_of[n][str(r.path)] for r in lab]) for n in names}
    target = np.array([r.score for r in lab])
    ens.calibration = metrics.fit_logistic4(ens.raw(member_scores), target)
    ens.member_calibration = {n: metrics.fit_logistic4(member_scores[n], target) for n in names}
    return ens


def ensemble_metrics(ens: Ensemble, results: list[MemberResult], dataset: Dataset) -> dict:
    """Per split: the ensemble's metrics (calibrated scores) and every member's own, side by side."""
    paths = results[0].paths
    member_scores = {r.name: np.asarray([dict(zip(r.paths, r.scores)).get(p, np.nan) for p in paths]) for r in results}
    cal = ens.calibrated(member_scores)
    out = {"ensemble": metrics.split_metrics(dataset.records, dict(zip(paths, cal)))}
    for r in results:
        out[r.name] = r.metrics
    return out
