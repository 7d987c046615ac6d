"""`distill --teacher ensemble --budget 50`: teachers -> LabelSet -> student under the budget -> card.

Steps (each reused when its inputs are unchanged, so a re-run or `--resume` only does what is left):
1. dataset + profile; 2. teachers trained (or reused) in OUT/teachers, ensemble fitted on val (with
`--self-train` / `[teacher] self_train`, one self-training round into OUT/teachers/selftrain, whose ensemble labels);
3. LabelSet of every image (OUT/labels); 4. student picked (`auto` = most capable that fits) and counted
with fvcore at the profile's views, `--fit` shrinks input or prunes; 5. student trained on ground truth
(train split) + calibrated pseudo-labels (pool / unlabelled images) with the named losses, opinion
features distilled through the projection head (its scoring head first ranking-pre-trained without labels on
the teachers' synthetic ladders, `[distill] rank_epochs`, then taught the teachers' scores of those ladders,
`[distill] ladder_epochs`); checkpoint every epoch; best epoch by val;
6. test-scene metrics of student and teacher ensemble side by side; OUT/student.pt, OUT/card.json,
OUT/scatter.png, OUT/predictions.csv.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from edgeiqa import distributed, metrics
from edgeiqa.accel import Accel
from edgeiqa.data.datasets import load_dataset, unlabelled_pool
from edgeiqa.data.records import Dataset
from edgeiqa.data.torchdata import ImageCache, TrainItem, ViewDataset, make_loader, scene_ids
from edgeiqa.budget import check_budget
from edgeiqa.distill.budget_fit import (count_registered, count_student, fit_by_input, pick_student, precheck_budget,
                                        prune_to_budget)
from edgeiqa.distill.rank_student import rank_pretrain_student
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import write_json_atomic
from edgeiqa.losses import LossBatch, check_loss_weights
from edgeiqa.metrics import eval_summary, val_key
from edgeiqa.outsafe import check_out_dir, mark_dir
from edgeiqa.profiles import Profile
from edgeiqa.provenance import package_versions
from edgeiqa.runpaths import to_run_path
from edgeiqa.students import create_student, get_student_entry, save_student
from edgeiqa.teachers.checks import require_teachers_dir, spec_paths
from edgeiqa.teachers.labelset import LabelSet, build_labelset
from edgeiqa.teachers.rank_head import RankSpec, ScorePhase
from edgeiqa.teachers.pipeline import (SELFTRAIN_DIR, build_ensemble, score_ladders_with_ensemble, select_members, self_train,
                                       teacher_config, train_members)
from edgeiqa.training import TrainConfig, Trainer

def distill_config(profile: Profile, epochs: int | None = None) -> TrainConfig:
    d = profile["distill"]
    return TrainConfig(epochs=int(epochs or d.get("epochs", 8)), lr=float(d.get("lr", 1e-3)), batch_size=int(d.get("batch_size", 16)),
                       seed=int(profile.get("seed", 0)), losses=check_loss_weights(dict(d.get("losses", {"mse": 1.0}))))


@torch.no_grad()
def predict_student(model, paths: list[str], views, cache: ImageCache, batch_size: int = 16, accel=None) -> dict[str, float]:
    """Scores on the model's device (under `accel`'s autocast), returned as fp32 on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    autocast = accel.autocast() if accel is not None else contextlib.nullcontext()
    items = [TrainItem(p, 0.0, -1) for p in paths]
    ds = ViewDataset(items, views, cache, train=False)
    out = {}
    for k, (x, *_rest) in enumerate(make_loader(ds, batch_size, train=False)):
        with autocast:
            scores = model(*[v.to(device) for v in x]).float().cpu().numpy()
        for it, s in zip(ds.items[k * batch_size : k * batch_size + len(scores)], scores):
            out[it.path] = float(s)
    return out


