"""`python benchmarks/generalise.py [--quick]` (or `python -m benchmarks.generalise`): build, run every fold and seed,
write the results JSON and print the table."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from edgeiqa.data.degradations.groups import kinds_in_group
from edgeiqa.data.sample import PHOTOS
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import write_json_atomic
from edgeiqa.provenance import measured
from edgeiqa.profiles import load_profile
from edgeiqa.teachers import create_teacher
from edgeiqa.teachers.counting import count_teacher
from edgeiqa.teachers.rank_head import is_greyscale

from .features import SMALL_STUDENT, SMALL_VIEWS, STUDENT, TEACHERS, cached_features, student_model
from .folds import FOLDS, fold_rows, run_fold
from .images import EXTRA_POOL, RANK_COPIES, build_images, library_kinds
from .report import check_targets, markdown, summarise

DOC = sys.modules[__package__].__doc__  # the protocol: --help prints it
RESULTS = Path(__file__).resolve().parent.parent / "results"  # benchmarks/results
VARIANTS = ("", "_no_ranking", "_photo_copy_only", "_greyscale_bases", "_self_trained")  # of the teacher rows (run_fold)
# rank_epochs 20: about as many steps (85 of 32 ladders: 5 colour pool photos x 27 training-fold kinds) as the sample
# profile's 20 epochs over its 144 ladders.
# 10 seeds: one run's heads swing by +-0.03 between seeds, and the recipe's choices were first made at seeds 0-2, where
# the teacher and the distilled students read 0.01-0.05 above other seeds (docs/benchmarks.md, leave-kinds-out).
FULL = {"levels": (1, 2, 4, 6), "kinds_per_group": None, "seeds": tuple(range(10)), "epochs": 12, "rank_epochs": 20}
QUICK = {"levels": (2, 4, 6), "kinds_per_group": 2, "seeds": (0,), "epochs": 8, "rank_epochs": 6}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=DOC.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=DOC.split("\n\n", 1)[1])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 kinds per group, 3 levels, 1 seed, short schedules")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default 10, --quick 1)")
    ap.add_argument("--out", type=Path, default=RESULTS / "generalise.json",
                    help="results JSON (default benchmarks/results/generalise.json; --quick writes generalise_quick.json)")
    ap.add_argument("--profile", default="sample", help="profile whose student views and loss weights are used (default sample)")
    ap.add_argument("--features-only", action="store_true", help="only build the images and fill the feature cache, then stop")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--machine", default="2 CPU cores, no GPU", help="machine state recorded in the results (idle or not)")
    args = ap.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        ap.error("--seeds must be >= 1")
    if args.quick and args.out == ap.get_default("out"):
        args.out = args.out.with_name("generalise_quick.json")
    return args


def row_gmacs(models: dict, rows: list[str], weights: list[dict]) -> dict[str, float]:
    """GMACs of every row's model: a member's own, an ensemble's members with weight > 0 (in the dearest fold), a
    student's at its views."""
    member = {n: count_teacher(n, cross_check=False).total_gmacs for n in TEACHERS}
    gmacs = {f"teacher_{n}{v}": g for n, g in member.items() for v in VARIANTS}
    for v in VARIANTS:
        gmacs[f"teacher_ensemble{v}"] = max(sum(member[n] for n, w in x["weights"][v or "default"].items() if w > 0)
                                            for x in weights)
    gmacs["teacher_ensemble_val_argmax"] = sum(member.values())  # its weights are not kept either
    for row in rows:
        if row.startswith("student_"):
            name = SMALL_STUDENT if row.startswith("student_small") else STUDENT
            gmacs[row] = count_teacher(models[name], name=name, cross_check=False, per_view=False).total_gmacs
    return gmacs


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.seeds is not None:
        cfg["seeds"] = tuple(range(args.seeds))
    try:
        profile = load_profile(args.profile)
    except EdgeIQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    kinds = library_kinds(cfg["kinds_per_group"])
    imgs, cache = build_images(kinds, cfg["levels"], progress=True)
    grey = {im.photo for im in imgs if im.kind == "original" and is_greyscale(cache.images[im.key])}
    models = {name: create_teacher(name) for name in TEACHERS}
    models[STUDENT] = student_model(profile.student_views)
    models[SMALL_STUDENT] = student_model(SMALL_VIEWS, SMALL_STUDENT)
    feats = {name: cached_features(m, imgs, cache, progress=True) for name, m in models.items()}
    del cache
    if args.features_only:
        print(f"features cached for {len(imgs)} images in {time.time() - t0:.0f} s", file=sys.stderr)
        return 0
    t_feats = time.time() - t0
    losses_t = dict(profile["teacher"]["losses"])
    losses_s = dict(profile["distill"]["losses"])
    per_seed, weights = [], []
    for seed in cfg["seeds"]:
        collected: dict[str, list] = {}
        for fi, held_groups in enumerate(FOLDS):
            held = {k for g in held_groups for k in kinds_in_group(g) if k in kinds}
            out = run_fold(imgs, feats, fold_rows(imgs, held, grey), seed, cfg, losses_t, losses_s, profile["distill"]["pseudo_weight"])
            weights.append({"seed": seed, "fold": fi, "held_out": list(held_groups), "weights": out.pop("_weights")})
            for row, res in out.items():
                collected.setdefault(row, []).append(res)
            print(f"seed {seed} fold {fi + 1}/{len(FOLDS)} (held out {', '.join(held_groups)}) done at {time.time() - t0:.0f} s",
                  file=sys.stderr)
        per_seed.append(collected)
    gmacs = row_gmacs(models, list(per_seed[0]), weights)
    rows = [{**r, "gmacs": round(r["gmacs"], 3)} for r in summarise(per_seed, gmacs)]
    result = {
        "rows": rows,
        "targets": check_targets(rows),
        "ensemble_weights": weights,
        "protocol": {"folds": [list(f) for f in FOLDS], "kinds": kinds, "levels": list(cfg["levels"]), "seeds": list(cfg["seeds"]),
                     "epochs": cfg["epochs"], "rank_epochs": cfg["rank_epochs"], "teachers": list(TEACHERS),
                     "student_views": [v.to_dict() for v in profile.student_views], "n_images": len(imgs),
                     "photos": {p.name: p.split for p in list(PHOTOS) + list(EXTRA_POOL)}, "quick": args.quick,
                     "ranking_photos": sorted({im.photo for im in imgs if im.split == "pool" and im.photo not in grey}),
                     "ranking_copies": ["photo", *RANK_COPIES]},
        "seconds": {"images_and_features": round(t_feats, 1), "total": round(time.time() - t0, 1)},
        "platform": {"threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "command": "python benchmarks/generalise.py " + " ".join(sys.argv[1:]),
        **measured(RESULTS.parents[1], args.machine),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    print(markdown(rows))
    print(json.dumps(result["targets"], indent=1))
    print(f"wrote {args.out} in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0
