"""The LabelSet: what the teachers say about a set of images, cached on disk.

A LabelSet directory holds
- `scores.csv`: one row per image that could be scored: image, split, scene, kind, ground truth (if any),
  every active member's raw and calibrated score, the ensemble's raw and calibrated score;
- `features.safetensors`: opinion features, row-aligned with scores.csv: `ensemble` (members' features,
  each L2-normalised and scaled by sqrt(weight), concatenated) and one tensor per active member;
Members with weight 0 are not run at all (`manifest.json` lists them under `not_run`).
- `manifest.json`: teachers, checkpoint hashes, views, weights, calibration, dataset spec, feature shapes,
  skipped images with their reason, package versions, and `inputs_hash`.

It is written into a temporary folder and renamed into place (edgeiqa.fileio.atomic_path), so a killed run
leaves nothing half written; a second run with the same inputs (same images, same checkpoints) reuses it,
after checking its data files against the SHA-256 hashes in the manifest: a corrupt or truncated file is
named and the LabelSet rebuilt.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from edgeiqa import distributed, metrics
from edgeiqa.data.records import Dataset
from edgeiqa.data.torchdata import ImageCache
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path
from edgeiqa.provenance import package_versions, sha256_file
from edgeiqa.teachers.ensemble import ENSEMBLE_FILE, Ensemble
from edgeiqa.teachers.shards import predict_sharded
from edgeiqa.teachers.train import load_member, unique_paths

LABELSET_FORMAT = "edgeiqa-labelset/1"


def inputs_hash(teachers_dir: Path, ens: Ensemble, dataset: Dataset) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(ens.__dict__, sort_keys=True).encode())
    for name in ens.active:  # weight-0 members are never read
        h.update(sha256_file(teachers_dir / name / "teacher.pt").encode())
    for p in unique_paths(dataset):
        st = os.stat(p) if os.path.exists(p) else None
        h.update(f"{p}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}".encode())
    return h.hexdigest()


def _member_outputs(teachers_dir: Path, name: str, paths: list[str], cache: ImageCache, progress: bool,
                    work: Path, accel=None, timings: dict | None = None):
    """A member's scores/opinions for `paths`: from its stored predictions when they cover them, else recomputed
    (split across the ranks of a torchrun job; slices kept in `work` until the LabelSet is written)."""
    member = load_member(teachers_dir / name)
    index = {p: i for i, p in enumerate(member.paths)}
    if all(p in index for p in paths):
        rows = [index[p] for p in paths]
        failed = {p: member.failed[p] for p in paths if p in member.failed}
        return member.scores[rows], member.opinions[rows], failed
    return predict_sharded(teachers_dir / name, paths, cache, work, accel=accel, progress=progress, timings=timings)


DATA_FILES = ("scores.csv", "features.safetensors")  # hashed in the manifest, checked before every reuse


def damaged_file(root: Path, manifest: dict) -> str | None:
    """The first data file of a LabelSet that is missing or does not match its manifest hash, else None.

    LabelSets written before the hashes were recorded get a load check of their features instead."""
    hashes = manifest.get("files")
    for name in DATA_FILES:
        path = Path(root) / name
        if not path.is_file():
            return name
        if hashes and sha256_file(path) != hashes.get(name):
            return name
    if not hashes:
        try:
            load_file(str(Path(root) / "features.safetensors"))
        except Exception:  # safetensors raises its own error types for a truncated header or body
            return "features.safetensors"
    return None


def build_labelset(teachers_dir: Path, dataset: Dataset, out: Path, *, progress: bool = True, reuse: bool = True,
                   log=None, accel=None, _after_member=None) -> Path:
    """Write (or reuse) the LabelSet of `dataset` in `out`. Under torchrun every rank labels its slice of the
    images and rank 0 writes the LabelSet; every rank returns once it is in place."""
    teachers_dir, out = Path(teachers_dir), Path(out)
    log = log or (lambda msg: None)
    ens = Ensemble.load(teachers_dir / ENSEMBLE_FILE)
    digest = inputs_hash(teachers_dir, ens, dataset)
    manifest_path = out / "manifest.json"
    if reuse and manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            manifest = {}
            log(f"LabelSet {out}: manifest.json is corrupt; rebuilding")
        if manifest.get("inputs_hash") == digest:
            bad = damaged_file(out, manifest)
            if bad is None:
                return out
            log(f"LabelSet {out}: {bad} is corrupt or truncated (does not match manifest.json); rebuilding")
    t0 = time.time()
    work = out.parent / f".{out.name}.shards-{digest[:16]}"
    # The slices are for resuming a killed job (Ctrl-C, SIGTERM, SIGKILL, a dead torchrun peer's interrupt): a rerun
    # with the same inputs labels only the missing ones. Any other failure (an error, a full disk) removes them:
    # its cause is fixed before a rerun, and no stray hidden folder is left beside --out.
    try:
        labelled = _label(teachers_dir, ens, dataset, progress, _after_member, work, accel)
        if distributed.current().is_main:  # rank 0 alone writes
            # Written into a temporary folder renamed into place: a killed or failed run leaves no half-written LabelSet.
            with atomic_path(out, kind="labelset") as tmp:
                _write(teachers_dir, ens, dataset, tmp, digest, labelled, accel, t0)
            shutil.rmtree(work, ignore_errors=True)
    except Exception:
        shutil.rmtree(work, ignore_errors=True)
        raise
    distributed.barrier("writing the LabelSet")
    return out


def _label(teachers_dir: Path, ens: Ensemble, dataset: Dataset, progress: bool, _after_member, work: Path, accel):
    """Every active member's raw scores, opinions and failures for the dataset's images (each rank computes its
    slice). Members with weight 0 are not run: they add nothing to the ensemble's score or features."""
    paths = unique_paths(dataset)
    cache = ImageCache()
    raw, opinions, failed, timing = {}, {}, {}, {}
    for name in ens.active:
        timing[name] = {}
        raw[name], opinions[name], f = _member_outputs(teachers_dir, name, paths, cache, progress, work, accel,
                                                       timing[name])
        failed.update(f)
        if _after_member is not None:  # test hook: simulate a kill between members
            _after_member(name)
    return paths, raw, opinions, failed, timing