def ladder_phase(profile, cfg: TrainConfig, teachers_dir: Path, spec: RankSpec, progress: bool, accel) -> ScorePhase | None:
    """`[distill] ladder_epochs` after the student's ranking: its head learns the teacher ensemble's scores of the
    ranking ladders, with the distillation losses less `feature` (no teacher opinions are kept for ladder images;
    mse alone if nothing else is left). None when 0."""
    epochs = int(profile["distill"].get("ladder_epochs", 0))
    if epochs <= 0:
        return None
    losses = {k: v for k, v in cfg.losses.items() if k != "feature"} or {"mse": 1.0}
    return ScorePhase(epochs, losses, lambda bases: score_ladders_with_ensemble(teachers_dir, bases, spec, cfg.seed,
                                                                                progress=progress, accel=accel))


def build_items(dataset: Dataset, labels: LabelSet, pseudo_weight: float,
                use_pool: bool) -> tuple[list[TrainItem], torch.Tensor, int]:
    """Ground-truth train images + pseudo-labelled images (pool split, or unlabelled ones), with feature rows, and
    how many are pseudo-labelled (counted as chosen: at pseudo_weight 1.0 the weights cannot tell them apart)."""
    row_of = {r["image"]: k for k, r in enumerate(labels.rows)}
    pseudo = labels.score_of()
    pool = {id(r) for r in unlabelled_pool(dataset.records)} if use_pool else set()
    chosen = []
    for r in dataset.records:
        p = str(r.path)
        if r.split == "train" and r.score is not None:
            chosen.append((r, float(r.score), 1.0))
        elif id(r) in pool and p in pseudo:
            chosen.append((r, pseudo[p], pseudo_weight))
    ids = scene_ids([r.scene for r, _, _ in chosen])
    items = [TrainItem(str(r.path), s, sid, w, row_of.get(str(r.path), -1)) for (r, s, w), sid in zip(chosen, ids)]
    return items, labels.features["ensemble"], sum(1 for r, _, _ in chosen if id(r) in pool)


def train_student(model, items, feats, views, dataset, cfg: TrainConfig, out_dir: Path, cache: ImageCache,
                  resume: bool, progress: bool, accel: Accel | None = None, workers: int = 0) -> dict:
    accel = accel or Accel(torch.device("cpu"))
    feats = feats.to(accel.device)
    val = [r for r in dataset.records if r.split == "val" and r.score is not None]
    val_paths = sorted({str(r.path) for r in val})

    def step(m, batch) -> LossBatch:
        x, target, scene, weight, feat_row = batch
        pred, proj = m.forward_train(*x)
        mask = feat_row >= 0
        feat = feats[feat_row.clamp_min(0)]
        return LossBatch(pred, target, scene, weight, proj=proj, feat=feat, feat_mask=mask)

    def eval_fn(m):
        pred = predict_student(m, val_paths, views, cache, accel=accel)
        s = eval_summary(pred, val)
        return {"val": round(val_key(s), 5), "val_srcc_scene_median": s.get("srcc_scene_median")}

    ds = ViewDataset(items, views, cache, train=True, seed=cfg.seed)
    loader = make_loader(ds, cfg.batch_size, train=True, seed=cfg.seed, workers=workers,
                         pin_memory=accel.device.type == "cuda")
    trainer = Trainer(model, step, eval_fn if val else None, out_dir / "ckpt", cfg, desc="student", accel=accel)
    return trainer.fit(loader, resume=resume, progress=progress)


