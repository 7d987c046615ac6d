"""Export parity and int8 speed for a trained run: `python benchmarks/export_parity.py RUN_DIR`.

Exports `onnx` and `onnx-int8` (and `onnx-fp16` with --fp16) of RUN_DIR's student, scores every image of
the test scenes of a dataset (default: the run profile's data, else `sample`) with torch, the float ONNX
and the int8 ONNX, and reports:
- fp32 ONNX vs torch: max / mean |diff| (bar: <= 1e-4);
- int8 vs torch: SRCC pooled over all test images (bar: >= 0.98) and per scene (median / mean / worst);
- each model's SRCC against the ground truth (per-scene median/mean, `edgeiqa.metrics.evaluate`);
- onnxruntime CPU latency at batch 1 (p50 / p95 over the test images) for fp32 and int8, and the speed-up.

`--formats onnx,openvino-int8,litert-int8,...` compares any rows of the formats table the same way, each run by the
runtime's own backend for its suffix (`edgeiqa.runtime.backends.open_backend`), against its row's parity bar;
`--reuse` takes an artefact already in RUN_DIR/export instead of exporting it again. A row this machine cannot run
(Core ML off macOS, TensorRT without a GPU, a missing extra) is listed with the reason, never as a pass.

Not a test: it takes minutes on a 2-core machine. Exit code 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _per_scene_srcc(ref, scores, scenes) -> dict:
    from scipy.stats import spearmanr

    values = []
    for sc in sorted(set(scenes)):
        idx = [i for i, s in enumerate(scenes) if s == sc]
        if len(idx) >= 3 and np.ptp(ref[idx]) > 0:
            values.append(float(spearmanr(ref[idx], scores[idx])[0]))
    return {"median": float(np.median(values)) if values else None, "mean": float(np.mean(values)) if values else None,
            "worst": float(np.min(values)) if values else None}


def not_runnable(fmt) -> str | None:
    """Why this machine cannot run a row's artefact, or None."""
    from edgeiqa.export.coreml_export import is_macos, not_runnable_reason
    from edgeiqa.export.formats import missing_extra

    if fmt.backend == "tensorrt":
        return "TensorRT is not verified here (no TensorRT wheel, no GPU)"
    if fmt.backend == "coreml" and not is_macos():
        return not_runnable_reason()  # the export's own wording of the same fact
    return missing_extra(fmt, runtime=True)


