"""Folder scoring speed of `edgeiqa score`: `python benchmarks/score_folder.py [--quick] [--out FILE]`.

Real images only: the wheel photos of the sample set (`edgeiqa.data.sample.PHOTOS`, files inside installed
packages) re-encoded as JPEGs at several sizes (flips and crops make each file distinct). Two students
(EfficientNet-Lite0, random init: speed does not depend on the weights) exported to ONNX fp32 and int8:
- `sample`: the sample profile's views (resize 288 + fragments 224/7): fragments need native pixels;
- `resize`: one resize 288 view, where large JPEGs are decoded at a reduced DCT scale (`Image.draft`).

Measured, side by side in one run (the machine may be shared, so compare ratios, not absolute rates):
1. the full set (>= 1000 files, 640 px to 4K) scored end to end with `edgeiqa score` (all cores, batch 8);
2. on 512 px JPEGs: model-only images/s (pre-built batches, like `edgeiqa bench`) vs end to end with
   1 worker vs all cores, batch 1 vs 8, fp32 vs int8;
3. on 4K / 12 MP JPEGs: the resize model with reduced decoding vs --full-decode, and the time split of
   decode / views / model (one thread, serial) for both models.
Writes a JSON (default benchmarks/results/score_folder.json). Not a test: minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = {640: 0.4, 1280: 0.3, 1920: 0.2, 3840: 0.1}  # long side -> share of the mixed set


def make_images(dest: Path, n: int, sizes: dict[int, float], seed: int = 0) -> list[Path]:
    from PIL import Image

    from edgeiqa.data.sample import PHOTOS, photo_source

    rng = np.random.default_rng(seed)
    srcs = [Image.open(photo_source(p)).convert("RGB") for p in PHOTOS]
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    plan = [s for s, share in sizes.items() for _ in range(int(round(n * share)))]
    for i, side in enumerate(plan):
        im = srcs[i % len(srcs)]
        w, h = im.size
        # A random crop of 70-100 % (a distinct file each time), flipped half the time, then the target size.
        f = rng.uniform(0.7, 1.0)
        cw, ch = int(w * f), int(h * f)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        c = im.crop((x, y, x + cw, y + ch))
        if i % 2:
            c = c.transpose(Image.FLIP_LEFT_RIGHT)
        scale = side / max(cw, ch)
        c = c.resize((max(16, int(cw * scale)), max(16, int(ch * scale))), Image.BICUBIC)
        p = dest / f"{side}" / f"img{i:05d}.jpg"
        p.parent.mkdir(exist_ok=True)
        c.save(p, quality=int(rng.integers(80, 95)))
        out.append(p)
    return out


def make_models(dest: Path, calib: list[Path], imgs: int) -> dict:
    import torch

    from edgeiqa.data.views import ViewSpec
    from edgeiqa.export import export_model
    from edgeiqa.students import create_student, save_student

    torch.manual_seed(0)
    models = {}
    for name, views in (("sample", [ViewSpec("resize", (288, 288)), ViewSpec("fragments", (224, 224), grid=7)]),
                        ("resize", [ViewSpec("resize", (288, 288))])):
        run = dest / name
        run.mkdir(parents=True)
        model = create_student("efficientnet_lite0", views).drop_training_heads().eval()
        save_student(model, run / "student.pt", views, {"profile": "bench", "gmacs": None, "seed": 0})
        (run / "card.json").write_text(json.dumps({"profile": "bench", "views": [v.to_dict() for v in views],
                                                   "student": {"name": "efficientnet_lite0"}}))
        models[name] = {"fp32": str(export_model(run, "onnx", calib=calib, imgs=imgs, dynamic_batch=True,
                                                 exporter="torchscript").path)}
        if name == "sample":
            models[name]["int8"] = str(export_model(run, "onnx-int8", calib=calib, imgs=imgs, dynamic_batch=True,
                                                    exporter="torchscript").path)
    return models


def cli_rate(paths_dir: Path, model: str, workers: int, batch: int, threads: int, extra=()) -> dict:
    """`edgeiqa score` end to end in a fresh process; images/s from its JSON summary and the wall clock."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.csv"
        cmd = [sys.executable, "-m", "edgeiqa", "score", str(paths_dir), "--model", model, "--out", str(out),
               "--workers", str(workers), "--batch", str(batch), "--threads", str(threads), "--json",
               "--no-progress", *extra]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.perf_counter() - t
        if r.returncode not in (0, 1):
            raise SystemExit(r.stderr)
        s = json.loads(r.stdout)
        scores = [line.split(",")[1] for line in out.read_text().splitlines()[1:]]
    return {"workers": workers, "batch": batch, "threads": s["threads"], "files": s["files"], "failed": s["failed"],
            "images_per_s": s["images_per_s"], "wall_s_with_start": round(wall, 2), "fast_decode": s["fast_decode"],
            "_scores": scores}