def scatter_plot(path: Path, gt, student, teacher, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), dpi=100)
    for ax, pred, name in ((axes[0], student, "student"), (axes[1], teacher, "teacher ensemble")):
        ax.scatter(gt, pred, s=8, alpha=0.6)
        ax.set_xlabel("ground truth")
        ax.set_ylabel(f"{name} score")
        ax.set_title(f"{name}: SRCC {metrics.srcc(pred, gt) or 0:.3f}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def check_outputs(out: Path, teachers_dir: Path | None, inputs: list[Path]) -> None:
    """OUT is new or an edgeiqa run folder; an explicit --teachers is an existing teachers folder, not OUT itself."""
    check_out_dir(out, "run", inputs=inputs)
    if teachers_dir is not None:
        if Path(os.path.abspath(teachers_dir)) == Path(os.path.abspath(out)):
            raise EdgeIQAError(f"--teachers {teachers_dir} is the run folder --out itself; name OUT/teachers or leave "
                               f"--teachers out")
        require_teachers_dir(teachers_dir)
        if not os.access(teachers_dir, os.W_OK | os.X_OK):  # members are (re)trained into it when settings differ
            raise EdgeIQAError(f"--teachers {teachers_dir}: folder is not writable")


def run_distill(profile: Profile, *, teacher: str = "ensemble", budget: float | None = None, student: str | None = None,
                data: str | None = None, unlabeled: str | None = None, out: Path = Path("student"), resume: bool = False,
                fit: str | None = None, epochs: int | None = None, teachers_dir: Path | None = None,
                pretrained: bool = False, progress: bool = True, log=print, accel: Accel | None = None,
                workers: int = 0) -> dict | None:
    """The main job. Under torchrun, every rank trains the teachers under DDP, labels its slice of the images
    and trains the student under DDP, and rank 0 alone evaluates and writes; the other ranks return None."""
    t_start = time.time()
    accel = accel or Accel(torch.device("cpu"))
    dist = distributed.current()
    progress = progress and dist.is_main
    if not dist.is_main:
        log = lambda m: None  # noqa: E731 - one log, from rank 0
    timings = {}
    out = Path(out)
    # Every setting is checked before any work: nothing is written when one is wrong, and the refusal is the one
    # line on stderr (log lines of the selection are held back until every check passed).
    if budget is not None and not budget > 0:
        raise EdgeIQAError(f"--budget must be > 0 GMACs, got {budget}")
    if epochs is not None and epochs < 1:
        raise EdgeIQAError(f"--epochs must be >= 1, got {epochs}")
    budget = float(budget if budget is not None else profile.get("budget_gmacs", 50.0))
    views = profile.student_views
    student_name = student or profile["student"].get("name", "auto")
    data = data or profile.get("data", "sample")
    check_outputs(out, teachers_dir, [*spec_paths(data), *spec_paths(unlabeled, "--unlabeled")])
    if student_name != "auto":
        get_student_entry(student_name)
    notes = []
    # Offline, `--teacher ensemble` leaves out members that would be random-init (they cannot learn).
    names, left_out = select_members(teacher, profile, pretrained=pretrained, log=notes.append)
    cfg = distill_config(profile, epochs)

    # Budget first: an impossible request fails in seconds, before any training.
    t0 = time.time()
    precheck_budget(student_name, views, budget, fit, hidden=int(profile["student"].get("hidden", 256)))
    # Without --fit, `auto` picks the most capable student that fits; with --fit, the most capable one,
    # then shrinks its input or prunes it until it fits.
    student_name = pick_student(student_name, views, float("inf") if fit else budget, log)
    probe = count_registered(student_name, views, budget)
    if fit == "input" and probe.total_gmacs > budget:
        views = fit_by_input(student_name, views, budget, log)
    elif fit is None:
        check_budget(probe, budget)
    timings["budget_check_s"] = round(time.time() - t0, 1)

    # After the budget: the embedded sample set is built (minutes, once) the first time it is loaded.
    dataset = load_dataset(data)
    if unlabeled:
        extra = [replace(r, score=None, split="pool") for r in load_dataset(unlabeled).records]
        dataset = Dataset(dataset.spec, dataset.records + extra, dataset.info)
    for note in notes:
        log(note)
    if dist.is_main:
        mark_dir(out, "run")  # work starts: edgeiqa owns OUT (a rerun or --resume may write here)

    # 2. Teachers (trained under DDP by every rank; rank 0 writes, the others read what it wrote)
    t0 = time.time()
    tdir = Path(teachers_dir) if teachers_dir else out / "teachers"
    tcfg = teacher_config(profile)
    results = train_members(names, dataset, tdir, tcfg, pretrained=pretrained, progress=progress, log=log,
                            accel=accel, workers=workers)
    if dist.is_main:
        _, tcard = build_ensemble(results, dataset, tdir, left_out=left_out)
    distributed.barrier("fitting the teacher ensemble")
    self_report = None
    if profile["teacher"].get("self_train"):
        # Efficient-FIQA: the teachers retrain once on their own pseudo-labels of the pool; that ensemble labels.
        self_report = self_train(names, dataset, unlabelled_pool(dataset.records), tdir, tcfg,
                                 pseudo_weight=float(profile["distill"].get("pseudo_weight", 0.5)), pretrained=pretrained,
                                 progress=progress, log=log, accel=accel, workers=workers) or None
        tdir = tdir / SELFTRAIN_DIR
    if not dist.is_main or self_report is not None:
        tcard = json.loads((tdir / "card.json").read_text())
    timings["teachers_s"] = round(time.time() - t0, 1)

    # 3. LabelSet of every image (each rank labels a slice)
    t0 = time.time()
    labels = LabelSet(build_labelset(tdir, dataset, out / "labels", progress=progress, log=log, accel=accel))
    timings["labelset_s"] = round(time.time() - t0, 1)

    # 4. Student
    feat_dim = labels.features["ensemble"].shape[1]
    torch.manual_seed(cfg.seed)
    model = create_student(student_name, views, hidden=int(profile["student"].get("hidden", 256)), feature_dim=feat_dim,
                           pretrained=pretrained)
    model.freeze_early(int(profile["student"].get("freeze_blocks", 0)))
    model.to(memory_format=torch.channels_last)
    if fit == "prune":
        model, _ = prune_to_budget(model, views, budget, log)
    report = check_budget(count_student(model, views, budget, student_name), budget)
    rank_info = None
    rank_spec = RankSpec(int(profile["distill"].get("rank_epochs", 0)), tcfg.rank_photos, tuple(tcfg.rank_levels),
                         copies=tuple(tcfg.rank_copies))
    if rank_spec.epochs > 0:  # the teachers' ladders (same photos and levels), the student's own features
        t0 = time.time()
        then = ladder_phase(profile, cfg, tdir, rank_spec, progress, accel)
        rank_info = rank_pretrain_student(model, views, student_name, dataset, rank_spec, seed=cfg.seed, out_dir=out,
                                          progress=progress, log=log, accel=accel, then=then)
        timings["student_rank_s"] = round(time.time() - t0, 1)
        log(f"student {student_name}: head ranking pre-training on {rank_info['images']} synthetic images, pair accuracy "
            f"{rank_info['pair_accuracy_before']:.3f} -> {rank_info['pair_accuracy_after']:.3f}")
        if "ladder_scores" in rank_info:
            lad = rank_info["ladder_scores"]
            log(f"student {student_name}: {lad['epochs']} epochs on the teachers' scores of those images, SRCC with them "
                f"{lad['srcc_before']:.3f} -> {lad['srcc_after']:.3f}")
    pseudo_weight = float(profile["distill"].get("pseudo_weight", 0.5))
    # pseudo_weight 0: the pool is left out of training, not carried through it at zero weight
    items, feats, n_pseudo = build_items(dataset, labels, pseudo_weight, use_pool=pseudo_weight > 0)
    log(f"student {student_name}: {report.total_gmacs:.3f} GMACs (budget {budget}); training on {len(items) - n_pseudo} "
        f"labelled + {n_pseudo} pseudo-labelled images, losses {cfg.losses}")
    cache = ImageCache()
    t0 = time.time()
    state = train_student(model, items, feats, views, dataset, cfg, out, cache, resume, progress, accel, workers)
    timings["student_s"] = round(time.time() - t0, 1)
    if not dist.is_main:
        return None

    # 5. Evaluate student and teacher on test scenes (and val)
    teacher_score = labels.score_of()
    paths = sorted({str(r.path) for r in dataset.records if r.split in ("val", "test")})
    student_score = predict_student(model, paths, views, cache, accel=accel)
    test = [r for r in dataset.records if r.split == "test"]
    val = [r for r in dataset.records if r.split == "val"]
    s_test, t_test = eval_summary(student_score, test), eval_summary(teacher_score, test)
    teacher_gmacs = tcard["gmacs"]["total"]

    deploy = copy.deepcopy(model).cpu().drop_training_heads()
    meta = {"profile": profile["name"], "gmacs": round(report.total_gmacs, 4), "logistic": None, "budget_gmacs": budget,
            "score_range": labels.manifest.get("score_range"), "seed": cfg.seed, "weights_source": model.weights_source}
    save_student(deploy, out / "student.pt", views, meta)

    with open(out / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "split", "scene", "kind", "gt_score", "student", "teacher"])
        for r in test + val:
            p = str(r.path)
            w.writerow([p, r.split, r.scene or "", r.kind or "", r.score, f"{student_score.get(p, float('nan')):.6f}",
                        f"{teacher_score.get(p, float('nan')):.6f}"])
    rows = [r for r in test if str(r.path) in student_score and str(r.path) in teacher_score]
    scatter_plot(out / "scatter.png", [r.score for r in rows], [student_score[str(r.path)] for r in rows],
                 [teacher_score[str(r.path)] for r in rows], f"{student_name} vs teacher ensemble, test scenes")

    kept = {}  # the student's share of the teacher's SRCC: per-scene mean (scene datasets) and global
    for key in ("srcc_scene_mean", "srcc"):
        if s_test.get(key) is not None and t_test.get(key):
            kept[key] = round(s_test[key] / t_test[key], 4)
    card = {
        "format": "edgeiqa-card/1",
        "profile": profile["name"],
        "profile_source": profile.source,
        "dataset": dataset.spec,
        "splits": dataset.splits,
        "val_from": dataset.info.get("val_from", "the dataset's own split"),
        "labels_from": dataset.info.get("labels_from", "every train label"),
        "views": [v.to_dict() for v in views],
        "input": {v.name: list(v.size) for v in views},
        "budget_gmacs": budget,
        "student": {"name": student_name, "weights_source": model.weights_source, "gmacs": round(report.total_gmacs, 4),
                    "gmacs_per_view": report.views, "params_m": round(report.params_m, 3),
                    "cross_check_gmacs": report.cross_check_gmacs, **s_test, "val": eval_summary(student_score, val),
                    "checkpoint": "student.pt", "rank_pretrain": rank_info},
        "teacher": {"members": names, "weights": tcard["weights"], "weights_fitted_on": tcard["weights_fitted_on"],
                    "not_run": tcard.get("not_run", []), "left_out": tcard.get("left_out", []),
                    "gmacs": teacher_gmacs, "gmacs_members": tcard["gmacs"]["members"], **t_test,
                    "members_table": tcard.get("table"),
                    "val": eval_summary(teacher_score, val), "members_metrics": tcard["metrics"], "dir": to_run_path(tdir, out),
                    "self_train": self_report},
        "ratios": {"gmacs_student_over_teacher": round(report.total_gmacs / teacher_gmacs, 4) if teacher_gmacs else None,
                   "srcc_scene_mean_kept": kept.get("srcc_scene_mean"), "srcc_kept": kept.get("srcc")},
        "labelset": {"dir": "labels", "n_images": labels.manifest["n_images"], "skipped": labels.manifest["skipped"],
                     "features": labels.manifest["features"]},
        "training": {"config": asdict(cfg), "n_labelled": len(items) - n_pseudo, "n_pseudo": n_pseudo,
                     "history": state["history"]},
        "seconds": {**timings, "total_s": round(time.time() - t_start, 1)},
        "compute": {**accel.describe(), "world_size": dist.world_size, "workers": workers},
        "versions": package_versions(),
    }
    write_json_atomic(out / "card.json", card)
    return card