def compare_formats(args, run, spec, batches, ref, scenes, kinds, target) -> dict:
    """Each asked-for row of the formats table on the same images, run by the runtime's backend for its suffix."""
    from edgeiqa.errors import EdgeIQAError
    from edgeiqa.export import export_model
    from edgeiqa.export.formats import artefact_bytes, get_format
    from edgeiqa.metrics import evaluate
    from edgeiqa.runtime.backends import open_backend
    from scipy.stats import spearmanr

    rows = {}
    for name in [n.strip() for n in args.formats.split(",") if n.strip()]:
        fmt = get_format(name)
        reason = not_runnable(fmt)
        if reason:
            rows[name] = {"not_run": reason}
            continue
        path = Path(run) / "export" / fmt.filename
        reused = bool(args.reuse and path.exists())
        if not reused:
            try:
                path = export_model(run, name, calib=args.calib or spec,
                                    imgs=args.calib_imgs if name.endswith("int8") else None).path
            except EdgeIQAError as e:  # a row that cannot be exported is reported with the reason; the others go on
                rows[name] = {"export_failed": str(e), "bar_met": False}
                print(f"{name}: export failed: {e}", file=sys.stderr)
                continue
        backend = open_backend(path, threads=args.threads)
        backend.run(batches[0])  # warm-up
        out, lat = [], []
        for b in batches:
            t = time.perf_counter()
            out.append(float(np.asarray(backend.run(b)).reshape(-1)[0]))
            lat.append((time.perf_counter() - t) * 1000)
        scores, lat = np.array(out), np.array(lat)
        diff = np.abs(scores - ref)
        srcc = float(spearmanr(ref, scores)[0])
        bar = {"max_abs_diff": fmt.parity_max_abs, "min_srcc": fmt.parity_min_srcc}
        met = (fmt.parity_max_abs is None or float(diff.max()) <= fmt.parity_max_abs) and \
              (fmt.parity_min_srcc is None or srcc >= fmt.parity_min_srcc)
        rows[name] = {"path": str(path), "reused": reused, "backend": backend.name,
                      "size_bytes": artefact_bytes(path),
                      "max_abs_diff_vs_torch": float(diff.max()), "mean_abs_diff_vs_torch": float(diff.mean()),
                      "srcc_vs_torch": srcc, "per_scene_srcc_vs_torch": _per_scene_srcc(ref, scores, scenes),
                      "bar": bar, "bar_met": bool(met), "vs_truth": evaluate(scores, target, scenes=scenes, kinds=kinds),
                      "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p95": float(np.percentile(lat, 95)),
                      "threads": args.threads}
        print(f"{name}: SRCC vs torch {srcc:.4f}, max |diff| {diff.max():.3g}, bar {'met' if met else 'MISSED'}",
              file=sys.stderr)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="run folder with student.pt and card.json")
    ap.add_argument("--data", default=None, help="dataset spec for the test scenes (default: profile data, else sample)")
    ap.add_argument("--split", default="test", help="split to evaluate (default test)")
    ap.add_argument("--calib", default=None, help="calibration spec for int8 (default: same dataset, train/val images)")
    ap.add_argument("--calib-imgs", type=int, default=128, help="int8 calibration images (default 128)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime / torch threads for the timing (default 1)")
    ap.add_argument("--fp16", action="store_true", help="also export and compare onnx-fp16")
    ap.add_argument("--formats", default=None,
                    help="rows of the formats table to compare, each through the runtime's backend for it (default: "
                    "onnx,onnx-int8 through plain onnxruntime sessions, as before)")
    ap.add_argument("--reuse", action="store_true", help="use the artefacts already in RUN_DIR/export when present")
    ap.add_argument("--max-images", type=int, default=None, metavar="N",
                    help="compare on at most N images of the split, spread evenly over it (default: all)")
    ap.add_argument("--out", default=None, help="write the results JSON here")
    ap.add_argument("--machine", default="2 CPU cores, no GPU", help="machine state recorded in the results")
    args = ap.parse_args(argv)
    if args.max_images is not None and args.max_images < 2:
        ap.error(f"--max-images must be >= 2 (an SRCC needs two images), got {args.max_images}")

    import onnxruntime as ort
    import torch
    from scipy.stats import spearmanr

    from edgeiqa.provenance import measured

    from edgeiqa.data.datasets import load_dataset
    from edgeiqa.data.images import load_image
    from edgeiqa.export import export_model, resolve_run
    from edgeiqa.export.parity import view_batches
    from edgeiqa.metrics import evaluate
    from edgeiqa.students import load_student

    torch.set_num_threads(args.threads)
    _, card, run = resolve_run(args.run_dir)
    model, payload = load_student(args.run_dir)
    model.drop_training_heads()
    from edgeiqa.data.views import ViewSpec

    views = [ViewSpec.from_dict(v) for v in payload["views"]]
    spec = args.data
    if spec is None:
        from edgeiqa.export.parity import _default_spec

        spec = _default_spec((card or {}).get("profile") or payload.get("meta", {}).get("profile"))
    ds = load_dataset(spec)
    test = [r for r in ds.records if r.split == args.split]
    if not test:
        print(f"no {args.split!r} images in {spec}", file=sys.stderr)
        return 2
    if args.max_images and len(test) > args.max_images:  # evenly spread, so every part of the split is represented
        test = [test[int(i)] for i in np.linspace(0, len(test) - 1, args.max_images).round()]
    print(f"{len(test)} {args.split} images from {spec}; exporting...", file=sys.stderr)

    t0 = time.time()
    if not args.formats:
        fp32 = export_model(run, "onnx", calib=args.calib or spec)
        int8 = export_model(run, "onnx-int8", calib=args.calib or spec, imgs=args.calib_imgs)
        extra = {"onnx-fp16": export_model(run, "onnx-fp16", calib=args.calib or spec)} if args.fp16 else {}
    export_s = time.time() - t0

    images = [(str(r.path), load_image(r.path)) for r in test]
    batches = view_batches(images, views)
    with torch.no_grad():
        ref = np.array([float(model(*[torch.from_numpy(b[v.name]) for v in views])[0]) for b in batches])

    def session(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def run_timed(path):
        s = session(path)
        s.run(None, batches[0])  # warm-up
        out, lat = [], []
        for b in batches:
            t = time.perf_counter()
            out.append(float(s.run(None, b)[0].reshape(-1)[0]))
            lat.append((time.perf_counter() - t) * 1000)
        return np.array(out), np.array(lat)

    scenes = [r.scene for r in test]
    kinds = [r.kind for r in test]
    target = np.array([r.score for r in test], dtype=float)
    results = {"run": str(run), "data": spec, "split": args.split, "n_images": len(test), "threads": args.threads,
               "views": payload["views"], "export_seconds": round(export_s, 1),
               "torch_vs_truth": evaluate(ref, target, scenes=scenes, kinds=kinds)}
    if args.formats:
        rows = compare_formats(args, run, spec, batches, ref, scenes, kinds, target)
        results["formats"] = rows
        results = {**measured(Path(__file__).resolve().parents[1], args.machine), **results}
        text = json.dumps(results, indent=2, default=str)
        print(text)
        if args.out:
            from edgeiqa.fileio import write_json_atomic

            write_json_atomic(args.out, json.loads(text), indent=2)
        return 0 if all(r.get("bar_met") is not False for r in rows.values()) else 1
    lat_fp32 = None
    for name, res in [("onnx", fp32), ("onnx-int8", int8), *extra.items()]:
        scores, lat = run_timed(res.path)
        diff = np.abs(scores - ref)
        per_scene = []
        for sc in sorted(set(scenes)):
            idx = [i for i, s in enumerate(scenes) if s == sc]
            if len(idx) >= 3 and np.ptp(ref[idx]) > 0:
                per_scene.append(float(spearmanr(ref[idx], scores[idx])[0]))
        entry = {
            "path": str(res.path),
            "size_mb": round(res.path.stat().st_size / 1e6, 2),
            "max_abs_diff_vs_torch": float(diff.max()),
            "mean_abs_diff_vs_torch": float(diff.mean()),
            "srcc_vs_torch": float(spearmanr(ref, scores)[0]),
            "per_scene_srcc_vs_torch": {"median": float(np.median(per_scene)) if per_scene else None,
                                        "mean": float(np.mean(per_scene)) if per_scene else None,
                                        "worst": float(np.min(per_scene)) if per_scene else None},
            "vs_truth": evaluate(scores, target, scenes=scenes, kinds=kinds),
            "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "gmacs": res.metadata.get("gmacs", {}).get("onnx_fvcore_convention"),
            "gmacs_match_card": res.metadata.get("gmacs", {}).get("match"),
        }
        if name == "onnx":
            lat_fp32 = entry["latency_ms_p50"]
        else:
            entry["speedup_vs_fp32"] = round(lat_fp32 / entry["latency_ms_p50"], 3) if lat_fp32 else None
        results[name] = entry
    ok_fp32 = results["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    ok_int8 = results["onnx-int8"]["srcc_vs_torch"] >= 0.98
    results["bars"] = {"onnx_max_abs_diff<=1e-4": ok_fp32, "int8_srcc_vs_torch>=0.98": ok_int8}
    results = {**measured(Path(__file__).resolve().parents[1], args.machine), **results}
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if ok_fp32 and ok_int8 else 1


if __name__ == "__main__":
    sys.exit(main())
