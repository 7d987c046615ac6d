"""Time the main job on the embedded sample set and check the bars of the teachers and distill issues.

    python benchmarks/distill_sample.py [--out runs/bench-sample] [--stage teachers|distill]

`--stage teachers` times `edgeiqa teachers train --teacher ensemble` alone (bar: < 10 min on 2 cores;
ensemble test scenes: SRCC median >= 0.90, mean >= 0.80, no distortion kind < 0.50).
`--stage distill` (default) times `distill --teacher ensemble --budget 50` end to end from nothing
(bar: < 20 min; student <= 50 GMACs and <= 1/10 of the ensemble; student SRCC median >= 0.90,
mean >= 0.80, >= 95 % of the ensemble's mean, no kind < 0.50).
Writes the measured numbers to OUT/benchmark.json and prints them; exits 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(cmd: list[str]) -> tuple[float, dict]:
    t0 = time.time()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    seconds = time.time() - t0
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return seconds, json.loads(proc.stdout)


def bars_for(side: dict) -> dict:
    return {
        "srcc_scene_median>=0.90": (side.get("srcc_scene_median") or 0) >= 0.90,
        "srcc_scene_mean>=0.80": (side.get("srcc_scene_mean") or 0) >= 0.80,
        "srcc_kind_worst>=0.50": (side.get("srcc_kind_worst") or 0) >= 0.50,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-sample")
    ap.add_argument("--stage", choices=["teachers", "distill"], default="distill")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)  # from nothing: no reused teachers or labels
    if args.stage == "teachers":
        seconds, card = run([sys.executable, "-m", "edgeiqa", "teachers", "train", "--teacher", "ensemble",
                             "--out", str(out / "teachers"), "--json", "--quiet"])
        test = card["metrics"]["ensemble"]["test"]
        bars = {"minutes<10": seconds < 600, **bars_for(test)}
        result = {"stage": "teachers", "seconds": round(seconds, 1), "ensemble_test": {k: test.get(k) for k in
                  ("srcc_scene_median", "srcc_scene_mean", "srcc_kind_worst", "worst_kind", "per_kind")},
                  "weights": card["weights"], "members": {n: card["metrics"][n].get("test", {}).get("srcc_scene_mean")
                                                          for n in card["members"]}}
    else:
        seconds, card = run(["distill", "--teacher", "ensemble", "--budget", "50", "--out", str(out), "--json", "--quiet"])
        s, t = card["student"], card["teacher"]
        bars = {"minutes<20": seconds < 1200, "student_gmacs<=50": s["gmacs"] <= 50,
                "student<=teacher/10": s["gmacs"] <= t["gmacs"] / 10,
                "kept>=0.95": (card["ratios"]["srcc_scene_mean_kept"] or 0) >= 0.95,
                **{f"student {k}": v for k, v in bars_for(s).items()}, **{f"teacher {k}": v for k, v in bars_for(t).items()}}
        keys = ("gmacs", "srcc_scene_median", "srcc_scene_mean", "srcc_kind_worst", "worst_kind", "plcc", "srcc")
        result = {"stage": "distill", "seconds": round(seconds, 1), "stage_seconds": card["seconds"],
                  "student": {k: s.get(k) for k in keys}, "teacher": {k: t.get(k) for k in keys},
                  "ratios": card["ratios"], "teacher_weights": t["weights"]}
    result.update({"bars": bars, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                            "processor": platform.processor()}})
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if all(bars.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
