"""`edgeiqa score PATH... --model M`: score files and folders, one row per entry, bad ones with a reason.

Light on purpose: with an ONNX model this command imports neither torch, timm nor the training code, so it
runs from the runtime-only install (`pip install edgeiqa`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from edgeiqa.bounds import MAX_BATCH, check_cores, check_count
from edgeiqa.errors import EdgeIQAError

# The summary keys written into OUT (.json): none varies between reruns of the same command.
FILE_SUMMARY_KEYS = ("files", "scored", "failed", "backend", "provider", "device", "precision", "fast_decode")

EPILOG = """\
output: one row per entry, sorted by path: path,score,status,error (+ face_found when the model has a face
view). Every entry under a folder gets a row: any file Pillow can open is scored (GIF, multi-page TIFF:
the first frame), every other one gets its reason (not an image, truncated, empty, too small, too large -
refused before decoding -, dangling symlink, symlink loop, folder named like an image, ...). A file name that
is not valid UTF-8 is written as its own bytes in a CSV (escaped as \\udcXX in JSON). Scores have a fixed 6
decimals and do not depend on --workers, --batch or --threads, so reruns write byte-identical files: the
.json file's summary holds only files, scored, failed, backend, provider, device, precision and fast_decode;
what varies from run to run (new, images_per_s, threads, workers, batch) is only in the --json summary on
stdout (with --out) and the progress bar.

output safety: --out is a new file, or a score file edgeiqa wrote (recognised by its CSV header, first JSONL
row or JSON head), or another file replaced only with --force; it may never be one of the PATHs or lie inside
a folder being scanned (exit 2, nothing written).

streaming and resume: with --out, rows are appended to OUT.part as they are scored (a crash loses nothing)
and OUT is written sorted at the end; --resume skips every path already in OUT or OUT.part, so a killed
run plus `--resume` gives the same OUT as one uninterrupted run (a last line torn by the kill is dropped and
scored again; a corrupt line before it is refused). Memory stays flat however many files: folders are
walked lazily in path order and rows are written from disk, never all held. A progress bar with images/s
goes to stderr.

exit code: 0 every entry scored; 1 at least one entry not scored (its row says why); 2 a usage error
(a PATH or model not found, model refused, bad option or provider, --out refused, nothing to score, ...);
nothing is written then, and options, PATHs and --out are checked before the model is loaded.

examples:
  edgeiqa score photos/ --model runs/sample/export/student.onnx --out scores.csv
  edgeiqa score photos/ --model student-int8.onnx --workers 2 --batch 8 --out scores.jsonl --resume
  edgeiqa score a.jpg b.png --model runs/sample --json
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score",
        help="score images (files and folders) with an exported model or a student run",
        description="Score image files and folders with an exported model (.onnx via onnxruntime, .xml via "
        "OpenVINO, .tflite via LiteRT, .pte via ExecuTorch, .mlpackage via Core ML on macOS only, .engine via TensorRT) or a "
        "student checkpoint (.pt or run folder, via torch). Preprocessing (views, "
        "normalisation) is read from the model's metadata and is the same as in training.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files and/or folders (walked recursively; every entry gets a row)")
    p.add_argument("--model", "-m", required=True, metavar="M",
                   help="model: .onnx, .xml (OpenVINO IR + its .bin), .tflite (LiteRT), .mlpackage (Core ML, macOS only), "
                   ".pte (ExecuTorch), .engine (+ its .json sidecar), student .pt, or a run "
                   "folder holding student.pt")
    p.add_argument("--out", "-o", metavar="FILE", default=None,
                   help="write the rows to FILE: .csv, .jsonl or .json (default: CSV on stdout)")
    p.add_argument("--resume", action="store_true",
                   help="with --out: skip files already in FILE (or FILE.part, left by a killed run)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out file that edgeiqa did not write (its own score files are "
                   "replaced without it); an input is never replaced")
    p.add_argument("--batch", type=int, default=8, metavar="N",
                   help=f"images per inference batch (default 8, at most {MAX_BATCH})")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="threads that decode images and build views in parallel (default 2, at most the usable "
                   "CPU cores); does not change scores")
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
                   "cores for onnxruntime; at most the usable cores); the count used is in the --json summary")
    p.add_argument("--full-decode", action="store_true",
                   help="exactly the training preprocessing (default: resize views of large images start from a "
                   "reduced copy keeping >= 2x the view size - a reduced-scale JPEG decode when every view is a "
                   "resize view, else a box-reduced copy - several times faster on 4K photos)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true",
                   help="print JSON on stdout (the rows when no --out is given, else a summary)")
    p.set_defaults(func=run)


def _check_args(args) -> None:
    """Every option, PATH and the model path, before anything is loaded or written (exit 2, one line)."""
    from edgeiqa.runtime.output import SUFFIXES
    from edgeiqa.runtime.scorer import check_device_name, check_model_path, check_precision_name

    if args.out and Path(args.out).suffix.lower() not in SUFFIXES:
        raise EdgeIQAError(f"--out {args.out}: use a .csv, .jsonl or .json file name")
    if args.resume and not args.out:
        raise EdgeIQAError("--resume needs --out (the file whose rows are kept)")
    check_count("--batch", args.batch, high=MAX_BATCH, what=f"the most images per batch ({MAX_BATCH})")
    check_cores("--workers", args.workers)
    check_cores("--threads", args.threads)
    check_device_name(args.device)
    check_precision_name(args.precision)
    _check_paths(args.paths)
    check_model_path(args.model, args.precision)


