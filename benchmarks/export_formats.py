"""Every format of the formats table exported from one student, with what each export measured about itself.

    python benchmarks/export_formats.py RUN_DIR [--formats LIST] [--collect] [--machine TEXT]

Runs `edgeiqa export RUN_DIR --format F --json` for every format whose extra is installed here (TensorRT and any
format missing its extra are listed as not run, with the install command), one process each, then reads what each
export wrote into its `.json` sidecar: size on disk (and vs the float32 ONNX graph), the GMAC recount against the
card, parity against torch on real images (the export's own check: its images, bar and verdict), and for int8 rows
the float-layer ladder (which layers stayed float, and every try). `--collect` runs nothing and reads the sidecars
already in RUN_DIR/export (from exports you ran yourself). Writes benchmarks/results/export_formats_sample.json
(`--out` to change), with the commit, date and machine state. Latency is not measured here: `edgeiqa bench` does
that, and `--bench BENCH_JSON` adds the rows of its bench.json (latency p50/p95 per batch, images/s, SRCC on its
data) to each format, e.g. after `edgeiqa bench RUN_DIR --formats ... --threads 1 --batch 1,8 --out OUT`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "export_formats_sample.json"


def sidecar_row(fmt, artefact: Path) -> dict:
    """The numbers of one export, as its sidecar holds them, and the artefact's size on disk (with its companion
    files; the sidecar's own count is taken before the metadata is embedded)."""
    from edgeiqa.export.formats import artefact_bytes

    doc = json.loads(artefact.with_suffix(fmt.sidecar_suffix).read_text())
    parity, quant = doc.get("parity") or {}, doc.get("quantization") or {}
    floats = quant.get("float_layers") or {}
    backbone = floats.get("backbone") or floats.get("kept_for_accuracy") or {}
    return {"format": fmt.name, "artefact": doc.get("artifact"), "precision": doc.get("precision"),
            "size_bytes": artefact_bytes(artefact), "size_vs_fp32_onnx": (doc.get("size") or {}).get("ratio_to_fp32"),
            "gmacs_match": (doc.get("gmacs") or {}).get("match"),
            "parity": {k: parity.get(k) for k in ("ok", "skipped", "n_images", "srcc", "max_abs_diff", "mean_abs_diff", "bar")},
            "float_backbone_layers": backbone.get("names") if quant else None,
            "ladder": [{k: t.get(k) for k in ("float_backbone_layers", "srcc_vs_fp32", "passed")}
                       for t in (quant.get("ladder") or {}).get("tries", [])] or None,
            "versions": doc.get("versions")}


BENCH_KEYS = ("status", "reason", "threads", "p50_ms", "p95_ms", "images_per_s", "peak_rss_mb", "srcc", "plcc",
              "n_eval", "parity_max_abs", "other_cpu_pct")


def bench_rows(bench_json: Path) -> dict[str, list[dict]]:
    """The `edgeiqa bench` rows of each format (one per batch size), with the numbers a latency table needs."""
    doc = json.loads(bench_json.read_text())
    out: dict[str, list[dict]] = {}
    for row in doc.get("rows", []):
        out.setdefault(row["format"], []).append({"batch": row.get("batch"), **{k: row.get(k) for k in BENCH_KEYS}})
    return out


def export_one(run_dir: Path, name: str) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgeiqa", "export", str(run_dir), "--format", name, "--json"],
                          capture_output=True, text=True)
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    return proc.returncode, round(time.perf_counter() - t0, 1), last


def main(argv=None) -> int:
    from edgeiqa.bench.runner import export_formats_arg
    from edgeiqa.export.formats import FORMATS, missing_extra
    from edgeiqa.fileio import write_json_atomic
    from edgeiqa.provenance import measured

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="a student run folder (student.pt + card.json), e.g. the main job's student/")
    ap.add_argument("--formats", type=export_formats_arg, default=",".join(n for n in FORMATS if n != "torch"),
                    help="comma-separated formats (default: every row but torch)")
    ap.add_argument("--collect", action="store_true", help="export nothing: read the sidecars already in RUN_DIR/export")
    ap.add_argument("--machine", default="2 CPU cores, no GPU", help="machine state recorded in the results")
    ap.add_argument("--bench", type=Path, default=None, metavar="BENCH_JSON",
                    help="a bench.json from `edgeiqa bench` on the same run folder: its latency rows join each format")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    names = args.formats
    if not (args.run_dir / "student.pt").is_file():
        ap.error(f"{args.run_dir}: no student.pt (a run folder from `distill`)")
    if args.bench is not None and not args.bench.is_file():
        ap.error(f"--bench {args.bench}: no such file (the bench.json that `edgeiqa bench --out DIR` writes)")
    latency = bench_rows(args.bench) if args.bench else {}

    rows = []
    for name in names:
        fmt = FORMATS[name]
        missing = missing_extra(fmt)
        if missing:
            rows.append({"format": name, "not_run": missing})
            continue
        run = None
        if not args.collect:
            rc, seconds, last = export_one(args.run_dir, name)
            run = {"rc": rc, "export_s": seconds, **({"last_line": last} if rc else {})}
            print(f"{name}: rc {rc}, {seconds} s", file=sys.stderr)
        artefact = args.run_dir / "export" / fmt.filename
        sidecar = artefact.with_suffix(fmt.sidecar_suffix)
        if not (sidecar.is_file() and artefact.exists()):
            rows.append({"format": name, "not_run": f"no export at {artefact}", **({"export": run} if run else {})})
            continue
        rows.append({**sidecar_row(fmt, artefact), **({"export": run} if run else {}),
                     **({"bench": latency[name]} if name in latency else {})})
    doc = {"what": "every format exported from one student: size, GMAC recount, the export's own parity check vs torch "
                   "and the int8 float-layer ladders", "command": "python benchmarks/export_formats.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
           **measured(ROOT, args.machine), "run_dir": str(args.run_dir),
           **({"bench": {"file": str(args.bench), "device": json.loads(args.bench.read_text()).get("device")}}
              if args.bench else {}), "rows": rows}
    doc["p50_ms_batch1"] = {r["format"]: round(b["p50_ms"], 2) for r in rows for b in r.get("bench", [])
                            if b["batch"] == 1 and b.get("p50_ms") is not None}  # the README's one-line summary
    write_json_atomic(args.out, doc, indent=1)
    for r in rows:
        p = r.get("parity") or {}
        verdict = r.get("not_run") or f"SRCC {p.get('srcc')}, max |diff| {p.get('max_abs_diff')}, ok {p.get('ok')}"
        b1 = next((b for b in r.get("bench", []) if b["batch"] == 1 and b.get("p50_ms")), None)
        print(f"{r['format']:16s} {verdict}" + (f", p50 {b1['p50_ms']:.1f} ms at batch 1" if b1 else ""))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
