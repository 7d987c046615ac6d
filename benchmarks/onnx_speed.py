"""Does the runtime's onnxruntime session run an ONNX student as fast as this CPU allows?

    python benchmarks/onnx_speed.py MODEL.onnx [--threads N] [--rounds 8] [--runs 40] [--run RUN_DIR]

Times, at batch 1 in the same process, blocks of calls of
  runtime      `edgeiqa.runtime.backends.OnnxBackend` (what `edgeiqa score` and `edgeiqa bench` run),
  ort_default  a plain onnxruntime session with only the thread count set (onnxruntime's own defaults),
  no_spinning  the same with `session.intra_op.allow_spinning = 0` (the setting that cost the bench row ~15 %),
each setting in its own block of --runs calls (interleaving single calls would let one session's spinning
threads steal the cores of the next), blocks repeated --rounds times in turn; and the machine's dense-compute
ceiling (`edgeiqa.bench.ceiling`, onnxruntime conv). With --run, also `edgeiqa bench RUN --formats onnx` as a user
types it, its p50 read from bench.json.

Exits 1 when the runtime reaches < 60 % of the conv ceiling or is > 10 % slower than `ort_default`: the check that
would have caught the regression of issue 24 (p50 20.9 ms, 43 % of the ceiling, for the 1.0-GMAC student).
Writes benchmarks/results/onnx_speed.json (--out to change). Time it on an idle machine (p50s swing by 10-30 %
from run to run on a shared 2-core VM; the rounds make the comparison side by side).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "onnx_speed.json"
MIN_CEILING = 0.60
MAX_SLOWER = 0.10


def plain_session(path: Path, threads: int, spinning: bool | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if spinning is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda feeds: sess.run(None, feeds)


def time_blocks(calls: dict, feeds: dict, rounds: int, runs: int) -> dict[str, list[float]]:
    times = {k: [] for k in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(5):  # wake the session's threads
                call(feeds)
            for _ in range(runs):
                t0 = time.perf_counter()
                call(feeds)
                times[name].append((time.perf_counter() - t0) * 1e3)
            time.sleep(0.3)
    return times


def bench_cli_p50(run_dir: str, threads: int) -> float | None:
    """`edgeiqa bench RUN --formats onnx` in its own process, as a user runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "edgeiqa", "bench", run_dir, "--formats", "onnx", "--runs", "60",
               "--threads", str(threads), "--max-images", "24", "--no-plots", "--out", tmp]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows = json.loads((Path(tmp) / "bench.json").read_text())["rows"]
        return next((r["p50_ms"] for r in rows if r["format"] == "onnx" and r.get("batch") == 1), None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="an exported student (.onnx, fp32)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all usable cores)")
    ap.add_argument("--rounds", type=int, default=8, help="blocks per setting (default 8)")
    ap.add_argument("--runs", type=int, default=40, help="timed calls per block (default 40)")
    ap.add_argument("--run", default=None, help="a run folder: also time `edgeiqa bench RUN --formats onnx`")
    ap.add_argument("--machine", default="idle 2-core machine", help="machine state recorded in the results")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results file")
    args = ap.parse_args(argv)
    if not args.model.is_file() or args.model.suffix != ".onnx":
        ap.error(f"{args.model}: not an .onnx file")

    from edgeiqa.bench.ceiling import onnxruntime_ceiling
    from edgeiqa.bounds import usable_cores
    from edgeiqa.fileio import write_json_atomic
    from edgeiqa.provenance import measured
    from edgeiqa.runtime.backends import OnnxBackend

    threads = args.threads or usable_cores()
    backend = OnnxBackend(args.model, threads=threads)
    gmacs = ((backend.metadata or {}).get("gmacs") or {}).get("card")  # fvcore count, as `bench` uses
    feeds = {name: np.random.default_rng(0).random([1, *shape[1:]], dtype=np.float32)
             for name, shape in backend.input_shapes.items()}
    calls = {"runtime": backend.run,
             "ort_default": plain_session(args.model, threads, None),
             "no_spinning": plain_session(args.model, threads, False)}
    times = time_blocks(calls, feeds, args.rounds, args.runs)
    ceiling = onnxruntime_ceiling(threads)["conv_gmacs_per_s"]

    def pct_ceiling(p50_ms: float | None) -> float | None:
        return round(100 * gmacs / (p50_ms / 1e3) / ceiling, 1) if gmacs and p50_ms else None

    rows = {}
    for name, ms in times.items():
        p50 = statistics.median(ms)
        rows[name] = {"p50_ms": round(p50, 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
                      "block_p50_ms": [round(statistics.median(ms[i:i + args.runs]), 2) for i in range(0, len(ms), args.runs)],
                      "pct_ceiling": pct_ceiling(p50)}
    if args.run:
        p50 = bench_cli_p50(args.run, threads)
        rows["edgeiqa_bench_cli"] = {"p50_ms": round(p50, 2) if p50 else None, "pct_ceiling": pct_ceiling(p50)}
    rt, plain = rows["runtime"], rows["ort_default"]
    checks = {"runtime_pct_ceiling_ge_60": bool(rt["pct_ceiling"] is not None and rt["pct_ceiling"] >= 100 * MIN_CEILING),
              "runtime_within_10pct_of_ort_default": rt["p50_ms"] <= plain["p50_ms"] * (1 + MAX_SLOWER)}
    doc = {"what": "ONNX student at batch 1: the runtime's session vs plain onnxruntime sessions and the conv ceiling",
           "command": "python benchmarks/onnx_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
           **measured(ROOT, args.machine), "threads": threads,
           "model": args.model.name, "gmacs": gmacs, "ceiling_conv_gmacs_per_s": ceiling,
           "rounds": args.rounds, "runs_per_block": args.runs, "rows": rows, "checks": checks}
    write_json_atomic(args.out, doc)
    for name, r in rows.items():
        print(f"{name:20s} p50 {r['p50_ms']} ms  ({r['pct_ceiling']} % of {ceiling} GMAC/s)")
    print(f"checks: {checks}; wrote {args.out}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
