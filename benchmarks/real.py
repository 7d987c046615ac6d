"""BIQ2021, real photos scored by people: the two user situations on the official test split.

    python benchmarks/real.py --data biq2021:ROOT [--work runs/real] [--seeds 0,1,2] [--regimes all,few]
                              [--rows teachers,student_distilled,...] [--quick]

Regimes (the dataset spec's options make them, so the labels a regime drops are never loaded):
  all  every train label; val carved from train (10 %), test untouched;
  few  `labels=1000&labels_seed=SEED`: 1,000 labelled train photos, a different draw per seed (val carved from
       them), the other 9,000 an unlabelled pool.

Rows per regime and seed (`_few` suffix in the few regime), each a stage folder WORK/REGIME/sSEED/ROW:
  teachers             the offline members (`teacher_<member>`) and their val-weighted ensemble (`teacher_ensemble`);
  student_distilled    `distill` with the profile's recipe (pseudo-labels of the pool, opinion features, ladders);
  student_labels_only  the same student and schedule on the labelled images alone: no pool, no opinion features,
                       no teacher scores of the ladders (the label-free ranking pre-training stays);
  student_tenth        the distilled recipe with the views shrunk (`--fit input`) to <= 1/10 of the ensemble's GMACs.

A stage whose card.json exists is read, not rerun, and a student stage killed mid-training continues from its last
epoch checkpoint: a killed benchmark resumes by stage, seed and epoch. Every stage of a
seed reuses the backbone features of the first teachers stage (the frozen members' features depend on images,
views and weights only). Compromise for a 2-core machine: the few regime runs the profile's schedule at every seed
(its student trains on 1,000 photos: minutes); in the all regime seed 0 runs the profile's schedule (the real
`distill` run) and seeds >= 1 run `[distill] epochs = 1`. Results: benchmarks/results/real_biq2021.json (mean +- std over the
seeds done, and every seed's numbers), written after every stage.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "real_biq2021.json"
FEW_LABELS = 1000
ROWS = ("teachers", "student_distilled", "student_labels_only", "student_tenth")
PUBLISHED = [  # the dataset's README, same official split
    {"row": "published_DeepEns", "srcc": 0.792, "plcc": 0.810},
    {"row": "published_NASNet-Large", "srcc": 0.673, "plcc": 0.708},
    {"row": "published_Inception-ResNet-V2", "srcc": 0.662, "plcc": 0.700},
    {"row": "published_MobileNet-V2", "srcc": 0.619, "plcc": 0.661},
    {"row": "published_BRISQUE_retrained", "srcc": 0.604, "plcc": 0.694},
    {"row": "published_EfficientNet-B0", "srcc": 0.572, "plcc": 0.614},
]
QUICK = {"train": 240, "test": 80, "labels": 60}


def quick_root(root: Path, work: Path) -> Path:
    """A BIQ2021-layout folder of the first QUICK rows of each CSV (images linked, not copied)."""
    out = work / "quick_root"
    if (out / "Test (Images and MOS).csv").exists():
        return out
    from edgeiqa.data.loading import FileIndex

    (out / "Images").mkdir(parents=True, exist_ok=True)
    images = FileIndex(root / "Images")
    for split, name in (("train", "Train (Images and MOS).csv"), ("test", "Test (Images and MOS).csv")):
        lines = (root / name).read_text(encoding="utf-8").splitlines()
        keep = lines[: QUICK[split] + 1]
        for line in keep[1:]:
            found = images.find(next(csv.reader([line]))[0])  # the loader's case-insensitive lookup
            if found is not None and not (out / "Images" / found.name).exists():
                os.symlink(found, out / "Images" / found.name)
        (out / name).write_text("\n".join(keep) + "\n", encoding="utf-8")
    return out


def spec_for(root: Path, regime: str, quick: bool, seed: int = 0) -> str:
    """The regime's dataset spec; in the few regime each seed keeps its own labelled photos (labels_seed = seed), so
    the spread over seeds includes which 1,000 photos a user happened to label."""
    labels = QUICK["labels"] if quick else FEW_LABELS
    return f"biq2021:{root}" + (f"?labels={labels}&labels_seed={seed}" if regime == "few" else "")


def overrides_for(row: str, seed: int, quick: bool, regime: str = "all") -> dict:
    """The profile changes of a row (see the module docstring)."""
    o: dict = {"seed": seed}
    if (seed > 0 and regime == "all") or quick:
        o["distill.epochs"] = 1
    if quick:
        # The ranking ladders (photos x copies x kinds x levels) would outnumber the quick set's photos six to one.
        o.update({"teacher.head_epochs": 5, "teacher.rank_epochs": 2, "distill.rank_epochs": 2,
                  "distill.ladder_epochs": 2, "teacher.rank_photos": 2, "teacher.rank_copies": ["photo"]})
    if row == "student_labels_only":
        from edgeiqa.profiles import load_profile

        losses = {k: v for k, v in load_profile("biq2021")["distill"]["losses"].items() if k != "feature"}
        o.update({"distill.losses": losses, "distill.ladder_epochs": 0, "distill.pseudo_weight": 0})
    return o


def link_features(src: Path | None, dst: Path, members: list[str]) -> None:
    """Give a fresh teachers folder the frozen backbone features already computed (hard links; the key inside
    each file is checked before use, so a mismatch is recomputed, never trusted)."""
    if src is None or src == dst:
        return
    for m in members:
        a, b = src / m / "backbone_features.pt", dst / m / "backbone_features.pt"
        if a.exists() and not b.exists():
            b.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(a, b)
            except OSError:
                shutil.copy2(a, b)


def run_stage(row: str, regime: str, seed: int, args, features_from: Path | None) -> dict:
    """Run one stage (or read its card when it is done); returns its card."""
    from edgeiqa.data.datasets import load_dataset
    from edgeiqa.distill.pipeline import run_distill
    from edgeiqa.profiles import load_profile
    from edgeiqa.teachers.pipeline import build_ensemble, select_members, teacher_config, train_members

    seed_dir = args.work / regime / f"s{seed}"
    tdir = seed_dir / "teachers"
    stage_dir = seed_dir / row
    card_path = stage_dir / "card.json"
    if card_path.exists():
        return json.loads(card_path.read_text())
    profile = load_profile(args.profile, overrides=overrides_for(row, seed, args.quick, regime))
    spec = spec_for(args.root, regime, args.quick, seed)
    names, left_out = select_members("ensemble", profile, log=lambda m: None)
    link_features(features_from, tdir, names)
    t0 = time.time()
    print(f"[real] {regime} seed {seed} {row}: {spec}", file=sys.stderr, flush=True)
    if row == "teachers":
        ds = load_dataset(spec)
        results = train_members(names, ds, tdir, teacher_config(profile), log=lambda m: print(m, file=sys.stderr))
        _, card = build_ensemble(results, ds, tdir, seconds=round(time.time() - t0, 1), left_out=left_out)
        return card
    budget = None
    fit = None
    if row == "student_tenth":
        teachers = json.loads((tdir / "card.json").read_text())
        budget, fit = round(teachers["gmacs"]["total"] / 10, 4), "input"
    # resume: a stage killed mid-training continues from its last epoch checkpoint (same result as uninterrupted)
    return run_distill(profile, data=spec, out=stage_dir, teachers_dir=tdir, budget=budget, fit=fit, resume=True,
                       progress=sys.stderr.isatty(), log=lambda m: print(m, file=sys.stderr))


def test_row(name: str, metrics: dict, gmacs: float, train_s: float | None) -> dict:
    per = metrics.get("srcc_per_group") or {}
    return {"row": name, "srcc": metrics.get("srcc"), "plcc": metrics.get("plcc"),
            "srcc_per_subset": {k: per[k] for k in sorted(per)}, "gmacs": gmacs, "train_s": train_s}


def rows_of(row: str, card: dict, suffix: str, stage_dir: Path) -> list[dict]:
    """The results rows a stage's card gives (test split metrics: reported, never used to select). A member's
    train_s is its own training time (features included when it computed them); the ensemble's is their sum."""
    if row == "teachers":
        secs = {m: json.loads((stage_dir / m / "member.json").read_text()).get("seconds") for m in card["members"]}
        total = round(sum(secs.values()), 1) if all(v is not None for v in secs.values()) else None
        out = [test_row(f"teacher_ensemble{suffix}", card["metrics"]["ensemble"]["test"], card["gmacs"]["total"], total)]
        for m in card["members"]:
            out.append(test_row(f"teacher_{m}{suffix}", card["metrics"][m]["test"], card["gmacs"]["members"][m], secs[m]))
        return out
    st = card["student"]
    secs = card["seconds"]
    train_s = round(secs.get("student_s", 0) + secs.get("student_rank_s", 0), 1)
    return [test_row(f"{row}{suffix}", st, st["gmacs"], train_s)]


