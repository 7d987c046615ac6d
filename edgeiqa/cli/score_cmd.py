"""`edgeiqa score PATH... --model M`: score files and folders, one row per entry, bad ones with a reason.

Light on purpose: with an ONNX model this command imports neither torch, timm nor the training code, so it
runs from the runtime-only install (`pip install edgeiqa`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edgeiqa.errors import EdgeIQAError

EPILOG = """\
output: one row per entry, sorted by path: path,score,status,error (+ face_found when the model has a face
view). Every entry under a folder gets a row: any file Pillow can open is scored (GIF, multi-page TIFF:
the first frame), every other one gets its reason (not an image, truncated, empty, too small, too large -
refused before decoding -, dangling symlink, symlink loop, folder named like an image, ...). Scores have a
fixed 6 decimals and do not depend on --workers or --batch, so the output is byte-identical across runs.

streaming and resume: with --out, rows are appended to OUT.part as they are scored (a crash loses nothing)
and OUT is written sorted at the end; --resume skips every path already in OUT or OUT.part, so a killed
run plus `--resume` gives the same OUT as one uninterrupted run. Memory stays flat however many files: folders
are walked lazily in path order and rows are written from disk, never all held. A progress bar with images/s
goes to stderr.

exit code: 0 every entry scored; 1 at least one entry not scored (its row says why); 2 a usage error
(model not found or refused, bad provider, nothing to score, ...).

examples:
  edgeiqa score photos/ --model runs/sample/export/student.onnx --out scores.csv
  edgeiqa score photos/ --model student-int8.onnx --workers 2 --batch 8 --out scores.jsonl --resume
  edgeiqa score a.jpg b.png --model runs/sample --json
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="score images (files and folders) with an exported model or a student run",
        description="Score image files and folders with an exported model (.onnx via onnxruntime, .engine via "
        "TensorRT) or a student checkpoint (.pt or run folder, via torch). Preprocessing (views, "
        "normalisation) is read from the model's metadata and is the same as in training.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files and/or folders (walked recursively; every entry gets a row)")
    p.add_argument("--model", "-m", required=True, metavar="M",
                   help="model: .onnx, .engine (+ its .json sidecar), student .pt, or a run folder holding student.pt")
    p.add_argument("--out", "-o", metavar="FILE", default=None,
                   help="write the rows to FILE: .csv, .jsonl or .json (default: CSV on stdout)")
    p.add_argument("--resume", action="store_true",
                   help="with --out: skip files already in FILE (or FILE.part, left by a killed run)")
    p.add_argument("--batch", type=int, default=8, metavar="N", help="images per inference batch (default 8)")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="threads that decode images and build views in parallel (default 2); does not change scores")
    p.add_argument("--device", default=None, metavar="D",
                   help="cpu (default), auto, cuda or cuda:N; with an ONNX model cuda selects onnxruntime's "
                   "CUDAExecutionProvider (an error when this onnxruntime build lacks it); a device this machine "
                   "lacks is an error, never a silent CPU fall-back")
    p.add_argument("--precision", default="fp32", metavar="P",
                   help="fp32 (default), or bf16 / fp16 autocast for a torch model (.pt, run folder) on a GPU; an "
                   "ONNX model or engine runs at the precision it was exported at")
    p.add_argument("--provider", action="append", default=None, metavar="P",
                   help="onnxruntime execution provider (repeat for a fallback list; aliases cpu, cuda, tensorrt, "
                   "coreml, openvino); the first must be the one that runs, else an error")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="intra-op threads of the inference backend (default: 1 for torch models, all usable "
                   "cores for onnxruntime); the count used is in the --json summary")
    p.add_argument("--full-decode", action="store_true",
                   help="exactly the training preprocessing (default: resize views of large images start from a "
                   "reduced copy keeping >= 2x the view size - a reduced-scale JPEG decode when every view is a "
                   "resize view, else a box-reduced copy - several times faster on 4K photos)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true",
                   help="print JSON on stdout (the rows when no --out is given, else a summary)")
    p.set_defaults(func=run)


def _check_args(args) -> None:
    from edgeiqa.runtime.output import SUFFIXES

    if args.out and Path(args.out).suffix.lower() not in SUFFIXES:
        raise EdgeIQAError(f"--out {args.out}: use a .csv, .jsonl or .json file name")
    if args.batch < 1 or args.workers < 1:
        raise EdgeIQAError("--batch and --workers must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise EdgeIQAError(f"--threads must be >= 1, got {args.threads}")
    if args.resume and not args.out:
        raise EdgeIQAError("--resume needs --out (the file whose rows are kept)")


def run(args) -> int:
    from edgeiqa.runtime import Scorer
    from edgeiqa.runtime.inputs import walk_inputs
    from edgeiqa.runtime.output import RowSink, make_row
    from edgeiqa.runtime.pipeline import Listed

    _check_args(args)
    entries = walk_inputs(args.paths)
    first = next(entries, None)
    if first is None:
        raise EdgeIQAError(f"nothing to score: {', '.join(args.paths)} holds no files")
    scorer = Scorer.load(args.model, providers=args.provider, device=args.device, threads=args.threads,
                         fast_decode=not args.full_decode, precision=args.precision)
    sink = RowSink(args.out, scorer.uses_face, resume=args.resume)

    def todo():
        for e in _chain(first, entries):
            if not sink.done(e.path if isinstance(e, Listed) else e):
                yield e

    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(unit="img", file=sys.stderr, dynamic_ncols=True, desc="scoring", smoothing=0.1)
    t0 = time.perf_counter()
    n_new = 0
    try:
        for res in scorer.iter_score(todo(), batch_size=args.batch, workers=args.workers):
            sink.add(make_row(res, scorer.uses_face))
            n_new += 1
            if bar is not None:
                bar.update(1)
    except BaseException:
        sink.close()  # OUT.part keeps every row written so far, for --resume
        raise
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    extra = {"new": n_new, "images_per_s": round(n_new / seconds, 2) if seconds > 0 else None,
             "backend": scorer.backend.name, "provider": scorer.backend.provider,
             "device": scorer.backend.device, "precision": getattr(scorer.backend, "precision", "fp32"),
             "threads": scorer.backend.threads, "workers": args.workers, "batch": args.batch,
             "fast_decode": scorer.fast}
    summary = sink.finish(args.model, extra, stdout=sys.stdout, stdout_format=".json" if args.json else ".csv")
    n_err = summary["failed"]
    if args.out:
        if args.json:
            print(json.dumps({**summary, "out": str(args.out)}, indent=2))
        else:
            print(f"scored {summary['scored']}/{summary['files']} files ({n_err} not scored) -> {args.out}", file=sys.stderr)
    elif not args.json:
        print(f"scored {summary['scored']}/{summary['files']} files ({n_err} not scored)", file=sys.stderr)
    return 1 if n_err else 0


def _chain(first, rest):
    yield first
    yield from rest
