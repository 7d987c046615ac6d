"""The Must-hold measurement of `edgeiqa bench`: `python benchmarks/bench_sample.py RUN_DIR`.

Runs, as two separate processes one after the other, exactly what a user types:

    edgeiqa bench RUN_DIR --formats torch,onnx,onnx-int8 --compare-teacher --out OUT/run1
    edgeiqa bench RUN_DIR --formats torch,onnx,onnx-int8 --compare-teacher --out OUT/run2

(plus any --data / --threads / --teachers / --max-images given here) and checks:
1. the first run completes in under 5 minutes (wall clock, exports included when there are none to
   reuse) and prints the table; its bench.json has every column (edgeiqa.bench.COLUMNS) in every row;
2. the ONNX student is at least 20x faster than the teacher ensemble (`speedup_vs_teacher` of the onnx
   row at batch 1) -- when it is not, the result says so with the two latencies and GMACs so the note
   can explain why;
3. repeatability: every format is measured in both runs and, for every format and batch, the p50
   latency of the two runs differs by at most 25 % (|a - b| / min(a, b) <= 0.25).
Writes OUT/must_hold.json (default OUT = RUN_DIR/bench-must-hold) and exits 1 when a check fails.
Not a test: it takes minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MAX_SECONDS = 300.0
MIN_SPEEDUP = 20.0
MAX_P50_DRIFT = 0.25
FORMATS = "torch,onnx,onnx-int8"


def bench_once(run_dir: str, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "edgeiqa", "bench", run_dir, "--formats", FORMATS, "--compare-teacher",
           "--out", str(out), *extra]
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - t0
    (out / "stdout.txt").write_text(proc.stdout)
    (out / "stderr.txt").write_text(proc.stderr)
    report = json.loads((out / "bench.json").read_text()) if (out / "bench.json").exists() else None
    return {"cmd": " ".join(cmd), "rc": proc.returncode, "wall_s": round(wall, 1), "report": report,
            "table_printed": "edgeiqa bench" in proc.stdout and "p50 ms" in proc.stdout}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="the distilled sample student's run folder (student.pt + card.json)")
    ap.add_argument("--out", default=None, help="results folder (default RUN_DIR/bench-must-hold)")
    ap.add_argument("--data", default=None, help="passed to edgeiqa bench --data (default: the card's dataset)")
    ap.add_argument("--teachers", default=None, help="passed to edgeiqa bench --teachers (default: the card's)")
    ap.add_argument("--threads", type=int, default=None, help="passed to edgeiqa bench --threads (default: all cores)")
    ap.add_argument("--max-images", type=int, default=None, help="passed to edgeiqa bench --max-images")
    ap.add_argument("--machine", default="2 CPU cores, no GPU", help="machine state recorded in the results")
    args = ap.parse_args(argv)

    from edgeiqa.bench import COLUMNS
    from edgeiqa.provenance import measured

    out = Path(args.out) if args.out else Path(args.run_dir) / "bench-must-hold"
    extra = []
    for flag, value in (("--data", args.data), ("--teachers", args.teachers), ("--threads", args.threads),
                        ("--max-images", args.max_images)):
        if value is not None:
            extra += [flag, str(value)]

    runs = [bench_once(args.run_dir, out / "run1", extra), bench_once(args.run_dir, out / "run2", extra)]
    first, second = runs
    result: dict = {**measured(Path(__file__).resolve().parents[1], args.machine), "run_dir": args.run_dir,
                    "runs": [{k: v for k, v in r.items() if k != "report"} for r in runs]}
    checks = {}
    if first["report"] is None or second["report"] is None:
        result["error"] = "a bench run wrote no bench.json; see stderr.txt in " + str(out)
        checks["completed"] = False
    else:
        rows1, rows2 = first["report"]["rows"], second["report"]["rows"]
        checks["under_5_minutes"] = first["wall_s"] < MAX_SECONDS
        checks["table_printed"] = first["table_printed"]
        missing = sorted({c for r in rows1 for c in COLUMNS if c not in r})
        checks["every_column"] = not missing and all(list(r) == COLUMNS for r in rows1)
        result["missing_columns"] = missing
        by1 = {(r["format"], r["batch"]): r for r in rows1}
        by2 = {(r["format"], r["batch"]): r for r in rows2}
        onnx, teacher = by1.get(("onnx", 1)), by1.get(("teacher", 1))
        result["speedup"] = {
            "onnx_p50_ms": onnx and onnx["p50_ms"], "teacher_p50_ms": teacher and teacher["p50_ms"],
            "onnx_gmacs": onnx and onnx["gmacs"], "teacher_gmacs": teacher and teacher["gmacs"],
            "speedup_vs_teacher": onnx and onnx["speedup_vs_teacher"],
            "gmacs_ratio": (teacher["gmacs"] / onnx["gmacs"]) if onnx and teacher and onnx["gmacs"] and teacher["gmacs"] else None,
            "onnx_srcc": onnx and onnx["srcc"], "teacher_srcc": teacher and teacher["srcc"],
            "srcc_kept_vs_teacher": onnx and onnx["srcc_kept_vs_teacher"],
        }
        checks["onnx_20x_faster_than_teacher"] = bool(onnx and onnx["speedup_vs_teacher"]
                                                      and onnx["speedup_vs_teacher"] >= MIN_SPEEDUP)
        drift = {}
        for key, r1 in by1.items():
            r2 = by2.get(key)
            if r2 is None or not r1.get("p50_ms") or not r2.get("p50_ms"):
                continue
            a, b = r1["p50_ms"], r2["p50_ms"]
            drift[f"{key[0]}@{key[1]}"] = {"run1_p50_ms": round(a, 3), "run2_p50_ms": round(b, 3),
                                           "rel_diff": round(abs(a - b) / min(a, b), 4),
                                           "other_cpu_pct": [r1.get("other_cpu_pct"), r2.get("other_cpu_pct")]}
        result["p50_drift"] = drift
        checks["p50_within_25_percent"] = bool(drift) and all(d["rel_diff"] <= MAX_P50_DRIFT for d in drift.values())
        result["statuses"] = {f"run{i}": {f"{r['format']}@{r['batch']}": (r["status"] + (f": {r['reason']}" if r["reason"] else ""))
                                           for r in rows} for i, rows in ((1, rows1), (2, rows2))}
        checks["every_format_measured_twice"] = all(r.get("p50_ms") for r in rows1 + rows2)
        result["device"] = first["report"]["device"]["name"]
        result["threads"] = first["report"]["settings"]["threads"]
        result["ceiling"] = {k: v["best_gmacs_per_s"] for k, v in first["report"]["ceiling"].items()
                             if isinstance(v, dict) and "best_gmacs_per_s" in v}
    result["checks"] = checks
    result["passed"] = bool(checks) and all(checks.values())
    out.mkdir(parents=True, exist_ok=True)
    (out / "must_hold.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"} | {"wall_s": [r["wall_s"] for r in runs]},
                     indent=2, default=str))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