def _write(teachers_dir: Path, ens: Ensemble, dataset: Dataset, tmp: Path, digest: str, labelled, accel, t0: float) -> None:
    paths, raw, opinions, failed, timing = labelled
    ok = np.all(np.stack([np.isfinite(raw[n]) for n in ens.active]), axis=0)
    for p, good in zip(paths, ok):
        if not good and p not in failed:
            failed[p] = "not scored by every teacher"
    keep = np.flatnonzero(ok)
    kept_paths = [paths[i] for i in keep]
    member_scores = {n: raw[n][keep] for n in ens.active}
    ens_raw = ens.raw(member_scores)
    ens_cal = metrics.logistic4(ens_raw, ens.calibration)
    rec_of = {}
    for r in dataset.records:
        rec_of.setdefault(str(r.path), r)

    tmp.mkdir(parents=True)
    with open(tmp / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        cols = ["image", "split", "scene", "kind", "gt_score", "ensemble_raw", "ensemble"]
        for n in ens.active:
            cols += [f"{n}_raw", f"{n}_cal"]
        w.writerow(cols)
        for k, p in enumerate(kept_paths):
            r = rec_of[p]
            row = [p, r.split or "", r.scene or "", r.kind or "", "" if r.score is None else f"{r.score:.6f}",
                   f"{ens_raw[k]:.8f}", f"{ens_cal[k]:.8f}"]
            for n in ens.active:
                row += [f"{member_scores[n][k]:.8f}", f"{float(metrics.logistic4(member_scores[n][k:k+1], ens.member_calibration[n])[0]):.8f}"]
            w.writerow(row)
    tensors = {}
    parts = []
    for n in ens.active:
        o = torch.from_numpy(np.ascontiguousarray(opinions[n][keep])).float()
        tensors[f"member.{n}"] = o
        parts.append(torch.nn.functional.normalize(o, dim=1) * float(np.sqrt(ens.weights[n])))
    tensors["ensemble"] = torch.cat(parts, dim=1).contiguous()
    save_file(tensors, str(tmp / "features.safetensors"))
    manifest = {
        "format": LABELSET_FORMAT,
        "dataset": dataset.spec,
        "n_images": len(kept_paths),
        "teachers": [{"name": n, "weight": ens.weights[n], "checkpoint": str(teachers_dir / n / "teacher.pt"),
                      "sha256": sha256_file(teachers_dir / n / "teacher.pt"),
                      "views": json.loads((teachers_dir / n / "member.json").read_text()).get("views", [])} for n in ens.active],
        "not_run": ens.not_run,  # weight 0: not run, not in scores.csv or the features
        "left_out": ens.left_out,
        "weights_fitted_on": ens.weights_fitted_on,
        "calibration": ens.calibration,
        "features": {k: list(v.shape) for k, v in tensors.items()},
        "score_range": [float(ens_cal.min()), float(ens_cal.max())] if len(ens_cal) else None,
        "skipped": [{"image": p, "reason": failed[p]} for p in sorted(failed)],
        "inputs_hash": digest,
        "files": {name: sha256_file(tmp / name) for name in DATA_FILES},
        "device": accel.describe() if accel is not None else {"device": "cpu", "precision": "fp32"},
        "world_size": distributed.current().world_size,
        "versions": package_versions(),
        "seconds": round(time.time() - t0, 1),
        # The labelling itself (slowest rank, per member, summed) apart from building the teachers; members whose
        # stored predictions covered the images took no time.
        "timing": {"label_s": round(sum(t.get("label_s", 0.0) for t in timing.values()), 3),
                   "build_s": round(sum(t.get("build_s", 0.0) for t in timing.values()), 3), "members": timing},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))


class LabelSet:
    """A LabelSet read back: rows (dicts from scores.csv), features and manifest."""

    def __init__(self, root: Path):
        root = Path(root)
        if not (root / "manifest.json").exists():
            raise EdgeIQAError(f"{root} is not a LabelSet (manifest.json missing)")
        self.root = root
        self.manifest = json.loads((root / "manifest.json").read_text())
        bad = damaged_file(root, self.manifest)
        if bad is not None:
            raise EdgeIQAError(f"{root / bad}: missing, corrupt or truncated (does not match manifest.json); "
                               f"rebuild the LabelSet (`edgeiqa teachers label --force`, or distill rebuilds it)")
        with open(root / "scores.csv", newline="") as f:
            self.rows = list(csv.DictReader(f))
        self.features = load_file(str(root / "features.safetensors"))

    def score_of(self) -> dict[str, float]:
        return {r["image"]: float(r["ensemble"]) for r in self.rows}
