"""Leave-kinds-out benchmark: do the teachers know more than the student on artefacts nobody labelled?

    python benchmarks/generalise.py                 # full run (the docs/benchmarks.md table)
    python benchmarks/generalise.py --quick         # smoke run, about 5 min on 2 cores (fewer kinds/levels, 1 seed)

Time on a 2-core machine: images and features about 16 min the first time (cached per image under
$EDGEIQA_CACHE/generalise afterwards, also across --quick runs), then 40 fold x seed runs of heads (about 20 min).

Protocol
- Photos: the embedded sample set's wheel photos with their fixed splits (train / val / test / pool) plus
  eight more wheel photos in the unlabelled pool (EXTRA_POOL), each prepared as the sample set
  prepares them (longer side <= 512 px). Every photo is degraded by every kind of the degradation library
  (`edgeiqa data kinds`) at the ladder severities; one scene = photo x kind (the original + its ladder),
  score = 5 - 4 * severity / 6 as in the sample set.
- Folds: the library's 8 groups are held out two at a time (4 folds, so every group is held out once).
  In a fold, models learn from the train photos' *training-fold* kinds only (labels), select epochs and
  ensemble weights on the val photos' training-fold kinds only, and are scored on the test photos'
  *held-out* kinds only. The unlabelled pool (pool photos x every kind) is what a user's unlabelled
  photos are: its labels are never read; teachers pseudo-label it. Ranking pre-training (teachers' and
  student's heads) uses the pool's colour photos' ladders at training-fold kinds only, ordered by their known
  synthetic severity (the held-out artefacts are unknown to the recipe), and, as the product does
  (`[teacher] rank_copies`, edgeiqa/data/copies.py), the ladders of each colour pool photo's crop and downscaled
  copy (photos `name@crop`, `name@downscaled`: ranking bases only, not in the pseudo-labelled pool; the distilled
  students' heads learn the teachers' scores of all these ladders after ranking on them). Greyscale pool photos
  are passed over by the same rule as the product's (`rank_head.base_photos`): they still take part as
  pseudo-labelled images.
- Teacher ensembles are fitted by `fit_ensemble` exactly as `teachers train` fits them (val split,
  one-standard-error rule).
- Per-scene SRCC is pooled over all held-out scenes of all folds (each scene scored by the model of the
  fold that held it out); global SRCC and MAE are computed per fold (one model's scores) and averaged.
  Every number is the mean (and std) over 10 seeds; each row keeps its per-seed values
  (`srcc_scene_mean_per_seed`). One seed drives every model of a run (heads' init and batch order).

Compromises, made to fit about an hour on a 2-core CPU (say so wherever the numbers are quoted):
- Backbones are frozen and their features cached once for all folds and seeds (`$EDGEIQA_CACHE/generalise`):
  teachers and student are heads trained on multi-level (mean+std) features of their own backbone and
  views. The student row is therefore the deployed student's architecture and views with its backbone
  frozen; the real `distill` also fine-tunes the student's backbone (from block 2). Backbone fine-tuning
  and backbone ranking pre-training (`edgeiqa teachers pretrain`) are not measured here (GPU jobs; docs/benchmarks.md
  gives a CPU measurement of fine-tuning the small student's last two blocks, outside this table).
- No augmented views; short schedules (12 epochs on labels, after 20 epochs of ranking pre-training where used;
  32 scenes per batch);
  4 ladder levels (severities 1, 2, 4, 6) instead of 6; one evaluation view per image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from edgeiqa import losses, metrics
from edgeiqa.data import degradations  # noqa: F401  (registers the library's kinds)
from edgeiqa.data import distortions
from edgeiqa.data.copies import DEFAULT_COPIES, make_copy
from edgeiqa.data.degradations.groups import GROUPS, kinds_in_group
from edgeiqa.data.records import Dataset, ImageRecord
from edgeiqa.data.sample import PHOTOS, SEED, Photo, photo_source, prepare_photo, sample_root, score_for
from edgeiqa.data.torchdata import ImageCache
from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path, write_json_atomic
from edgeiqa.profiles import load_profile
from edgeiqa.teachers import create_teacher
from edgeiqa.teachers.counting import count_teacher
from edgeiqa.teachers.ensemble import _simplex, fit_ensemble
from edgeiqa.teachers.features import extract_features
from edgeiqa.teachers.model import IQAHead, IQATeacher
from edgeiqa.teachers.rank_head import is_greyscale
from edgeiqa.teachers.registry import TeacherEntry
from edgeiqa.teachers.train import MemberResult, val_key

FOLDS = (("blurs", "color"), ("compression", "noise"), ("brightness", "spatial"), ("sharpness_contrast", "camera"))
EXTRA_POOL = (
    Photo("gravel", "skimage", "data/gravel.png", "pool", False, "gravel texture, greyscale"),
    Photo("coins", "skimage", "data/coins.png", "pool", False, "coins, greyscale"),
    Photo("moon", "skimage", "data/moon.png", "pool", False, "moon surface, greyscale"),
    Photo("ihc", "skimage", "data/ihc.png", "pool", False, "stained tissue, microscope"),
    Photo("motorcycle_right", "skimage", "data/motorcycle_right.png", "pool", False, "stereo pair's other view"),
    Photo("retina", "skimage", "data/retina.jpg", "pool", False, "fundus photograph"),
    Photo("cell", "skimage", "data/cell.png", "pool", False, "cell, microscope, greyscale"),
    Photo("page", "skimage", "data/page.png", "pool", False, "scanned text page, greyscale"),
)
TEACHERS = ("lite2_mv", "lite0_mv")
STUDENT = "student_lite0"
# A student at <= 1/10 of the teacher ensemble's GMACs: the same backbone on one native-resolution fragments view.
SMALL_STUDENT = "student_lite0_small"
SMALL_VIEWS = (ViewSpec("fragments", (224, 224), 7),)
# rank_epochs 20: about as many steps (85 of 32 ladders: 5 colour pool photos x 27 training-fold kinds) as the sample
# profile's 20 epochs over its 144 ladders.
# 10 seeds: one run's heads swing by +-0.03 between seeds, and the recipe's choices were first made at seeds 0-2, where
# the teacher and the distilled students read 0.01-0.05 above other seeds (docs/benchmarks.md, leave-kinds-out).
FULL = {"levels": (1, 2, 4, 6), "kinds_per_group": None, "seeds": tuple(range(10)), "epochs": 12, "rank_epochs": 20}
QUICK = {"levels": (2, 4, 6), "kinds_per_group": 2, "seeds": (0,), "epochs": 8, "rank_epochs": 6}
HIDDEN = 256
GEN_VERSION = "generalise-v1"  # bump when photo preparation or a degradation changes: cached features are per image key
SCENES_PER_BATCH = 32
RANK_COPIES = tuple(c for c in DEFAULT_COPIES if c != "photo")  # built beside each colour pool photo's own ladders
TARGETS = {"teacher_scene_mean": 0.90, "student_vs_teacher": 0.97, "gmacs_ratio": 0.10, "distill_gain": 0.03}


@dataclass(frozen=True)
class Img:
    key: str
    photo: str
    split: str  # the photo's split
    kind: str  # "original" for the undistorted photo
    severity: int
    score: float


# ------------------------------------------------------------------------------------------------ images
def image_seed(photo: str, kind: str, severity: int) -> int:
    """One seed per degraded image (the sample set, since sample-v2, uses one per scene; this benchmark keeps the
    per-image seeds its published numbers and cached features were made with)."""
    digest = hashlib.sha256(f"{SEED}/{photo}/{kind}/{severity}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def library_kinds(per_group: int | None) -> list[str]:
    return [k for g in GROUPS for k in kinds_in_group(g)[:per_group]]


def build_images(kinds: list[str], levels, progress: bool) -> tuple[list[Img], ImageCache]:
    """Every photo's original and its degraded ladder, in memory (keys look like paths; nothing is written); and for
    each colour pool photo its other ranking copies (RANK_COPIES: photo `name@copy`, split "rank", used only as
    ranking bases)."""
    from tqdm import tqdm

    cache = ImageCache()
    imgs: list[Img] = []

    def add_ladder(name, split, base, bar):
        key = f"gen/{name}/original"
        cache.images[key] = base
        imgs.append(Img(key, name, split, "original", 0, score_for(0)))
        bar.update(1)
        for kind in kinds:
            for sev in levels:
                key = f"gen/{name}/{kind}_{sev}"
                rng = np.random.default_rng(image_seed(name, kind, sev))
                cache.images[key] = distortions.apply(base, kind, sev, rng)
                imgs.append(Img(key, name, split, kind, sev, score_for(sev)))
                bar.update(1)

    photos = list(PHOTOS) + list(EXTRA_POOL)
    with tqdm(total=len(photos) * (1 + len(kinds) * len(levels)), desc="degrading", unit="img", disable=not progress) as bar:
        for p in photos:
            base = prepare_photo(photo_source(p))
            add_ladder(p.name, p.split, base, bar)
            if p.split == "pool" and not is_greyscale(base):  # the product's copies of a colour ranking base
                for copy_name in RANK_COPIES:
                    bar.total += 1 + len(kinds) * len(levels)
                    rng = np.random.default_rng(image_seed(p.name, f"copy/{copy_name}", 0))
                    add_ladder(f"{p.name}@{copy_name}", "rank", make_copy(base, copy_name, rng), bar)
    return imgs, cache


# ---------------------------------------------------------------------------------------------- features
def student_model(views, name: str = STUDENT) -> IQATeacher:
    """The deployed student's backbone (EfficientNet-Lite0, shipped weights) at the given student views."""
    entry = TeacherEntry(name, None, "tf_efficientnet_lite0", tuple(views), encoder="multilevel")
    return IQATeacher(entry)


