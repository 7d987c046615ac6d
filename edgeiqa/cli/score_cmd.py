"""`edgeiqa score PATH... --model M`: score files and folders, one row per file, bad files with a reason.

With an ONNX model this command never imports torch, timm or the training code.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import write_text_atomic

SCORE_DECIMALS = 6

EPILOG = """\
output: one row per file, sorted by path: path,score,status,error (+ face_found when the model has a face
view). status is ok or error; error holds the reason (truncated, empty, not an image, too small, too large
- refused before decoding -, ...). Scores are printed with a fixed 6 decimals and batches are formed in
path order, so scoring the same files twice gives byte-identical output whatever --workers is.

exit code: 0 every file scored; 1 at least one file failed (its row says why); 2 a usage error (model
not found, bad provider, ...).

examples:
  edgeiqa score photos/ --model runs/sample/export/student.onnx --out scores.csv
  edgeiqa score a.jpg b.png --model runs/sample --json
  edgeiqa score photos/ --model student-int8.onnx --provider cpu --batch 16 --workers 4
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
                   help="image files and/or folders; folders are searched recursively for image extensions "
                   "(.jpg .jpeg .png .bmp .tif .tiff .webp); files named explicitly are attempted whatever their extension")
    p.add_argument("--model", "-m", required=True, metavar="M",
                   help="model: .onnx, .engine (+ its .json sidecar), student .pt, or a run folder holding student.pt")
    p.add_argument("--out", "-o", metavar="FILE", default=None,
                   help="write the rows to FILE: .csv or .json (default: CSV on stdout)")
    p.add_argument("--batch", type=int, default=8, metavar="N", help="images per inference batch (default 8)")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="threads that decode and preprocess images in parallel (default 2); does not change scores")
    p.add_argument("--device", default=None, metavar="D", help="cpu (default), cuda or cuda:N")
    p.add_argument("--provider", action="append", default=None, metavar="P",
                   help="onnxruntime execution provider (repeat for a fallback list; aliases cpu, cuda, tensorrt, "
                   "coreml, openvino); the first must be the one that runs, else an error")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="intra-op threads of the inference backend")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true",
                   help="print JSON on stdout (the rows when no --out is given, else a summary)")
    p.set_defaults(func=run)


def collect_paths(raw: list[str]) -> tuple[list[Path], list[Path]]:
    """(paths to score, explicitly named paths that do not exist). Unique, sorted by path string."""
    from edgeiqa.data.images import iter_image_files

    found, missing = {}, []
    for r in raw:
        p = Path(r)
        if not p.exists():
            missing.append(p)
            continue
        for f in iter_image_files([p], recursive=True):
            found.setdefault(str(f), f)
    return [found[k] for k in sorted(found)], missing


def _fmt_score(score) -> str:
    return "" if score is None else f"{score:.{SCORE_DECIMALS}f}"


def rows_from_results(results, missing: list[Path], with_face: bool) -> list[dict]:
    rows = []
    for r in results:
        row = {"path": r.path, "score": None if r.score is None else round(r.score, SCORE_DECIMALS),
               "status": "ok" if r.ok else "error", "error": r.error or ""}
        if with_face:
            row["face_found"] = r.info.get("face_found") if r.ok else None
        rows.append(row)
    for p in missing:
        row = {"path": str(p), "score": None, "status": "error", "error": "file not found"}
        if with_face:
            row["face_found"] = None
        rows.append(row)
    rows.sort(key=lambda x: x["path"])
    return rows


def to_csv(rows: list[dict], with_face: bool) -> str:
    buf = io.StringIO()
    fields = ["path", "score", "status", "error"] + (["face_found"] if with_face else [])
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for r in rows:
        vals = [r["path"], _fmt_score(r["score"]), r["status"], r["error"]]
        if with_face:
            ff = r.get("face_found")
            vals.append("" if ff is None else str(bool(ff)).lower())
        w.writerow(vals)
    return buf.getvalue()


def to_json(rows: list[dict], model: str, summary: dict) -> str:
    return json.dumps({"model": model, "summary": summary, "results": rows}, indent=2) + "\n"


def run(args) -> int:
    from edgeiqa.runtime import Scorer

    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise EdgeIQAError(f"--out {args.out}: use a .csv or .json file name")
    if args.batch < 1 or args.workers < 1:
        raise EdgeIQAError("--batch and --workers must be >= 1")
    paths, missing = collect_paths(args.paths)
    scorer = Scorer.load(args.model, providers=args.provider, device=args.device, threads=args.threads)
    results = scorer.score(paths, batch_size=args.batch, workers=args.workers, progress=not args.no_progress)
    rows = rows_from_results(results, missing, scorer.uses_face)
    n_err = sum(1 for r in rows if r["status"] != "ok")
    summary = {"files": len(rows), "scored": len(rows) - n_err, "failed": n_err,
               "backend": scorer.backend.name, "provider": scorer.backend.provider}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        text = to_json(rows, args.model, summary) if out.suffix.lower() == ".json" else to_csv(rows, scorer.uses_face)
        write_text_atomic(out, text)
        if args.json:
            print(json.dumps({**summary, "out": str(out)}, indent=2))
        else:
            print(f"scored {summary['scored']}/{summary['files']} files ({n_err} failed) -> {out}", file=sys.stderr)
    else:
        sys.stdout.write(to_json(rows, args.model, summary) if args.json else to_csv(rows, scorer.uses_face))
        if not args.json:
            print(f"scored {summary['scored']}/{summary['files']} files ({n_err} failed)", file=sys.stderr)
    return 1 if n_err else 0