def _check_paths(paths: list[str]) -> None:
    """A PATH that does not exist is a usage error (one that vanishes during the run gets a row instead)."""
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise EdgeIQAError(f"{missing[0]}: no such file or folder{more}")


def _read_paths(args) -> tuple[list[str], list[str]]:
    """(files the command reads, folders it scans), each also through its symlinks."""
    inputs = list(args.paths) + [args.model]
    from edgeiqa.export.formats import is_folder_artefact

    folder_model = is_folder_artefact(args.model)
    if Path(args.model).is_file() or folder_model:  # a Core ML .mlpackage is a folder with a sidecar too
        from edgeiqa.export.formats import artefact_files

        inputs.append(str(Path(args.model).with_suffix(".json")))  # an engine's metadata sidecar
        inputs += [str(p) for p in artefact_files(args.model)[1:]]  # an OpenVINO IR's .bin weights
    scanned = [p for p in args.paths if os.path.isdir(p)] + ([args.model] if folder_model else [])
    return inputs + [os.path.realpath(p) for p in inputs], scanned + [os.path.realpath(p) for p in scanned]


def _check_out(args) -> None:
    """--out and its OUT.part: new, written by edgeiqa, or --force; never an input or inside a scanned folder."""
    from edgeiqa.outsafe import check_not_input, check_out_file
    from edgeiqa.runtime.output import check_resumable, owned_output, owned_part

    if not args.out:
        return
    inputs, scanned = _read_paths(args)
    out = Path(args.out)
    for path, owned in ((out, owned_output), (out.with_name(out.name + ".part"), owned_part)):
        check_out_file(path, owned=owned, force=args.force, inputs=inputs, scanned=scanned)
        check_not_input(os.path.realpath(path), inputs=inputs, scanned=scanned)  # reached through a symlink
    if args.resume:
        check_resumable(out)


def run(args) -> int:
    from edgeiqa.runtime import Scorer
    from edgeiqa.runtime.inputs import walk_inputs
    from edgeiqa.runtime.output import RowSink

    _check_args(args)
    _check_out(args)
    entries = walk_inputs(args.paths)
    first = next(entries, None)
    if first is None:
        raise EdgeIQAError(f"nothing to score: {', '.join(args.paths)} holds no files")
    scorer = Scorer.load(args.model, providers=args.provider, device=args.device, threads=args.threads,
                         fast_decode=not args.full_decode, precision=args.precision)
    if not args.out:
        _stdout_keeps_any_name()
    sink = RowSink(args.out, scorer.uses_face, resume=args.resume)
    n_new, seconds = _score_into(sink, scorer, _chain(first, entries), args)
    info = _run_info(scorer, args, n_new, seconds)
    summary = sink.finish(args.model, {k: info[k] for k in FILE_SUMMARY_KEYS if k in info}, stdout=sys.stdout,
                          stdout_format=".json" if args.json else ".csv")
    _report({**summary, **info}, args)
    return 1 if summary["failed"] else 0


def _stdout_keeps_any_name() -> None:
    """Rows on stdout: a file name that is not UTF-8 goes out as its own bytes, as in a CSV file."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")


def _score_into(sink, scorer, entries, args) -> tuple[int, float]:
    """Score every entry not done yet into `sink`; (rows added, seconds)."""
    from edgeiqa.runtime.output import make_row
    from edgeiqa.runtime.items import Listed

    todo = (e for e in entries if not sink.done(e.path if isinstance(e, Listed) else e))
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(unit="img", file=sys.stderr, dynamic_ncols=True, desc="scoring", smoothing=0.1)
    t0 = time.perf_counter()
    n_new = 0
    try:
        for res in scorer.iter_score(todo, batch_size=args.batch, workers=args.workers):
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
    return n_new, time.perf_counter() - t0


def _run_info(scorer, args, n_new: int, seconds: float) -> dict:
    return {"new": n_new, "images_per_s": round(n_new / seconds, 2) if seconds > 0 else None,
            "backend": scorer.backend.name, "provider": scorer.backend.provider,
            "device": scorer.backend.device, "precision": getattr(scorer.backend, "precision", "fp32"),
            "threads": scorer.backend.threads, "workers": args.workers, "batch": args.batch,
            "fast_decode": scorer.fast}


def _report(summary: dict, args) -> None:
    """The run's summary (timings included) on stdout with --json --out, else one line on stderr."""
    done = f"scored {summary['scored']}/{summary['files']} files ({summary['failed']} not scored)"
    if args.out and args.json:
        print(json.dumps({**summary, "out": str(args.out)}, indent=2))
    elif args.out:
        print(f"{done} -> {args.out}", file=sys.stderr)
    elif not args.json:
        print(done, file=sys.stderr)


def _chain(first, rest):
    yield first
    yield from rest