def model_only_rate(model: str, views, threads: int, batch: int = 8, seconds: float = 6.0) -> float:
    """Backend only, on pre-built batches (what `edgeiqa bench` times)."""
    from edgeiqa.runtime.backends import OnnxBackend

    b = OnnxBackend(model, threads=threads)
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal((batch, 3, *v.size)).astype(np.float32) for v in views}
    b.run(feeds)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b.run(feeds)
        n += batch
    return n / (time.perf_counter() - t0)


def split_times(model: str, paths: list[Path], fast: bool) -> dict:
    """Serial, one thread: seconds per image in decode, views and the model (batch 1), as `edgeiqa score`
    builds them (`Scorer.decode` + `Scorer.make_views`: the fast path unless fast=False)."""
    from edgeiqa.data.views import make_views, to_batch
    from edgeiqa.runtime import Scorer

    s = Scorer.load(model, threads=1, fast_decode=fast)
    decode = getattr(s, "decode", s.to_rgb)  # older trees (before/after runs): training views only
    views_of = getattr(s, "make_views", lambda img: make_views(img, s.views))
    t = {"decode": 0.0, "views": 0.0, "model": 0.0}
    for p in paths:
        a = time.perf_counter()
        img = decode(p)
        b = time.perf_counter()
        views, _ = views_of(img)
        c = time.perf_counter()
        s.backend.run({v.name: to_batch([views[v.name]]) for v in s.views})
        d = time.perf_counter()
        t["decode"] += b - a
        t["views"] += c - b
        t["model"] += d - c
    total = sum(t.values())
    return {"images": len(paths), "ms_per_image": {k: round(1000 * v / len(paths), 1) for k, v in t.items()},
            "fraction": {k: round(v / total, 3) for k, v in t.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="fewer images (mixed set 120, 512 px set 100, 4K/12 MP set 12): about 7 minutes on a busy 2-core machine")
    ap.add_argument("--images", type=int, default=None, help="files in the mixed 640 px - 4K set (default 1000, --quick 120)")
    ap.add_argument("--small", type=int, default=None, help="512 px files (default 400, --quick 100)")
    ap.add_argument("--large", type=int, default=None, help="4K + 12 MP files (default 48, --quick 12)")
    ap.add_argument("--only", choices=("mixed", "512", "large"), default=None,
                    help="run one section only (e.g. `--only large` to compare 12 MP preprocessing before/after)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "score_folder.json"))
    ap.add_argument("--machine", default="2 CPU cores, no GPU", help="machine state recorded in the results (say if it was idle)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from edgeiqa.bounds import usable_cores

    cores = usable_cores()
    k = 4 if args.quick else 1
    args.images = args.images or (120 if args.quick else 1000)
    from edgeiqa.provenance import measured

    res: dict = {**measured(ROOT, args.machine),
                 "platform": {"platform": platform.platform(), "cores": cores, "load_avg_start": os.getloadavg()},
                 "quick": args.quick, "argv": sys.argv[1:]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        want = {args.only} if args.only else {"mixed", "512", "large"}
        if "mixed" in want:
            make_images(tmp / "mixed", args.images, SIZES)
        small = make_images(tmp / "small", args.small or 400 // k, {512: 1.0}, seed=1)  # also the calibration set
        large = make_images(tmp / "large", args.large or 48 // k, {3840: 0.5, 4000: 0.5}, seed=2) if "large" in want else []
        models = make_models(tmp / "models", small[:8], 8)
        res["setup_s"] = round(time.perf_counter() - t0, 1)
        print(f"setup {res['setup_s']} s", file=sys.stderr)
        from edgeiqa.data.views import ViewSpec

        sample_views = [ViewSpec("resize", (288, 288)), ViewSpec("fragments", (224, 224), grid=7)]
        fp32, int8 = models["sample"]["fp32"], models["sample"]["int8"]

        # 1. the full mixed set, end to end.
        if "mixed" in want:
            full = cli_rate(tmp / "mixed", fp32, cores, 8, cores)
            res["mixed_set"] = {"sizes_long_side": {str(s): int(round(args.images * f)) for s, f in SIZES.items()},
                                **{k2: v for k2, v in full.items() if not k2.startswith("_")}}
            print("mixed", res["mixed_set"], file=sys.stderr)

        # 2. 512 px JPEGs: model-only vs end to end, side by side.
        if "512" in want:
            res["jpeg_512"] = _jpeg_512(tmp, small, fp32, int8, sample_views, cores)
            res["jpeg_512_split_sample_model"] = split_times(fp32, small[:40 // k], True)

        # 3. 4K / 12 MP JPEGs: reduced decoding and the time split.
        if "large" in want:
            res["jpeg_4k_12mp"] = _large(tmp, large, models, cores)
        res["load_avg_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    from edgeiqa.fileio import write_json_atomic

    write_json_atomic(args.out, res)
    print(json.dumps(res, indent=2))
    return 0


def _jpeg_512(tmp: Path, small: list[Path], fp32: str, int8: str, sample_views, cores: int) -> dict:
    rows, scores = [], {}
    for name, model, workers, batch in (("fp32", fp32, 1, 1), ("fp32", fp32, 1, 8), ("fp32", fp32, cores, 1),
                                        ("fp32", fp32, cores, 8), ("int8", int8, cores, 8)):
        r = cli_rate(tmp / "small", model, workers, batch, cores)
        scores[(name, workers, batch)] = r["_scores"]
        rows.append({"precision": name, **{k2: v for k2, v in r.items() if not k2.startswith("_")}})
        print(rows[-1], file=sys.stderr)
    same = scores[("fp32", 1, 1)] == scores[("fp32", cores, 8)]
    mo = {p: round(model_only_rate(m, sample_views, cores), 2) for p, m in (("fp32", fp32), ("int8", int8))}
    for r in rows:
        r["vs_model_only"] = round(r["images_per_s"] / mo[r["precision"]], 3)
    return {"images": len(small), "model_only_images_per_s": mo, "end_to_end": rows,
            "scores_identical_1worker_b1_vs_allcores_b8": same}


def _large(tmp: Path, large: list[Path], models: dict, cores: int) -> dict:
    resize_fp32, fp32 = models["resize"]["fp32"], models["sample"]["fp32"]
    fast = cli_rate(tmp / "large", resize_fp32, cores, 8, cores)
    slow = cli_rate(tmp / "large", resize_fp32, cores, 8, cores, extra=("--full-decode",))
    diffs = [abs(float(a) - float(b)) for a, b in zip(fast["_scores"], slow["_scores"]) if a and b]
    sub = large[: max(8, len(large) // 2)]
    frag_fast = cli_rate(tmp / "large", fp32, cores, 8, cores)
    frag_slow = cli_rate(tmp / "large", fp32, cores, 8, cores, extra=("--full-decode",))
    frag_diffs = [abs(float(a) - float(b)) for a, b in zip(frag_fast["_scores"], frag_slow["_scores"]) if a and b]
    return {
        "images": len(large),
        "sample_model_end_to_end": {"fast_path_images_per_s": frag_fast["images_per_s"],
                                    "full_decode_images_per_s": frag_slow["images_per_s"],
                                    "speedup": round(frag_fast["images_per_s"] / frag_slow["images_per_s"], 2),
                                    "max_abs_score_diff": round(max(frag_diffs), 6) if frag_diffs else None},
        "resize_model_end_to_end": {"reduced_decode_images_per_s": fast["images_per_s"],
                                    "full_decode_images_per_s": slow["images_per_s"],
                                    "speedup": round(fast["images_per_s"] / slow["images_per_s"], 2),
                                    "max_abs_score_diff": round(max(diffs), 6) if diffs else None},
        "split_resize_model_reduced_decode": split_times(resize_fp32, sub, True),
        "split_resize_model_full_decode": split_times(resize_fp32, sub, False),
        "split_sample_model_fast_path (fragments need native pixels)": split_times(fp32, sub, True),
        "split_sample_model_full_decode": split_times(fp32, sub, False),
    }


if __name__ == "__main__":
    sys.exit(main())
