"""The table: rows pooled over folds and averaged over seeds, the targets, and its markdown."""

from __future__ import annotations

import numpy as np

from edgeiqa import metrics

TARGETS = {"teacher_scene_mean": 0.90, "student_vs_teacher": 0.97, "gmacs_ratio": 0.10, "distill_gain": 0.03}


def summarise(per_seed: list[dict[str, list[dict]]], gmacs: dict[str, float]) -> list[dict]:
    """One table row per recipe: per-scene numbers pooled over folds, global ones averaged, mean/std over seeds."""
    rows = []
    for name in per_seed[0]:
        vals: dict[str, list] = {}
        for seed_out in per_seed:
            folds = seed_out[name]
            m = metrics.evaluate(np.concatenate([f["pred"] for f in folds]), np.concatenate([f["target"] for f in folds]),
                                 scenes=sum((f["scene"] for f in folds), []), kinds=sum((f["kind"] for f in folds), []))
            for k in ("srcc_scene_mean", "srcc_scene_median", "srcc_kind_worst"):
                vals.setdefault(k, []).append(m[k])
            vals.setdefault("per_seed", []).append(m["srcc_scene_mean"])
            vals.setdefault("worst_kind", []).append(m["worst_kind"])
            vals.setdefault("per_kind", []).append(m["per_kind"])
            vals.setdefault("srcc", []).append(float(np.mean([f["global"]["srcc"] for f in folds])))
            vals.setdefault("mae", []).append(float(np.mean([f["global"]["mae"] for f in folds])))
            vals.setdefault("original_score_mean", []).append(float(np.mean([f["original"] for f in folds])))
        row = {"row": name}
        for k, v in vals.items():
            if k == "worst_kind":
                row[k] = max(set(v), key=v.count)
                continue
            if k == "per_seed":  # each seed's per-scene mean SRCC, in seed order
                row["srcc_scene_mean_per_seed"] = [round(float(x), 4) for x in v]
                continue
            if k == "per_kind":  # mean over seeds of each held-out kind's per-scene mean SRCC
                got = {kind: [d[kind] for d in v if d.get(kind) is not None] for kind in sorted(v[0])}
                row["srcc_per_kind"] = {kind: round(float(np.mean(x)), 3) for kind, x in got.items() if x}
                continue
            row[k] = round(float(np.mean(v)), 4)
            row[k + "_std"] = round(float(np.std(v)), 4)
        row["gmacs"] = gmacs.get(name)
        rows.append(row)
    return rows


def check_targets(rows: list[dict]) -> dict:
    by = {r["row"]: r for r in rows}
    t, s, lab = by["teacher_ensemble"], by["student_distilled"], by["student_labels_only"]
    small, small_lab = by["student_small_distilled"], by["student_small_labels_only"]
    students = [r for r in rows if r["row"].startswith("student_")]
    return {
        "teacher_ensemble_scene_mean_ge_0.90": t["srcc_scene_mean"] >= TARGETS["teacher_scene_mean"],
        "teacher_above_every_student": all(t["srcc_scene_mean"] > r["srcc_scene_mean"] for r in students),
        "distilled_ge_97pct_teacher": s["srcc_scene_mean"] >= TARGETS["student_vs_teacher"] * t["srcc_scene_mean"],
        "distilled_gmacs_le_tenth_teacher": s["gmacs"] <= TARGETS["gmacs_ratio"] * t["gmacs"],
        "distilled_ge_labels_only_plus_0.03": s["srcc_scene_mean"] >= lab["srcc_scene_mean"] + TARGETS["distill_gain"],
        "small_distilled_ge_97pct_teacher": small["srcc_scene_mean"] >= TARGETS["student_vs_teacher"] * t["srcc_scene_mean"],
        "small_distilled_gmacs_le_tenth_teacher": small["gmacs"] <= TARGETS["gmacs_ratio"] * t["gmacs"],
        "small_distilled_ge_labels_only_plus_0.03": small["srcc_scene_mean"] >= small_lab["srcc_scene_mean"] + TARGETS["distill_gain"],
    }


def markdown(rows: list[dict]) -> str:
    lines = ["| row | per-scene mean SRCC | worst kind | per-scene median | global SRCC | MAE | original scored | GMACs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g = f"{r['gmacs']:.2f}" if r.get("gmacs") is not None else ""
        lines.append(f"| {r['row']} | {r['srcc_scene_mean']:.3f} ± {r['srcc_scene_mean_std']:.3f} | {r['srcc_kind_worst']:.3f} "
                     f"({r['worst_kind']}) | {r['srcc_scene_median']:.3f} | {r['srcc']:.3f} ± {r['srcc_std']:.3f} | {r['mae']:.2f} | "
                     f"{r['original_score_mean']:.2f} | {g} |")
    return "\n".join(lines)