def summarise(per_seed: dict[str, list[tuple[int, dict]]]) -> list[dict]:
    """Mean +- std over seeds for every row (std only with >= 2 seeds)."""
    out = []
    for name, seeds in per_seed.items():
        rows = [r for _, r in seeds]
        agg = {"row": name, "n_seeds": len(rows), "seeds": [s for s, _ in seeds]}
        for key in ("srcc", "plcc", "gmacs", "train_s"):
            vals = [r[key] for r in rows if r.get(key) is not None]
            agg[key] = round(statistics.fmean(vals), 4) if vals else None
            if key in ("srcc", "plcc"):
                agg[f"{key}_std"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else None
        subsets = sorted({k for r in rows for k in r["srcc_per_subset"]})
        agg["srcc_per_subset"] = {k: round(statistics.fmean(r["srcc_per_subset"][k] for r in rows
                                                            if k in r["srcc_per_subset"]), 4) for k in subsets}
        agg["per_seed"] = [{**r, "seed": s} for s, r in seeds]
        out.append(agg)
    return out


def write_results(path: Path, per_seed: dict, done: list[str], args) -> None:
    from edgeiqa.fileio import write_json_atomic
    from edgeiqa.provenance import measured

    what = ("BIQ2021 (Ahmed & Asif, J. Electronic Imaging 31(5) 053010, 2022), official test split (2,000 photos): "
            "all labels vs few labels (1,000 labelled + 9,000 unlabelled)")
    if args.quick:
        what = (f"--quick smoke run, not a result: the first {QUICK['train']} train and {QUICK['test']} test photos of "
                f"BIQ2021, {QUICK['labels']} labels in the few regime, profile overrides {overrides_for('', 0, True)}")
    doc = {
        "what": what,
        "command": "python benchmarks/real.py " + " ".join(sys.argv[1:]),
        **measured(ROOT, args.machine),
        "compromises": "few labels: the profile's schedule at every seed; all labels: seed 0 the profile's schedule (the "
                       "real distill run), seeds >= 1 [distill] epochs = 1. Every stage reuses the frozen members' "
                       "backbone features of the first teachers stage.",
        "rows": summarise(per_seed), "published": PUBLISHED,
        "stages_done": done,
    }
    write_json_atomic(path, doc)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="biq2021:ROOT (the repository as cloned)")
    ap.add_argument("--work", type=Path, default=Path("runs/real"), help="stage folders (resumable); default runs/real")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--regimes", default="all,few", help="all, few or both (default all,few)")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"stages to run, from {', '.join(ROWS)} (default all)")
    ap.add_argument("--profile", default="biq2021", help="profile the rows start from (default biq2021)")
    ap.add_argument("--quick", action="store_true", help=f"smoke run in minutes: the first {QUICK['train']} train and "
                    f"{QUICK['test']} test photos, {QUICK['labels']} labels in the few regime, 1 epoch, ranking ladders of 2 "
                    "photos, seed 0; results go to WORK/real_quick.json")
    ap.add_argument("--report", action="store_true", help="run nothing: write the results of the stages done so far")
    ap.add_argument("--machine", default="2 CPU cores, no GPU", help="machine state recorded in the results")
    ap.add_argument("--out", type=Path, default=None, help=f"results file (default {RESULTS.relative_to(ROOT)})")
    args = ap.parse_args(argv)
    if not args.data.startswith("biq2021:"):
        ap.error(f"--data must be biq2021:ROOT, got {args.data!r}")
    args.root = Path(args.data.split(":", 1)[1].split("?", 1)[0]).expanduser()
    for name in ("Train (Images and MOS).csv", "Test (Images and MOS).csv"):
        if not (args.root / name).is_file():
            ap.error(f"{args.root} lacks {name!r}: expected the BIQ2021 repository as cloned")
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds must be whole numbers, got {args.seeds!r}")
    args.regime_list = [r.strip() for r in args.regimes.split(",") if r.strip()]
    args.row_list = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in args.regime_list if r not in ("all", "few")] + [r for r in args.row_list if r not in ROWS]
    if bad or not args.seed_list or min(args.seed_list) < 0:
        ap.error(f"unknown regime/row {bad}" if bad else "--seeds must be whole numbers >= 0")
    if args.quick:
        args.seed_list = [0]
        args.work = args.work / "quick"
        args.root = quick_root(args.root, args.work)
    args.out = args.out or (args.work / "real_quick.json" if args.quick else RESULTS)
    return args


