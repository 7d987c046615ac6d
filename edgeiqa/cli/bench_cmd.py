"""`edgeiqa bench MODEL_DIR`: latency, throughput, memory, accuracy and parity of a student per format."""

from __future__ import annotations

import argparse
import sys

from edgeiqa.cli.common import add_accel_args
from edgeiqa.export.formats import FORMATS

EPILOG = """\
formats: {formats}, and teacher (same as --compare-teacher). Default: torch,onnx,onnx-int8 (+ tensorrt when
TensorRT and a GPU are present; asked for explicitly without them it gives a row `unavailable: <reason>`;
openvino and openvino-int8 likewise without `pip install 'edgeiqa[openvino]'`, coreml and coreml-int8 without
`pip install 'edgeiqa[coreml]'` (off macOS the Core ML rows are exported and sized but `unavailable: not runnable`),
litert, litert-fp16 and litert-int8 without `pip install 'edgeiqa[litert]'`, executorch and executorch-int8 without
`pip install 'edgeiqa[executorch]'` (LiteRT and ExecuTorch rows have no ceiling fraction: no ceiling kernel for them)).

method (stable numbers on a small, busy machine):
  - a fixed thread count for torch, onnxruntime and OpenVINO (--threads, default: all cores), recorded;
  - model time only: each timed call runs the backend on a batch of real images whose views were built
    beforehand; decode and view building are timed apart (preprocessing columns);
  - --warmup untimed calls, then up to --runs timed calls on the same batch with the garbage collector
    off; latency = median (p50) and p95 of the calls / batch size; images/s = batch / p50 call;
    a slow model stops after --max-seconds once 5 calls are in; "busy %" (other_cpu_pct) records how
    much CPU other processes took meanwhile (contention slows torch's thread pool dramatically);
  - peak memory = peak RSS during load + warm-up + timed calls minus the RSS before loading;
  - accuracy with the runtime Scorer on the data's test split (else all labelled images): the same
    preprocessing as deployment; parity = max |raw diff| vs the torch student on those images;
  - machine ceiling: a float32 GEMM and 3x3 conv timed on torch, onnxruntime (and OpenVINO) at the same threads
    (fastest call); every row gets its achieved GMAC/s and the fraction of its backend's ceiling;
  - teacher row: every ensemble member and view in torch, timed the same way; speedup_vs_teacher =
    teacher p50 / row p50; srcc_kept_vs_teacher on the per-scene mean SRCC (pooled without scenes).
  Two consecutive runs agree within 25 % (p50) on a noisy 2-core machine.

exports: an artefact is reused when its .json sidecar names this checkpoint's sha256 (RUN/export/,
RUN/export/bench/, RUN/exports/); otherwise the format is exported (calibration and parity images from
--calib, default the bench data). --reexport forces fresh exports.

outputs: a table on screen; bench.json, bench.csv, latency_vs_srcc.png, gmacs_vs_srcc.png in --out
(default MODEL_DIR/bench). --json prints the same JSON on stdout instead of the table:
  {{"rows": [{{"format", "batch", "status", "p50_ms", "p95_ms", "images_per_s", "gmacs", "srcc",
  "parity_max_abs", "speedup_vs_teacher", ...}}], "device": {{...}}, "ceiling": {{...}}, ...}}

exit code: 0 every format ok (or unavailable) and the --min-srcc gate passed; 1 a format failed to export,
failed validation or failed to run, or an ok format scored under --min-srcc; 2 a usage error (unknown
format, missing run folder, bad --data, ...).

examples:
  edgeiqa bench runs/sample
  edgeiqa bench runs/sample --formats onnx,onnx-int8 --batch 1,8 --compare-teacher --out bench/
  edgeiqa bench runs/sample --json --min-srcc 0.8 > bench.json     # a CI gate
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark a student per format: latency, throughput, memory, SRCC/PLCC, parity, vs the teacher",
        description="Measure what a trained student costs and keeps in each deployable format on this machine: "
        "status, size (and size vs the fp32 ONNX graph), GMACs, params, latency p50/p95, throughput, peak memory, SRCC/PLCC on a dataset, "
        "parity vs torch, and the fraction of the machine's dense-compute ceiling it reaches.",
        epilog=EPILOG.format(formats=", ".join(FORMATS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="run folder holding student.pt and card.json (from `edgeiqa distill`)")
    p.add_argument("--formats", "-f", default=None, metavar="LIST",
                   help="comma-separated formats (default torch,onnx,onnx-int8); a misspelt name suggests the closest")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="dataset spec for accuracy and timing images (sample, csv:PATH, piq23:ROOT, folder:DIR, ...; "
                   "default: the card's dataset). Its test split is used when it has one")
    p.add_argument("--batch", default="1", metavar="LIST", help="batch sizes to time, e.g. 1,8 (default 1)")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed warm-up calls per measurement (default 5)")
    p.add_argument("--runs", type=int, default=30, metavar="N", help="timed calls per measurement; the median is reported (default 30)")
    p.add_argument("--max-seconds", type=float, default=15.0, metavar="S",
                   help="stop a measurement after S seconds once 5 calls are in (slow models; default 15)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="intra-op threads for torch, onnxruntime and OpenVINO, at most the usable cores (default: all cores; "
                   "recorded in the report)")
    add_accel_args(p, workers=False, device="cpu",
                   device_help="; ONNX formats run on onnxruntime's provider for it (CUDAExecutionProvider for cuda, "
                   "an error when this onnxruntime build lacks it); --precision applies to the torch and teacher rows")
    p.add_argument("--max-images", type=int, default=None, metavar="N",
                   help="score at most N images for accuracy (whole scenes, spread evenly; default: all)")
    p.add_argument("--compare-teacher", action="store_true",
                   help="add the teacher ensemble (torch, all members and views) as format `teacher`, and "
                   "speedup_vs_teacher / srcc_kept_vs_teacher to every row")
    p.add_argument("--teacher-scores", choices=("auto", "live", "saved"), default="auto",
                   help="teacher accuracy: auto (default) uses the members' saved predictions.csv when they cover every "
                   "image and agree with a live run on 4 of them, else scores live; live always; saved or fail")
    p.add_argument("--teachers", default=None, metavar="DIR", help="teachers folder (default: the card's teacher.dir)")
    p.add_argument("--calib", default=None, metavar="SPEC",
                   help="calibration/parity images for formats that must be exported (default: the bench data)")
    p.add_argument("--calib-imgs", type=int, default=None, metavar="N",
                   help="images for int8 calibration and the export's parity check (default: export's)")
    p.add_argument("--reexport", action="store_true", help="export every format afresh instead of reusing artefacts")
    p.add_argument("--min-srcc", type=float, default=None, metavar="X",
                   help="exit 1 when any ok format's SRCC on the data is under X, in [-1, 1] (a CI gate)")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for bench.json, bench.csv and plots (default MODEL_DIR/bench): a new or empty folder, or "
                   "one an earlier bench wrote; never another folder")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout instead of the table")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgeiqa.bench import exit_code, run_bench, write_outputs
    from edgeiqa.bench.report import render, to_json

    opts, out = _validate(args)  # every usage error before any model, export or file

    def log(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    report = run_bench(args.model_dir, opts, log=log)
    write_outputs(report, out, plots=not args.no_plots)
    if args.json:
        sys.stdout.write(to_json(report) + "\n")
    else:
        render(report)
    gate = report["gate"]
    if not gate["passed"]:
        print(f"edgeiqa: --min-srcc {gate['min_srcc']} not met: {'; '.join(gate['failing'])}", file=sys.stderr)
    return exit_code(report)


def _validate(args):
    """(BenchOptions, output folder), every option, the model folder and --out checked; nothing loaded or written."""
    from pathlib import Path

    from edgeiqa.bench import BenchOptions
    from edgeiqa.bench.artefacts import check_run
    from edgeiqa.bench.runner import check_options, parse_formats
    from edgeiqa.outsafe import check_out_dir

    formats = parse_formats(args.formats) if args.formats is not None else None
    device, precision = _check_device(args.device, args.precision, formats)
    opts = BenchOptions(formats=formats, data=args.data, batches=args.batch, warmup=args.warmup,
                        runs=args.runs, threads=args.threads, compare_teacher=args.compare_teacher, teachers=args.teachers,
                        calib=args.calib, calib_imgs=args.calib_imgs, max_images=args.max_images,
                        max_seconds=args.max_seconds, reuse=not args.reexport, device=device, precision=precision,
                        min_srcc=args.min_srcc, teacher_scores=args.teacher_scores)
    check_options(opts)
    ckpt, _, run, _ = check_run(args.model_dir)
    out = Path(args.out) if args.out else run / "bench"
    check_out_dir(out, "bench", inputs=(ckpt, run / "card.json", args.teachers))
    return opts, out


def _check_device(device: str, precision: str, formats: list[str] | None) -> tuple[str, str]:
    """The device and precision, resolved before any work: a device this machine lacks (for torch, or for
    onnxruntime when an ONNX format is asked for) is one line, exit 2."""
    from edgeiqa.accel import resolve_accel
    from edgeiqa.bench.runner import default_formats
    from edgeiqa.errors import EdgeIQAError

    accel = resolve_accel(device, precision)
    if accel.device.type == "cuda" and any(FORMATS[f].backend == "onnxruntime" for f in formats or default_formats()
                                           if f in FORMATS):
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EdgeIQAError("--device cuda: this onnxruntime build has no CUDAExecutionProvider (install "
                               "onnxruntime-gpu, or bench the ONNX formats with --device cpu)")
    return str(accel.device), accel.precision
