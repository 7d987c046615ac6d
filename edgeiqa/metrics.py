"""IQA metrics: correlations, errors, the 4-parameter logistic mapping, per-scene protocol, AIM rank score.

Conventions (every function here follows them):
- Correlations come from `scipy.stats` (`spearmanr`, `pearsonr`, `kendalltau` tau-b); nothing is ranked by hand.
- Results are plain Python floats (JSON-serialisable) or `None` where a value is undefined; never NaN.
- A *constant target* leaves a correlation undefined → `None` (and a scene with one is skipped).
- A *constant prediction* gives correlation **0.0**, not NaN: a model that cannot tell the images apart
  earns no credit, and an average over scenes stays defined.
- Per-scene statistics (PIQ23 protocol: SRCC per scene, then the **median** over scenes) skip scenes with
  fewer than 3 images or constant targets; `n_scenes_skipped` counts them. The mean over scenes and the
  worst distortion kind (lowest mean per-scene SRCC over the scenes of that kind) are reported beside the
  median, because the median saturates quickly on short distortion ladders.
- `plcc_fitted` is PLCC after mapping predictions with a 4-parameter logistic fitted on the same data
  (VQEG practice): f(x) = (b1 - b2) / (1 + exp(-(x - b3) / b4)) + b2, b4 > 0.
- `aim_rank_score`: the AIM 2024 UHD-IQA challenge final score, the mean over MAE, RMSE, KRCC, PLCC and
  SRCC of each method's rank (1 = best; ties share the average rank). Lowest wins.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import optimize, stats

__all__ = [
    "srcc",
    "plcc",
    "krcc",
    "mae",
    "rmse",
    "fit_logistic4",
    "logistic4",
    "plcc_fitted",
    "evaluate",
    "summarize",
    "split_metrics",
    "eval_summary",
    "val_key",
    "original_scores",
    "aim_rank_score",
    "MIN_SCENE_IMAGES",
]

MIN_SCENE_IMAGES = 3


# ---------------------------------------------------------------------------------------------- helpers
def _arrays(pred, target) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"pred and target differ in length: {p.size} vs {t.size}")
    bad = int((~np.isfinite(p)).sum() + (~np.isfinite(t)).sum())
    if bad:
        raise ValueError(f"pred/target hold {bad} non-finite value(s)")
    return p, t


def _is_constant(a: np.ndarray) -> bool:
    return a.size == 0 or bool(np.all(a == a[0]))


def _finite_or_none(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _correlation(fn, pred, target) -> float | None:
    p, t = _arrays(pred, target)
    if p.size < 2 or _is_constant(t):
        return None
    if _is_constant(p):
        return 0.0  # cannot tell images apart: no credit (documented above)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = fn(p, t)[0]
    return _finite_or_none(value)


# ---------------------------------------------------------------------------------------------- basic metrics
def srcc(pred, target) -> float | None:
    """Spearman rank correlation (scipy.stats.spearmanr)."""
    return _correlation(stats.spearmanr, pred, target)


def plcc(pred, target) -> float | None:
    """Pearson linear correlation of the raw predictions (scipy.stats.pearsonr)."""
    return _correlation(stats.pearsonr, pred, target)


def krcc(pred, target) -> float | None:
    """Kendall rank correlation, tau-b (scipy.stats.kendalltau)."""
    return _correlation(stats.kendalltau, pred, target)


def mae(pred, target) -> float | None:
    p, t = _arrays(pred, target)
    return float(np.mean(np.abs(p - t))) if p.size else None


def rmse(pred, target) -> float | None:
    p, t = _arrays(pred, target)
    return float(np.sqrt(np.mean((p - t) ** 2))) if p.size else None


# ---------------------------------------------------------------------------------------------- logistic
def _logistic(x, b1, b2, b3, b4):
    z = np.clip(-(x - b3) / b4, -500.0, 500.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def _linear_params(p: np.ndarray, t: np.ndarray) -> dict:
    if p.size == 0:
        return {"type": "linear", "beta": [0.0, 0.0]}
    if _is_constant(p) or _is_constant(t):
        return {"type": "linear", "beta": [0.0, float(np.mean(t))]}
    slope, intercept = np.polyfit(p, t, 1)
    return {"type": "linear", "beta": [float(slope), float(intercept)]}


def fit_logistic4(pred, target) -> dict:
    """Fit f(x) = (b1 - b2) / (1 + exp(-(x - b3) / b4)) + b2 mapping predictions to the target scale.

    Returns JSON-ready parameters: ``{"type": "logistic4", "beta": [b1, b2, b3, b4]}`` or, when the
    logistic cannot be fitted (fewer than 5 points, constant inputs, no convergence, or a fit worse
    than a straight line), ``{"type": "linear", "beta": [slope, intercept]}``. `logistic4` applies
    either. Deterministic: fixed initial guess from the data, bounded trust-region fit in standardised
    units (so the scale of scores does not matter), no random restarts.
    """
    p, t = _arrays(pred, target)
    linear = _linear_params(p, t)
    if p.size < 5 or _is_constant(p) or _is_constant(t):
        return linear
    mx, sx = float(p.mean()), float(p.std())
    my, sy = float(t.mean()), float(t.std())
    xs, ys = (p - mx) / sx, (t - my) / sy
    lo_y, hi_y = float(ys.min()), float(ys.max())
    span_y = hi_y - lo_y
    lo_x, hi_x = float(xs.min()), float(xs.max())
    span_x = hi_x - lo_x
    increasing = np.corrcoef(xs, ys)[0, 1] >= 0
    b1, b2 = (hi_y, lo_y) if increasing else (lo_y, hi_y)
    p0 = [b1, b2, float(np.median(xs)), 1.0]
    lower = [lo_y - 3 * span_y, lo_y - 3 * span_y, lo_x - span_x, 1e-3 * span_x]
    upper = [hi_y + 3 * span_y, hi_y + 3 * span_y, hi_x + span_x, 100.0 * span_x]
    p0 = [min(max(v, lo + 1e-9), hi - 1e-9) for v, lo, hi in zip(p0, lower, upper)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            beta, _ = optimize.curve_fit(
                _logistic, xs, ys, p0=p0, bounds=(lower, upper), method="trf", maxfev=20000
            )
    except (RuntimeError, ValueError, optimize.OptimizeWarning, FloatingPointError):
        return linear
    if not np.all(np.isfinite(beta)):
        return linear
    fitted = _logistic(xs, *beta)
    sse_log = float(np.sum((fitted - ys) ** 2))
    lin_xs = np.polyval(np.polyfit(xs, ys, 1), xs)
    sse_lin = float(np.sum((lin_xs - ys) ** 2))
    if not math.isfinite(sse_log) or sse_log > sse_lin * (1 + 1e-9) + 1e-12:
        return linear
    sb1, sb2, sb3, sb4 = (float(v) for v in beta)
    params = [my + sy * sb1, my + sy * sb2, mx + sx * sb3, sx * sb4]
    return {"type": "logistic4", "beta": params}


def logistic4(x, params) -> np.ndarray:
    """Apply parameters from `fit_logistic4` (also accepts a bare [b1, b2, b3, b4] sequence)."""
    x = np.asarray(x, dtype=np.float64)
    if isinstance(params, Mapping):
        kind, beta = params.get("type", "logistic4"), list(params["beta"])
    else:
        kind, beta = "logistic4", list(params)
    if kind == "linear":
        return beta[0] * x + beta[1]
    if kind != "logistic4" or len(beta) != 4:
        raise ValueError(f"unknown mapping parameters: {params!r}")
    return _logistic(x, *beta)


def plcc_fitted(pred, target) -> float | None:
    """PLCC after the 4-parameter logistic mapping (`fit_logistic4`) of the predictions."""
    p, t = _arrays(pred, target)
    if p.size < 2 or _is_constant(t):
        return None
    return plcc(logistic4(p, fit_logistic4(p, t)), t)


# ---------------------------------------------------------------------------------------------- evaluate
def _group_indices(labels: Sequence[Any]) -> dict[str, np.ndarray]:
    groups: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(str(lab), []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def evaluate(pred, target, scenes: Iterable | None = None, kinds: Iterable | None = None) -> dict:
    """All metrics for one prediction set.

    Always: ``srcc, plcc, plcc_fitted, krcc, mae, rmse, n_images`` (pooled over all images).
    With `scenes` (one label per image): ``srcc_scene_median, srcc_scene_mean, plcc_scene_median,
    krcc_scene_median, n_scenes, n_scenes_skipped, per_scene`` (scene → {srcc, plcc, krcc, n}; skipped
    scenes are left out of it). With `kinds` (distortion kind per image): ``srcc_kind_worst, worst_kind,
    per_kind`` (kind → mean per-scene SRCC, None when none of its scenes counted). A scene's kind is the
    most common kind among its images (so an undistorted reference inside a ladder does not matter);
    `kinds` without `scenes` treats each kind as one scene.
    """
    p, t = _arrays(pred, target)
    out: dict[str, Any] = {
        "srcc": srcc(p, t),
        "plcc": plcc(p, t),
        "plcc_fitted": plcc_fitted(p, t),
        "krcc": krcc(p, t),
        "mae": mae(p, t),
        "rmse": rmse(p, t),
        "n_images": int(p.size),
    }
    kind_labels = None if kinds is None else [str(k) for k in kinds]
    if kind_labels is not None and len(kind_labels) != p.size:
        raise ValueError(f"kinds has {len(kind_labels)} entries for {p.size} images")
    if scenes is None and kind_labels is None:
        return out
    scene_labels = [str(s) for s in scenes] if scenes is not None else list(kind_labels)
    if len(scene_labels) != p.size:
        raise ValueError(f"scenes has {len(scene_labels)} entries for {p.size} images")

    per_scene: dict[str, dict] = {}
    skipped = 0
    scene_kind: dict[str, str] = {}
    for name, idx in _group_indices(scene_labels).items():
        ps, ts = p[idx], t[idx]
        if idx.size < MIN_SCENE_IMAGES or _is_constant(ts):
            skipped += 1
            continue
        per_scene[name] = {"srcc": srcc(ps, ts), "plcc": plcc(ps, ts), "krcc": krcc(ps, ts), "n": int(idx.size)}
        if kind_labels is not None:
            counts = Counter(kind_labels[i] for i in idx)
            top = max(counts.values())
            scene_kind[name] = sorted(k for k, c in counts.items() if c == top)[0]

    def values(key: str, names: Iterable[str] | None = None) -> list[float]:
        names = per_scene.keys() if names is None else names
        return [per_scene[n][key] for n in names if per_scene[n][key] is not None]

    if scenes is not None:
        out.update(
            srcc_scene_median=_median(values("srcc")),
            srcc_scene_mean=_mean(values("srcc")),
            plcc_scene_median=_median(values("plcc")),
            krcc_scene_median=_median(values("krcc")),
            n_scenes=len(per_scene),
            n_scenes_skipped=skipped,
            per_scene=per_scene,
        )
    if kind_labels is not None:
        per_kind: dict[str, float | None] = {}
        for kind in sorted(set(kind_labels)):
            per_kind[kind] = _mean(values("srcc", [n for n, k in scene_kind.items() if k == kind]))
        scored = {k: v for k, v in per_kind.items() if v is not None}
        worst = min(scored, key=lambda k: (scored[k], k)) if scored else None
        out.update(
            srcc_kind_worst=scored[worst] if worst is not None else None,
            worst_kind=worst,
            per_kind=per_kind,
        )
    return out


def summarize(records: Iterable, score_of: Mapping[str, float]) -> dict:
    """The one per-split summary (teachers, distill, eval and bench all use it): `evaluate()` over the
    labelled `records` (ImageRecord-like: .path, .score, .scene, .kind) whose image has a finite score.

    Per-scene metrics when every scored record has a scene; per-kind when any has a kind; global `srcc`,
    `mae` (on the label scale) beside them, and `original_score_mean` (see `original_scores`). `per_scene` is
    left out (cards stay small). With record groups (dataset subsets), `srcc_per_group` / `plcc_per_group`. Always `n_images` (records scored) and `n_unscored` (labelled records
    with no finite score); with fewer than MIN_SCENE_IMAGES scored records, only those two counts.
    """
    labelled = [r for r in records if r.score is not None]
    rows = []
    for r in labelled:
        s = score_of.get(str(r.path))
        if s is not None and math.isfinite(s):
            rows.append((r, float(s)))
    counts = {"n_images": len(rows), "n_unscored": len(labelled) - len(rows)}
    if len(rows) < MIN_SCENE_IMAGES:
        return counts
    recs = [r for r, _ in rows]
    m = evaluate([s for _, s in rows], [r.score for r in recs],
                 scenes=[r.scene for r in recs] if all(r.scene is not None for r in recs) else None,
                 kinds=[r.kind for r in recs] if any(r.kind for r in recs) else None)
    m.pop("per_scene", None)
    return {**m, **per_group([s for _, s in rows], recs), **original_scores(recs, dict((str(r.path), s) for r, s in rows)),
            **counts}


def split_metrics(records: Iterable, score_of: Mapping[str, float]) -> dict:
    """`summarize()` per split, {split: summary} (what teacher cards record); splits with too few scored images are
    left out."""
    records = list(records)
    out = {}
    for split in sorted({r.split for r in records if r.score is not None and r.split}):
        m = summarize([r for r in records if r.split == split], score_of)
        if "srcc" in m:
            out[split] = m
    return out


# The keys of `summarize()` that an evaluation reports (`edgeiqa eval`, the distill card, bench rows), in this order.
EVAL_KEYS = ("srcc_scene_median", "srcc_scene_mean", "plcc_scene_median", "krcc_scene_median", "srcc_kind_worst",
             "worst_kind", "srcc", "plcc", "krcc", "mae", "rmse", "original_score_mean", "original_label", "n_originals",
             "n_images", "n_scenes", "n_failed")


def eval_summary(pred: Mapping[str, float], records, failed: int = 0) -> dict:
    """The EVAL_KEYS of `summarize()` over labelled records, with `per_kind` and the per-subset values when there
    are any; `n_failed` counts `failed` plus the records left unscored."""
    m = summarize(records, pred)
    out = {k: m[k] for k in EVAL_KEYS if k in m}
    out["n_failed"] = failed + m["n_unscored"]
    for key in ("per_kind", "srcc_per_group", "plcc_per_group"):
        if key in m:
            out[key] = m[key]
    return out


def val_key(m: Mapping) -> float:
    """The model-selection rule (a student's or teacher's best epoch, ensemble weights): per-scene mean SRCC when
    scenes exist (the median saturates), else SRCC; -1.0 when neither is defined."""
    v = m.get("srcc_scene_mean", m.get("srcc"))
    return float(v) if v is not None else -1.0


def per_group(pred, records) -> dict:
    """`srcc_per_group` / `plcc_per_group` ({group: value}) over the records' `group` (a dataset's subsets, such
    as BIQ2021's ss01/ss02/ss03); empty when no record has a group."""
    groups = [getattr(r, "group", None) for r in records]
    if not any(groups):
        return {}
    p, t = _arrays(pred, [r.score for r in records])
    out: dict[str, dict] = {"srcc_per_group": {}, "plcc_per_group": {}}
    for name, idx in _group_indices([g or "-" for g in groups]).items():
        out["srcc_per_group"][name] = srcc(p[idx], t[idx])
        out["plcc_per_group"][name] = plcc(p[idx], t[idx])
    return out