def collect(work: Path) -> tuple[dict[str, list[tuple[int, dict]]], list[str]]:
    """Every finished stage under WORK (whatever run made it), as results rows per seed."""
    per_seed: dict[str, list[tuple[int, dict]]] = {}
    done = []
    for regime in ("all", "few"):
        seeds = sorted(int(d.name[1:]) for d in (work / regime).glob("s*") if d.name[1:].isdigit())
        for seed in seeds:
            for row in ROWS:
                path = work / regime / f"s{seed}" / row / "card.json"
                if not path.exists():
                    continue
                done.append(f"{regime}/s{seed}/{row}")
                for r in rows_of(row, json.loads(path.read_text()), "_few" if regime == "few" else "", path.parent):
                    per_seed.setdefault(r["row"], []).append((seed, r))
    return per_seed, done


def features_source(work: Path) -> Path | None:
    """A finished teachers stage under WORK (all labels first): its members' backbone features serve every stage."""
    done = sorted(work.glob("*/s*/teachers/card.json"), key=lambda p: (p.parts[-4] != "all", p.parts[-3]))
    return done[0].parent if done else None


TABLE_ROWS = ("teacher_ensemble", "teacher_lite2_mv", "teacher_lite0_mv", "student_distilled", "student_labels_only",
              "student_tenth")