def cached_features(model: IQATeacher, imgs: list[Img], cache: ImageCache, progress: bool) -> torch.Tensor:
    """(N, F) frozen-backbone features of every image. Stored per image under $EDGEIQA_CACHE/generalise (one file
    per model, weights and views), so a --quick run's images are reused by the full run and reruns cost nothing."""
    sig = hashlib.sha256(json.dumps([GEN_VERSION, model.weights_source, [v.to_dict() for v in model.entry.views]]).encode())
    path = sample_root().parent / "generalise" / f"{model.entry.name}-{sig.hexdigest()[:12]}.pt"
    stored: dict[str, torch.Tensor] = torch.load(path, weights_only=True) if path.exists() else {}
    todo = [i.key for i in imgs if i.key not in stored]
    if todo:
        torch.manual_seed(0)
        feats = extract_features(model, todo, cache, batch_size=16, progress=progress, desc=f"{model.entry.name} features")
        if not bool(feats["ok"].all()):
            raise EdgeIQAError(f"{model.entry.name}: {int((~feats['ok']).sum())} images failed to give features")
        stored.update(zip(todo, feats["eval"].unbind(0)))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({k: v.clone() for k, v in stored.items()}, tmp)
    return torch.stack([stored[i.key] for i in imgs])


# ------------------------------------------------------------------------------------------------- heads
@dataclass
class Items:
    rows: np.ndarray  # feature rows
    target: np.ndarray
    scene: np.ndarray  # integer scene ids
    weight: np.ndarray