def original_scores(records: Iterable, score_of: Mapping[str, float]) -> dict:
    """How the top of the label scale is scored: the mean prediction over the distinct images labelled with the
    records' highest label (a ladder's undistorted originals, 5.0 on the sample set; on a MOS set, its best
    image(s)), each counted once however many scenes reference it. Keys `original_score_mean`,
    `original_label`, `n_originals`; empty without labelled, scored records."""
    labelled = [r for r in records if r.score is not None and score_of.get(str(r.path)) is not None]
    if not labelled:
        return {}
    top = max(float(r.score) for r in labelled)
    paths = sorted({str(r.path) for r in labelled if float(r.score) == top})
    return {"original_score_mean": float(np.mean([score_of[p] for p in paths])), "original_label": top,
            "n_originals": len(paths)}


# ---------------------------------------------------------------------------------------------- AIM score
AIM_METRICS = {"mae": False, "rmse": False, "krcc": True, "plcc": True, "srcc": True}  # True: higher is better


def aim_rank_score(results: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """AIM 2024 UHD-IQA challenge final score: per method, the mean of its ranks over MAE, RMSE, KRCC,
    PLCC and SRCC (rank 1 = best; correlations higher-better, errors lower-better; ties share the
    average rank, scipy.stats.rankdata). Lowest score wins. Metric names are matched case-insensitively.
    """
    methods = list(results)
    if not methods:
        return {}
    table = np.zeros((len(methods), len(AIM_METRICS)))
    for i, method in enumerate(methods):
        row = {str(k).lower(): v for k, v in results[method].items()}
        for j, (metric, higher_better) in enumerate(AIM_METRICS.items()):
            value = row.get(metric)
            if value is None or not math.isfinite(float(value)):
                raise ValueError(f"method {method!r}: metric {metric!r} is missing or not finite")
            table[i, j] = -float(value) if higher_better else float(value)
    ranks = np.column_stack([stats.rankdata(table[:, j], method="average") for j in range(table.shape[1])])
    return {method: float(ranks[i].mean()) for i, method in enumerate(methods)}
