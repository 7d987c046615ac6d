"""Does a fine-tuned backbone learn BIQ2021's capture-fault subset where frozen features do not? A probe on the
official TRAIN split only.

    python benchmarks/subset_finetune.py --data biq2021:ROOT --work runs/ss02_ft [--subset ss02] [--fold 0]
                                         [--member lite0_mv] [--epochs 6]

One fold of the same 5-fold split of the subset's official-train photos that `subset_probe.py` uses (KFold,
shuffled, seed 0): the held-out fold is written as the `test` split of a CSV, the other four folds as `train` (val
carved from them by the csv spec, `val=0.1`). The official test split is never read. Two runs of `edgeiqa teachers
train --profile biq2021` on that CSV, one member, ranking pre-training off (it needs a pool):
- `frozen`:   the member's head on its frozen ImageNet backbone (the teachers' default);
- `finetune`: the same member trained end to end (`--finetune`), `--epochs` epochs, best epoch by val.
Each run is a stage folder WORK/<subset>_fold<K>/<run>: one whose card.json exists is read, not rerun, and a killed
fine-tune continues from its last epoch (`--resume`). Results: benchmarks/results/biq2021_subset_finetune.json (the
held-out fold's SRCC/PLCC for both runs, their times, and the ridge probe's number on the same subset for reference).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "biq2021_subset_finetune.json"
RUNS = ("frozen", "finetune")


def fold_csv(records, subset: str, fold: int, folds: int, seed: int, out: Path) -> dict:
    """The subset's official-train photos as a CSV: fold `fold` of `folds` is `test`, the rest `train`."""
    from sklearn.model_selection import KFold

    recs = [r for r in records if r.group == subset and r.split in ("train", "val") and r.score is not None]
    if len(recs) < folds:
        raise SystemExit(f"subset_finetune.py: subset {subset!r} has {len(recs)} official-train photos, fewer than the "
                         f"{folds} folds")
    held = set(list(KFold(folds, shuffle=True, random_state=seed).split(np.arange(len(recs))))[fold][1].tolist())
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "score", "split"])
        for i, r in enumerate(recs):
            w.writerow([str(Path(r.path).resolve()), r.score, "test" if i in held else "train"])
    return {"photos": len(recs), "held_out": len(held)}


def run_stage(name: str, csv_path: Path, stage: Path, member: str, epochs: int, seed: int) -> float | None:
    """`edgeiqa teachers train` of one member on the fold's CSV; seconds taken, None when the stage was done before."""
    if (stage / "card.json").exists():
        return None
    cmd = [sys.executable, "-m", "edgeiqa", "teachers", "train", "--teacher", member, "--profile", "biq2021",
           "--data", f"csv:{csv_path}?val=0.1", "--rank-epochs", "0", "--seed", str(seed), "--out", str(stage)]
    if name == "finetune":
        cmd += ["--finetune", "--epochs", str(epochs)] + (["--resume"] if stage.exists() else [])
    t0 = time.time()
    rc = subprocess.run(cmd).returncode
    if rc:
        raise SystemExit(f"subset_finetune.py: the {name} run failed (`edgeiqa teachers train` exit {rc}, its message "
                         f"above); finished stages under {stage.parent} are kept")
    return round(time.time() - t0, 1)


def member_row(stage: Path, member: str) -> dict:
    card = json.loads((stage / "card.json").read_text())
    row = next(r for r in card["table"] if r["model"] == member)

    def part(name: str) -> dict:  # a split too small for a correlation has none in the card
        got = row.get(name) or {}
        return {k: None if got.get(k) is None else round(got[k], 4) for k in ("srcc", "plcc")}

    return {"held_out_fold": part("test"), "val": part("val"), "train": part("train"), "gmacs": row.get("gmacs"),
            "card_seconds": card.get("seconds")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="biq2021:ROOT")
    ap.add_argument("--work", type=Path, default=Path("runs/subset_finetune"), help="stage folders (default runs/subset_finetune)")
    ap.add_argument("--subset", default="ss02", help="ss01, ss02 or ss03 (default ss02)")
    ap.add_argument("--fold", type=int, default=0, help="the held-out fold, 0..4 (default 0)")
    ap.add_argument("--member", default="lite0_mv", help="teacher member (default lite0_mv)")
    ap.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs (default 6, the profile's)")
    ap.add_argument("--runs", default=",".join(RUNS), help="frozen, finetune or both (default both)")
    ap.add_argument("--machine", default="2 CPU cores, no GPU", help="machine state recorded in the results")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    folds, seed = 5, 0  # the split subset_probe.py cross-validates over
    if not args.data.startswith("biq2021:"):
        ap.error(f"--data must be biq2021:ROOT, got {args.data!r}")
    if args.subset not in ("ss01", "ss02", "ss03"):
        ap.error(f"--subset must be ss01, ss02 or ss03, got {args.subset!r}")
    if not 0 <= args.fold < folds:
        ap.error(f"--fold must be 0..{folds - 1}, got {args.fold}")
    if args.epochs < 1:
        ap.error(f"--epochs must be >= 1, got {args.epochs}")
    from edgeiqa.errors import EdgeIQAError
    from edgeiqa.teachers.registry import get_teacher_entry

    try:
        get_teacher_entry(args.member)
    except EdgeIQAError as e:
        ap.error(f"--member: {e}")
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not runs or any(r not in RUNS for r in runs):
        ap.error(f"--runs takes {', '.join(RUNS)}, got {args.runs!r}")

    from edgeiqa.data.datasets import load_dataset
    from edgeiqa.fileio import write_json_atomic
    from edgeiqa.provenance import measured

    base = args.work / f"{args.subset}_fold{args.fold}"
    csv_path = base / "fold.csv"
    split = fold_csv(load_dataset(args.data).records, args.subset, args.fold, folds, seed, csv_path)
    rows, seconds = {}, {}
    for name in runs:
        seconds[name] = run_stage(name, csv_path, base / name, args.member, args.epochs, seed)
    for name in RUNS:
        if (base / name / "card.json").exists():
            rows[name] = {**member_row(base / name, args.member), "seconds_this_call": seconds.get(name)}
    probe = ROOT / "benchmarks" / "results" / "biq2021_subset_probe.json"
    ridge = None
    if probe.exists():
        ridge = json.loads(probe.read_text())["subsets"].get(args.subset, {}).get("ridge_cv_srcc", {}).get(args.member)
    doc = {"what": f"BIQ2021 {args.subset}: a teacher member frozen vs fine-tuned, trained inside fold {args.fold} of "
                   f"{folds} of the subset's official-train photos and scored on the held-out fold (test never read)",
           "command": "python benchmarks/subset_finetune.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           **measured(ROOT, args.machine), "subset": args.subset, "fold": args.fold, "folds": folds, "seed": seed,
           "member": args.member, "finetune_epochs": args.epochs, **split,
           "ridge_probe_5fold_srcc": ridge, "runs": rows}
    write_json_atomic(args.out, doc, indent=1)
    for name, r in rows.items():
        print(f"{name}: held-out fold SRCC {r['held_out_fold']['srcc']}, val {r['val']['srcc']}, train {r['train']['srcc']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