def make_items(imgs: list[Img], rows: list[int], target=None, weight: float = 1.0) -> Items:
    """Rows of `imgs` as training items; scene = photo x kind, the original joining every kind's scene."""
    out_rows, out_t, out_s = [], [], []
    scene_id: dict[str, int] = {}
    by_photo_kinds: dict[str, set] = {}
    for r in rows:
        if imgs[r].kind != "original":
            by_photo_kinds.setdefault(imgs[r].photo, set()).add(imgs[r].kind)
    for r in rows:
        im = imgs[r]
        kinds = sorted(by_photo_kinds.get(im.photo, ())) if im.kind == "original" else [im.kind]
        for k in kinds:
            out_rows.append(r)
            out_t.append(im.score if target is None else target[r])
            out_s.append(scene_id.setdefault(f"{im.photo}-{k}", len(scene_id)))
    return Items(np.array(out_rows), np.array(out_t, dtype=np.float32), np.array(out_s), np.full(len(out_rows), weight, np.float32))


def join(a: Items, b: Items) -> Items:
    off = a.scene.max() + 1 if a.scene.size else 0
    return Items(np.concatenate([a.rows, b.rows]), np.concatenate([a.target, b.target]), np.concatenate([a.scene, b.scene + off]),
                 np.concatenate([a.weight, b.weight]))


def _batches(items: Items, rng: np.random.Generator):
    scenes = rng.permutation(np.unique(items.scene))
    for k in range(0, len(scenes), SCENES_PER_BATCH):
        yield np.flatnonzero(np.isin(items.scene, scenes[k : k + SCENES_PER_BATCH]))


