"""Images/s of teacher labelling and of student training at 1 and 2 processes (CPU, gloo), and on a GPU at
fp32 / bf16 when one is present.

    python benchmarks/scale.py [--images 96] [--out runs/bench-scale] [--quick]

Labelling: `edgeiqa teachers label` of a folder of sample-set images with a trained EfficientNet-Lite2 teacher
(the default ensemble's main member), as one process at 1 thread and under `torchrun --nproc-per-node 2` at 1
thread each (target: 2 processes >= 1.8x the images/s of 1). The rate counts the labelling itself as the LabelSet
manifest's `timing` records it: the slowest rank's time to score its slice, with building the teacher (timm model,
weights) timed apart (`build_s`) and process start-up, rendezvous and the merge excluded (`phase_s` and `wall_s`
hold those).
Training: one epoch of the sample profile's student (EfficientNet-Lite0, its views) through `distill`'s
Trainer, 1 process vs 2 DDP processes with the same global batch; images/s = images / epoch seconds.
Writes benchmarks/results/scale.json (and OUT/scale.json). Run it on an idle machine: timings taken while
other jobs share the cores are not comparable.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _launch(nproc: int) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m"]


def _run(cmd: list[str], threads: int = 1) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return time.time() - t0


def prepare(out: Path, n_images: int) -> tuple[Path, Path]:
    """A trained lite2_mv teacher (head on frozen features, few epochs) and a folder of images it never saw."""
    from edgeiqa.data.sample import build_sample

    labels = Path(build_sample(progress=False))
    rows = list(csv.DictReader(open(labels, newline="")))
    pool = out / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    for k, r in enumerate(r for r in rows if r["split"] in ("pool", "test")):
        if k == n_images:
            break
        shutil.copy(labels.parent / r["image"], pool / f"{k:05d}{Path(r['image']).suffix}")
    # The teacher only has to exist: train its head on two training photos and one validation photo.
    photos = {split: sorted({r["photo"] for r in rows if r["split"] == split}) for split in ("train", "val")}
    keep = set(photos["train"][:2] + photos["val"][:1])
    subset = out / "teacher_train.csv"
    with open(subset, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "score", "scene", "split", "kind"])
        for r in rows:
            if r["photo"] in keep:
                w.writerow([labels.parent / r["image"], r["score"], r["scene"], r["split"], r["kind"]])
    teachers = out / "teachers"
    _run(_launch(1) + ["edgeiqa", "teachers", "train", "--teacher", "lite2_mv", "--data", f"csv:{subset}", "--epochs", "3",
                       "--out", str(teachers), "--quiet", "--device", "cpu"], threads=2)
    return teachers, pool


def bench_label(teachers: Path, pool: Path, out: Path, nproc: int, device: str = "cpu", precision: str = "fp32") -> dict:
    dest = out / f"labels-{device}-{precision}-{nproc}"
    shutil.rmtree(dest, ignore_errors=True)
    wall = _run(_launch(nproc) + ["edgeiqa", "teachers", "label", "--teachers", str(teachers), "--data", f"folder:{pool}",
                                  "--out", str(dest), "--quiet", "--device", device, "--precision", precision])
    manifest = json.loads((dest / "manifest.json").read_text())
    n = manifest["n_images"] + len(manifest["skipped"])
    timing = manifest["timing"]
    return {"processes": nproc, "threads_per_process": 1, "device": device, "precision": precision, "images": n,
            "labelling_s": timing["label_s"], "build_s": timing["build_s"], "phase_s": manifest["seconds"],
            "wall_s": round(wall, 2), "images_per_s": round(n / timing["label_s"], 3)}


TRAIN_SCRIPT = r"""
import json, os, sys, time, torch
from edgeiqa import distributed
from edgeiqa.accel import resolve_accel
from edgeiqa.data.datasets import load_dataset
from edgeiqa.data.torchdata import ImageCache, TrainItem, ViewDataset, make_loader, scene_ids
from edgeiqa.losses import LossBatch
from edgeiqa.profiles import load_profile
from edgeiqa.students import create_student
from edgeiqa.training import TrainConfig, Trainer