def _cell(row: dict | None, key: str) -> str:
    if row is None or row.get(key) is None:
        return "–"
    std = row.get(f"{key}_std")
    return f"{row[key]:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def readme_table(doc: dict) -> str:
    """The README's BIQ2021 table from a results file (mean ± std over the seeds done; – where not run yet)."""
    rows = {r["row"]: r for r in doc["rows"]}
    lines = ["| model | GMACs | all labels: SRCC | PLCC | ss02 SRCC | seeds | 1,000 labels: SRCC | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for name in TABLE_ROWS:
        a, f = rows.get(name), rows.get(f"{name}_few")
        gmacs = (a or f or {}).get("gmacs")
        ss02 = None if a is None else {"srcc": a["srcc_per_subset"].get("ss02")}
        lines.append(f"| {name} | {'–' if gmacs is None else f'{gmacs:.2f}'} | {_cell(a, 'srcc')} | {_cell(a, 'plcc')} "
                     f"| {_cell(ss02, 'srcc')} | {a['n_seeds'] if a else 0} | {_cell(f, 'srcc')} | {f['n_seeds'] if f else 0} |")
    for r in doc["published"]:
        lines.append(f"| {r['row'].removeprefix('published_')} (published) | – | {r['srcc']:.3f} | {r['plcc']:.3f} | – | – "
                     "| – | – |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    for regime in [] if args.report else args.regime_list:
        for seed in args.seed_list:
            for row in ("teachers", *[r for r in args.row_list if r != "teachers"]):  # students need the teachers
                run_stage(row, regime, seed, args, features_source(args.work))
                write_results(args.out, *collect(args.work), args)
    if args.report:
        write_results(args.out, *collect(args.work), args)
        print(readme_table(json.loads(args.out.read_text())))  # the README's BIQ2021 table
    for r in json.loads(args.out.read_text())["rows"]:
        print(f"{r['row']:32s} SRCC {r['srcc']:.4f}" + (f" +- {r['srcc_std']:.4f}" if r.get("srcc_std") else "")
              + f"  ({r['n_seeds']} seeds)  GMACs {r['gmacs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