def _epoch(head, proj, opt, x, items, weights, rng, teacher_feat=None) -> None:
    head.train()
    for idx in _batches(items, rng):
        rows = torch.from_numpy(items.rows[idx])
        pred, opinion = head(x[rows])
        batch = losses.LossBatch(pred=pred, target=torch.from_numpy(items.target[idx]), scene=torch.from_numpy(items.scene[idx]),
                                 weight=torch.from_numpy(items.weight[idx]))
        if proj is not None and teacher_feat is not None:
            batch.proj, batch.feat = proj(opinion), teacher_feat[rows]
        loss, _ = losses.combined_loss(weights, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def _predict(head, x) -> tuple[np.ndarray, np.ndarray]:
    head.eval()
    s, o = head(x)
    return s.numpy().astype(np.float64), o.numpy()


def scene_matrix(imgs, rows) -> tuple[np.ndarray, np.ndarray]:
    """(scenes x images) feature rows and targets of `rows`' ladders; every ladder has the same length."""
    it = make_items(imgs, rows)
    order = np.argsort(it.scene, kind="stable")
    n = np.bincount(it.scene)
    if n.min() != n.max():
        raise EdgeIQAError("ladders of unequal length")
    return it.rows[order].reshape(len(n), -1), it.target[order].reshape(len(n), -1)


def val_score(val: tuple[np.ndarray, np.ndarray], scores: np.ndarray) -> float:
    """Model selection metric on val rows only: per-scene mean SRCC, vectorised over scenes (it runs every epoch;
    scipy's rankdata ranks, a row-wise Pearson of ranks is Spearman's rho)."""
    rows, target = val
    rp, rt = rankdata(scores[rows], axis=1), rankdata(target, axis=1)
    rp, rt = rp - rp.mean(1, keepdims=True), rt - rt.mean(1, keepdims=True)
    denom = np.sqrt((rp**2).sum(1) * (rt**2).sum(1))
    ok = denom > 0
    return float(((rp * rt).sum(1)[ok] / denom[ok]).mean()) if ok.any() else -1.0


def train_head(x, imgs, items: Items, val_rows, *, seed, epochs, weights, rank_items: Items | None = None, rank_epochs=0,
               ladder_items: Items | None = None, teacher_feat=None) -> tuple[np.ndarray, np.ndarray]:
    """Train an IQA head on cached features; keep the epoch with the best val score; (scores, opinions) for all rows.
    rank_items: ranking pre-training first (rank + fidelity, rank_epochs); ladder_items: then as many epochs on the
    teacher's scores of the same ladders (`weights` without the feature loss), as `[distill] ladder_epochs`."""
    torch.manual_seed(seed)
    head = IQAHead(x.shape[1], HIDDEN)
    proj = torch.nn.Linear(HIDDEN, teacher_feat.shape[1]) if teacher_feat is not None else None
    params = list(head.parameters()) + (list(proj.parameters()) if proj is not None else [])
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4, foreach=True)
    val = scene_matrix(imgs, val_rows)
    rng = np.random.default_rng(seed)
    for _ in range(rank_epochs if rank_items is not None else 0):
        _epoch(head, None, opt, x, rank_items, {"rank": 1.0, "fidelity": 1.0}, rng)
    for _ in range(rank_epochs if ladder_items is not None else 0):
        _epoch(head, None, opt, x, ladder_items, {k: v for k, v in weights.items() if k != "feature"}, rng)
    best, best_state = -2.0, None
    for _ in range(epochs):
        _epoch(head, proj, opt, x, items, weights, rng, teacher_feat)
        scores = np.zeros(x.shape[0])
        scores[val_rows] = _predict(head, x[val_rows])[0]
        v = val_score(val, scores)
        if v > best:
            best, best_state = v, {k: t.clone() for k, t in head.state_dict().items()}
    head.load_state_dict(best_state)
    return _predict(head, x)


# ------------------------------------------------------------------------------------------------- folds
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