device, precision, n_images, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
accel = resolve_accel(device, precision)
dist = distributed.init_from_env(accel.device)
profile = load_profile("sample")
views = profile.student_views
recs = [r for r in load_dataset("sample").records if r.split == "train"][:n_images]
ids = scene_ids([r.scene for r in recs])
items = [TrainItem(str(r.path), float(r.score), s) for r, s in zip(recs, ids)]
torch.manual_seed(0)
model = create_student("efficientnet_lite0", views, feature_dim=8).to(memory_format=torch.channels_last)
cfg = TrainConfig(epochs=1, batch_size=16, losses={"mse": 1.0, "plcc": 0.5})
cache = ImageCache(); cache.preload([it.path for it in items], progress=False)
loader = make_loader(ViewDataset(items, views, cache, train=True), cfg.batch_size, train=True)
step = lambda m, b: LossBatch(m.forward_train(*b[0])[0], b[1], b[2], b[3])
state = Trainer(model, step, None, out, cfg, accel=accel).fit(loader, progress=False)
if dist.is_main:
    print(json.dumps({"images": len(items), "epoch_s": state["history"][0]["seconds"]}))
distributed.shutdown()
"""


def bench_train(out: Path, nproc: int, n_images: int, device: str = "cpu", precision: str = "fp32") -> dict:
    script = out / "train_epoch.py"
    script.write_text(TRAIN_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ([sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                f"--nproc-per-node={nproc}"])
    proc = subprocess.run(cmd + [str(script), device, precision, str(n_images), str(out / f"ckpt-{device}-{precision}-{nproc}")],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"training benchmark failed:\n{proc.stderr[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"processes": nproc, "threads_per_process": 1, "device": device, "precision": precision, **r,
            "images_per_s": round(r["images"] / r["epoch_s"], 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=96, help="images to label (default 96)")
    ap.add_argument("--train-images", type=int, default=128, help="training images for the epoch timing (default 128)")
    ap.add_argument("--out", default="runs/bench-scale")
    ap.add_argument("--quick", action="store_true", help="smoke run: 16 images each")
    ap.add_argument("--machine", default="2 CPU cores, no GPU", help="machine state recorded in the results (say if it was idle)")
    args = ap.parse_args()
    if args.quick:
        args.images, args.train_images = 16, 32
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not (out / "scale.json").exists():
        # Only a folder this script made (it holds scale.json) is replaced: never wipe a user's folder.
        print(f"scale.py: --out {out} exists and was not made by this benchmark; choose another folder", file=sys.stderr)
        return 2
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    import torch

    t0 = time.time()
    teachers, pool = prepare(out, args.images)
    label = [bench_label(teachers, pool, out, n) for n in (1, 2)]
    train = [bench_train(out, n, args.train_images) for n in (1, 2)]
    gpu = "not available on this machine"
    if torch.cuda.is_available():
        gpu = {"name": torch.cuda.get_device_name(0),
               "label": [bench_label(teachers, pool, out, 1, "cuda", p) for p in ("fp32", "bf16")],
               "train": [bench_train(out, 1, args.train_images, "cuda", p) for p in ("fp32", "bf16")]}
    from edgeiqa.provenance import measured

    result = {
        **measured(ROOT, args.machine),
        "label": label, "train": train,
        "label_speedup_2_over_1": round(label[1]["images_per_s"] / label[0]["images_per_s"], 3),
        "train_speedup_2_over_1": round(train[1]["images_per_s"] / train[0]["images_per_s"], 3),
        "target": "2 processes at 1 thread each label >= 1.8x the images/s of one process at 1 thread",
        "gpu": gpu, "quick": args.quick, "seconds": round(time.time() - t0, 1),
        "platform": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
    }
    result["target_met"] = result["label_speedup_2_over_1"] >= 1.8
    from edgeiqa.fileio import write_json_atomic

    write_json_atomic(out / "scale.json", result)
    if not args.quick:
        write_json_atomic(ROOT / "benchmarks" / "results" / "scale.json", result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
