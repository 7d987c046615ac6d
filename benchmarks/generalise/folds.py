"""One fold (two held-out groups) and seed: every row of the table, teachers first, then the students."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeiqa import metrics
from edgeiqa.data.records import Dataset, ImageRecord
from edgeiqa.metrics import val_key
from edgeiqa.teachers.ensemble import _simplex, fit_ensemble
from edgeiqa.teachers.train import MemberResult

from .features import SMALL_STUDENT, STUDENT, TEACHERS
from .heads import join, make_items, train_head
from .images import Img

FOLDS = (("blurs", "color"), ("compression", "noise"), ("brightness", "spatial"), ("sharpness_contrast", "camera"))


def fold_rows(imgs: list[Img], held: set[str], grey: set[str] = frozenset()) -> dict[str, list[int]]:
    """Row indices per role for one fold (held = held-out kinds; grey = greyscale photos, left out of the ranking
    ladders as `rank_head.base_photos` leaves them out)."""
    def rows(split, want_held=None):
        return [i for i, im in enumerate(imgs) if im.split == split
                and (want_held is None or im.kind == "original" or (im.kind in held) == want_held)]
    ladders, copies = rows("pool", False), rows("rank", False)
    photo_only = [i for i in ladders if imgs[i].photo not in grey]
    return {"train": rows("train", False), "val": rows("val", False), "test": rows("test", True),
            "pool": rows("pool"), "rank": photo_only + copies, "rank_photo_copy": photo_only, "rank_with_grey": ladders + copies}


def fold_dataset(imgs: list[Img], r: dict[str, list[int]]) -> Dataset:
    """The fold as a Dataset for fit_ensemble: train/val labelled, test labelled (never read by the fit), pool unlabelled."""
    recs = []
    for split in ("train", "val", "test", "pool"):
        it = make_items(imgs, r[split])
        scene_name = {}
        for row, s in zip(it.rows, it.scene):
            im = imgs[row]
            scene_name.setdefault(s, f"{im.photo}-{s}")
            recs.append(ImageRecord(Path(im.key), None if split == "pool" else im.score, scene_name[s], split, im.kind))
    return Dataset("generalise", recs)


def evaluate_rows(imgs, test_rows, scores) -> dict:
    it = make_items(imgs, test_rows)
    kinds = [imgs[r].kind if imgs[r].kind != "original" else "" for r in it.rows]
    scene_kind = {}
    for s, k in zip(it.scene, kinds):
        if k:
            scene_kind[s] = k
    kinds = [scene_kind[s] for s in it.scene]
    return {"pred": scores[it.rows], "target": it.target, "scene": [f"{imgs[r].photo}-{k}" for r, k in zip(it.rows, kinds)],
            "kind": kinds, "global": metrics.evaluate(scores[test_rows], [imgs[r].score for r in test_rows]),
            "original": float(np.mean([scores[r] for r in test_rows if imgs[r].kind == "original"]))}


def val_argmax_weights(ens, results, ds: Dataset) -> dict[str, float]:
    """The rule `fit_ensemble` used before the one-standard-error rule: the first simplex point (step 0.1) with the
    best val per-scene mean SRCC, ties going to the first found."""
    val = [rec for rec in ds.records if rec.split == "val"]
    index = {p: i for i, p in enumerate(results[0].paths)}
    rows = [index[str(rec.path)] for rec in val]
    z = np.stack([ens.zscore(res.name, res.scores[rows]) for res in results], axis=1)
    target, scenes = np.array([rec.score for rec in val]), [rec.scene for rec in val]
    best, best_w = -np.inf, None
    for w in _simplex(len(results)):
        v = val_key(metrics.evaluate(z @ w, target, scenes=scenes))
        if v > best + 1e-9:
            best, best_w = v, w
    return {res.name: float(x) for res, x in zip(results, best_w)}


def fit_members(imgs, feats, r, items, seed, cfg, weights, variant, out, rank_items=None):
    """Train every teacher member's head, fit the ensemble on val; record member and ensemble rows.
    Returns (calibrated ensemble scores, opinion features of the top-weighted member, ensemble weights)."""
    results = []
    for name in TEACHERS:
        s, o = train_head(feats[name], imgs, items, r["val"], seed=seed, epochs=cfg["epochs"], weights=weights,
                          rank_items=rank_items, rank_epochs=cfg["rank_epochs"])
        results.append(MemberResult(name, Path("."), [im.key for im in imgs], s, o, {}))
        out[f"teacher_{name}{variant}"] = evaluate_rows(imgs, r["test"], s)
    ds = fold_dataset(imgs, r)
    ens = fit_ensemble(results, ds)
    cal = ens.calibrated({res.name: res.scores for res in results})
    out[f"teacher_ensemble{variant}"] = evaluate_rows(imgs, r["test"], cal)
    if not variant:  # the weighting rule before the one-standard-error rule, for comparison
        old = fit_ensemble(results, ds, weights=val_argmax_weights(ens, results, ds))
        out["teacher_ensemble_val_argmax"] = evaluate_rows(imgs, r["test"], old.calibrated({res.name: res.scores for res in results}))
    top = max(ens.weights, key=ens.weights.get)
    return cal, next(res.opinions for res in results if res.name == top), ens.weights


def run_fold(imgs, feats, r, seed, cfg, losses_t, losses_s, pseudo_weight) -> dict[str, dict]:
    """Every row of the table for one fold and seed: {row: evaluate_rows(...)}.

    Teachers: the default recipe of the `sample` profile (`teacher_*`: each head ranking-pre-trained on synthetic
    ladders of the colour pool photos and their copies at the training-fold kinds, then trained on labels; ensemble
    by the one-standard-error rule), and one ingredient changed at a time: `_no_ranking` (labels only),
    `_photo_copy_only` (the photos' own ladders, no crop or downscaled copies: the default before rank_copies),
    `_greyscale_bases` (the ladders of the greyscale pool photos too, as before `base_photos` passed them over), `_self_trained` (+ one
    self-training round on the default ensemble's pseudo-labels of the pool, as `[teacher] self_train`), and
    `teacher_ensemble_val_argmax` (the default members, weighted by the plain val argmax). Students learn from the
    default teachers; the distilled ones (the `distill` default) ranking-pre-train their heads on the same ladders
    first and then learn the teachers' scores of those ladders (`[distill] ladder_epochs`);
    `student_distilled_rank_only` (and `student_small_distilled_rank_only`) stop after the ranking (the default before
    ladder_epochs), `student_distilled_no_ranking` does neither."""
    train = make_items(imgs, r["train"])
    severity = np.array([-im.severity for im in imgs], dtype=np.float32)  # ranking target: less degraded ranks higher
    rank = make_items(imgs, r["rank"], target=severity)
    out: dict = {"_weights": {}}
    scores, opinion, out["_weights"]["default"] = fit_members(imgs, feats, r, train, seed, cfg, losses_t, "", out, rank)
    _, _, out["_weights"]["_no_ranking"] = fit_members(imgs, feats, r, train, seed, cfg, losses_t, "_no_ranking", out)
    photo_rank = make_items(imgs, r["rank_photo_copy"], target=severity)
    _, _, out["_weights"]["_photo_copy_only"] = fit_members(imgs, feats, r, train, seed, cfg, losses_t, "_photo_copy_only", out,
                                                             photo_rank)
    grey_rank = make_items(imgs, r["rank_with_grey"], target=severity)
    _, _, out["_weights"]["_greyscale_bases"] = fit_members(imgs, feats, r, train, seed, cfg, losses_t, "_greyscale_bases", out,
                                                             grey_rank)
    pseudo = join(train, make_items(imgs, r["pool"], target=scores.astype(np.float32), weight=pseudo_weight))
    _, _, out["_weights"]["_self_trained"] = fit_members(imgs, feats, r, pseudo, seed, cfg, losses_t, "_self_trained", out, rank)
    tfeat = torch.from_numpy(opinion)
    no_feature = {k: v for k, v in losses_s.items() if k != "feature"}
    ranked = dict(rank_items=rank, rank_epochs=cfg["rank_epochs"])  # `[distill] rank_epochs`: the student's head too
    # `[distill] ladder_epochs`: then the teachers' scores of the same ladders
    laddered = dict(ranked, ladder_items=make_items(imgs, r["rank"], target=scores.astype(np.float32)))
    recipes = {
        "student_labels_only": (STUDENT, dict(items=train, weights=no_feature)),
        "student_pseudo": (STUDENT, dict(items=pseudo, weights=no_feature)),
        "student_distilled_no_ranking": (STUDENT, dict(items=pseudo, weights=losses_s, teacher_feat=tfeat)),
        "student_distilled_rank_only": (STUDENT, dict(items=pseudo, weights=losses_s, teacher_feat=tfeat, **ranked)),
        "student_distilled": (STUDENT, dict(items=pseudo, weights=losses_s, teacher_feat=tfeat, **laddered)),
        "student_small_labels_only": (SMALL_STUDENT, dict(items=train, weights=no_feature)),
        "student_small_distilled_rank_only": (SMALL_STUDENT, dict(items=pseudo, weights=losses_s, teacher_feat=tfeat, **ranked)),
        "student_small_distilled": (SMALL_STUDENT, dict(items=pseudo, weights=losses_s, teacher_feat=tfeat, **laddered)),
    }
    for row, (model, kw) in recipes.items():
        s, _ = train_head(feats[model], imgs, kw.pop("items"), r["val"], seed=seed, epochs=cfg["epochs"], **kw)
        out[row] = evaluate_rows(imgs, r["test"], s)
    return out