# ----------------------------------------------------------------------------------------------- summary
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


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 kinds per group, 3 levels, 1 seed, short schedules")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default 10, --quick 1)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "generalise.json",
                    help="results JSON (default benchmarks/results/generalise.json; --quick writes generalise_quick.json)")
    ap.add_argument("--profile", default="sample", help="profile whose student views and loss weights are used (default sample)")
    ap.add_argument("--features-only", action="store_true", help="only build the images and fill the feature cache, then stop")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        ap.error("--seeds must be >= 1")
    if args.quick and args.out == ap.get_default("out"):
        args.out = args.out.with_name("generalise_quick.json")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.seeds is not None:
        cfg["seeds"] = tuple(range(args.seeds))
    try:
        profile = load_profile(args.profile)
    except EdgeIQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    kinds = library_kinds(cfg["kinds_per_group"])
    imgs, cache = build_images(kinds, cfg["levels"], progress=True)
    grey = {im.photo for im in imgs if im.kind == "original" and is_greyscale(cache.images[im.key])}
    models = {name: create_teacher(name) for name in TEACHERS}
    models[STUDENT] = student_model(profile.student_views)
    models[SMALL_STUDENT] = student_model(SMALL_VIEWS, SMALL_STUDENT)
    feats = {name: cached_features(m, imgs, cache, progress=True) for name, m in models.items()}
    del cache
    if args.features_only:
        print(f"features cached for {len(imgs)} images in {time.time() - t0:.0f} s", file=sys.stderr)
        return 0
    t_feats = time.time() - t0
    losses_t = dict(profile["teacher"]["losses"])
    losses_s = dict(profile["distill"]["losses"])
    per_seed, weights = [], []
    for seed in cfg["seeds"]:
        collected: dict[str, list] = {}
        for fi, held_groups in enumerate(FOLDS):
            held = {k for g in held_groups for k in kinds_in_group(g) if k in kinds}
            out = run_fold(imgs, feats, fold_rows(imgs, held, grey), seed, cfg, losses_t, losses_s, profile["distill"]["pseudo_weight"])
            weights.append({"seed": seed, "fold": fi, "held_out": list(held_groups), "weights": out.pop("_weights")})
            for row, res in out.items():
                collected.setdefault(row, []).append(res)
            print(f"seed {seed} fold {fi + 1}/{len(FOLDS)} (held out {', '.join(held_groups)}) done at {time.time() - t0:.0f} s",
                  file=sys.stderr)
        per_seed.append(collected)
    member_gmacs = {n: count_teacher(n, cross_check=False).total_gmacs for n in TEACHERS}
    from edgeiqa.budget import count_gmacs

    def student_gmacs(name):
        m = models[name].eval()
        return count_gmacs(m, tuple(torch.zeros(1, 3, *v.size) for v in m.entry.views), name=name, cross_check=False).total_gmacs

    variants = ("", "_no_ranking", "_photo_copy_only", "_greyscale_bases", "_self_trained")
    gmacs = {f"teacher_{n}{v}": g for n, g in member_gmacs.items() for v in variants}
    for v in variants:  # an ensemble's cost: its members with weight > 0, in the dearest fold
        gmacs[f"teacher_ensemble{v}"] = max(sum(member_gmacs[n] for n, w in x["weights"][v or "default"].items() if w > 0)
                                            for x in weights)
    gmacs["teacher_ensemble_val_argmax"] = sum(member_gmacs.values())  # its weights are not kept either
    for row in per_seed[0]:
        if row.startswith("student_"):
            gmacs[row] = student_gmacs(SMALL_STUDENT if row.startswith("student_small") else STUDENT)
    rows = [{**r, "gmacs": round(r["gmacs"], 3)} for r in summarise(per_seed, gmacs)]
    result = {
        "rows": rows,
        "targets": check_targets(rows),
        "ensemble_weights": weights,
        "protocol": {"folds": [list(f) for f in FOLDS], "kinds": kinds, "levels": list(cfg["levels"]), "seeds": list(cfg["seeds"]),
                     "epochs": cfg["epochs"], "rank_epochs": cfg["rank_epochs"], "teachers": list(TEACHERS),
                     "student_views": [v.to_dict() for v in profile.student_views], "n_images": len(imgs),
                     "photos": {p.name: p.split for p in list(PHOTOS) + list(EXTRA_POOL)}, "quick": args.quick,
                     "ranking_photos": sorted({im.photo for im in imgs if im.split == "pool" and im.photo not in grey}),
                     "ranking_copies": ["photo", *RANK_COPIES]},
        "seconds": {"images_and_features": round(t_feats, 1), "total": round(time.time() - t0, 1)},
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "command": "python benchmarks/generalise.py" + (" --quick" if args.quick else ""),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    print(markdown(rows))
    print(json.dumps(result["targets"], indent=1))
    print(f"wrote {args.out} in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
