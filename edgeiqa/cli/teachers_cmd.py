"""`edgeiqa teachers train|pretrain|label|list`: teacher training, ranking pre-training, LabelSets."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edgeiqa.cli.common import add_accel_args, fmt_groups, fmt_metric, print_json
from edgeiqa.cli.common import fmt_value as _fmt
from edgeiqa.fileio import write_json_atomic


def _log(args):
    return (lambda msg: print(msg, file=sys.stderr)) if not args.quiet else (lambda msg: None)


def cmd_train(args) -> int:
    from edgeiqa import distributed
    from edgeiqa.accel import check_workers, resolve_accel
    from edgeiqa.data.datasets import load_dataset
    from edgeiqa.losses import parse_loss_spec
    from edgeiqa.outsafe import check_out_dir
    from edgeiqa.profiles import load_profile
    from edgeiqa.teachers.checks import parse_member_weights, spec_paths
    from edgeiqa.teachers.pipeline import build_ensemble, select_members, self_train, teacher_config, train_members

    log = _log(args)
    # Every option is checked before any work: one line, exit 2, nothing written.
    overrides = {"teacher.epochs" if args.finetune else "teacher.head_epochs": args.epochs, "seed": args.seed,
                 "teacher.losses": parse_loss_spec(args.losses) if args.losses else None, "teacher.rank_epochs": args.rank_epochs}
    profile = load_profile(args.profile, overrides=overrides)
    accel = resolve_accel(args.device, args.precision)
    workers = check_workers(args.workers)
    if args.weights and not Path(args.weights).exists():
        from edgeiqa.errors import EdgeIQAError

        raise EdgeIQAError(f"--weights {args.weights}: no such file or folder")
    # Offline, `--teacher ensemble` leaves out members that would be random-init (they cannot learn); the note is
    # held back until every check passed, so a refusal is the one line on stderr.
    notes = []
    names, left_out = select_members(args.teacher, profile, pretrained=args.pretrained, weights=args.weights, log=notes.append)
    ensemble_weights = parse_member_weights(args.ensemble_weights, names, left_out)
    spec = args.data or profile.get("data", "sample")
    out = check_out_dir(args.out, "teachers", inputs=[args.weights, *spec_paths(spec)])
    dataset = load_dataset(spec)
    cfg = teacher_config(profile, finetune=args.finetune)
    for note in notes:
        log(note)
    weights = {n: args.weights for n in names} if args.weights else None
    t0 = time.time()
    dist = distributed.init_from_env(accel.device)  # under torchrun: DDP training, rank 0 writes
    try:
        results = train_members(names, dataset, out, cfg, finetune=args.finetune, pretrained=args.pretrained,
                                weights=weights, resume=args.resume, progress=not args.quiet, log=log, accel=accel,
                                workers=workers)
        if dist.is_main:
            ens, card = build_ensemble(results, dataset, out, ensemble_weights, seconds=round(time.time() - t0, 1),
                                       left_out=left_out)
        distributed.barrier("fitting the teacher ensemble")
        if args.self_train or profile["teacher"].get("self_train"):
            from edgeiqa.data.datasets import unlabelled_pool

            pool = unlabelled_pool(dataset.records)
            report = self_train(names, dataset, pool, out, cfg, pseudo_weight=float(profile["distill"].get("pseudo_weight", 0.5)),
                                finetune=args.finetune, pretrained=args.pretrained, weights=weights,
                                progress=not args.quiet, log=log, accel=accel, workers=workers)
            if dist.is_main:
                card["self_train"] = report
    finally:
        distributed.shutdown()
    if not dist.is_main:  # rank 0 writes the card and reports
        return 0
    card["seconds"] = round(time.time() - t0, 1)
    card["compute"] = {**accel.describe(), "world_size": dist.world_size, "workers": workers}
    write_json_atomic(out / "card.json", card)
    if args.json:
        print_json(card)
    else:
        _print_card(card)
    return 0


def _print_card(card: dict) -> None:
    print(f"teachers: {', '.join(card['members'])}  weights ({card['weights_fitted_on']}): "
          + ", ".join(f"{k}={v:.2f}" for k, v in card["weights"].items()))
    for d in card.get("left_out") or []:
        print(f"left out: {d['member']} ({d['left_out']})")
    not_run = set(card.get("not_run") or [])
    print(f"{'model':<16} {'split':<6} {'SRCC med':>9} {'SRCC mean':>10} {'worst kind':>18} {'SRCC':>7} {'MAE':>6} "
          f"{'orig':>6}  status")
    for model, per_split in card["metrics"].items():
        for split in ("val", "test"):
            m = per_split.get(split)
            if not m:
                continue
            worst = f"{m.get('worst_kind') or '-'} {_fmt(m.get('srcc_kind_worst'))}"
            status = "not run (weight 0)" if model in not_run else ""
            print(f"{model:<16} {split:<6} {fmt_metric(m, 'srcc_scene_median'):>9} {fmt_metric(m, 'srcc_scene_mean'):>10} "
                  f"{worst:>18} {_fmt(m.get('srcc')):>7} {_fmt(m.get('mae')):>6} {_fmt(m.get('original_score_mean')):>6}  {status}")
            if fmt_groups(m):
                print(f"{'':<16} {split:<6} SRCC per subset: {fmt_groups(m)}")
    print(f"GMACs: {card['gmacs']['total']} (members run; each: {card['gmacs']['members']})  time: {card.get('seconds')} s")
    print("orig = mean score of the undistorted originals (top label); SRCC/MAE = global, across photos")


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def cmd_pretrain(args) -> int:
    from edgeiqa.accel import resolve_accel
    from edgeiqa.bounds import MAX_BATCH, check_count, check_positive
    from edgeiqa.data.datasets import load_dataset
    from edgeiqa.data.degradations import select_kinds
    from edgeiqa.outsafe import check_out_dir
    from edgeiqa.teachers import get_teacher_entry
    from edgeiqa.teachers.checks import spec_paths
    from edgeiqa.teachers.pretrain import ranking_pretrain

    # Every option is checked before any work: one line, exit 2, nothing written.
    get_teacher_entry(args.teacher)
    check_count("--steps", args.steps)
    check_count("--batch", args.batch, high=MAX_BATCH, what=f"the {MAX_BATCH} images a batch may hold")
    check_positive("--lr", args.lr)
    check_count("--seed", args.seed, low=0)
    accel = resolve_accel(args.device, args.precision)
    # Names are checked before any work: an unknown kind or group is one line naming the closest (exit 2).
    kinds = select_kinds(_names(args.kinds), _names(args.groups))
    out = check_out_dir(args.out, "pretrain", inputs=spec_paths(args.data))
    dataset = load_dataset(args.data)
    report = ranking_pretrain(args.teacher, dataset, out, steps=args.steps, batch_pairs=args.batch,
                              lr=args.lr, seed=args.seed or 0, resume=args.resume, progress=not args.quiet, accel=accel,
                              kinds=kinds)
    if args.json:
        print_json(report)
    else:
        print(f"ranking pre-training of {args.teacher}: {report['steps']} steps, pair accuracy "
              f"{report['pair_accuracy_before']:.3f} -> {report['pair_accuracy_after']:.3f} on {len(report['kinds'])} "
              f"degradation kinds; weights: {report['weights']} ({report['compute']['device']}, {report['compute']['precision']})")
    return 0


def cmd_label(args) -> int:
    from edgeiqa import distributed
    from edgeiqa.accel import resolve_accel
    from edgeiqa.data.datasets import load_dataset
    from edgeiqa.errors import EdgeIQAError, did_you_mean
    from edgeiqa.outsafe import check_out_dir
    from edgeiqa.teachers.checks import check_split, require_teachers_dir, spec_paths
    from edgeiqa.teachers.labelset import LabelSet, build_labelset

    # Every option is checked before any work: one line, exit 2, nothing written.
    if args.teacher != "ensemble":
        raise EdgeIQAError(f"unknown --teacher {args.teacher!r}: `teachers label` labels with the teachers folder's "
                           f"ensemble only (--teacher ensemble){did_you_mean(args.teacher, ['ensemble'])}")
    splits = check_split(args.split)
    teachers = require_teachers_dir(args.teachers)
    # The LabelSet may replace only a LabelSet edgeiqa wrote, never the teachers or data it reads.
    out = check_out_dir(args.out, "labelset", inputs=[teachers, *spec_paths(args.data)])
    accel = resolve_accel(args.device, args.precision)
    dataset = load_dataset(args.data)
    if splits:
        dataset = dataset.subset(splits)
        if not dataset.records:
            raise EdgeIQAError(f"{args.data}: no images in split {', '.join(splits)}")
    dist = distributed.init_from_env(accel.device)  # under torchrun: each rank labels a slice
    try:
        out = build_labelset(teachers, dataset, out, progress=not args.quiet and dist.is_main,
                             reuse=not args.force, accel=accel)
    finally:
        distributed.shutdown()
    if not dist.is_main:
        return 0
    ls = LabelSet(out)
    summary = {"labelset": str(out), "n_images": ls.manifest["n_images"], "skipped": ls.manifest["skipped"],
               "features": ls.manifest["features"], "teachers": [t["name"] for t in ls.manifest["teachers"]]}
    if args.json:
        print_json(summary)
    else:
        print(f"LabelSet {out}: {summary['n_images']} images, {len(summary['skipped'])} skipped, features {summary['features']['ensemble']}")
        for s in summary["skipped"]:
            print(f"  skipped {s['image']}: {s['reason']}")
    return 0


def cmd_list(args) -> int:
    from edgeiqa.teachers import get_teacher_entry, list_teachers

    rows = []
    for n in list_teachers():
        e = get_teacher_entry(n)
        rows.append({"name": n, "timm": e.timm_name, "views": [f"{v.kind}@{v.size[0]}x{v.size[1]}" for v in e.views], "description": e.description})
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:<18} {r['timm']:<32} {','.join(r['views']):<40} {r['description']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("teachers", help="train IQA teachers, ranking pre-training, write LabelSets",
                       description="Teachers: big IQA models (Swin/ViT/EfficientNet-Lite) whose scores and opinion features the students learn from.")
    tsub = p.add_subparsers(dest="teachers_command", metavar="ACTION")

    tr = tsub.add_parser("train", help="train teachers (or the ensemble) on the labelled split",
                         description="Train one teacher, a list (a,b,c) or the profile's ensemble on the train split; pick the "
                         "best epoch by per-scene SRCC on val; fit ensemble weights on val and a 4-parameter logistic calibration; "
                         "write OUT/card.json with every member's val/test metrics (per-scene mean/median SRCC, global SRCC, "
                         "MAE, original_score_mean) beside the ensemble's; members with weight 0 are marked 'not run' and "
                         "are not run at labelling or counted in the GMACs.")
    tr.add_argument("--teacher", default="ensemble", help="NAME, a,b,c, or 'ensemble' (the profile's list; default). "
                    "Offline, 'ensemble' leaves out members that would be random-init (no --pretrained/--weights, no "
                    "shipped weights), recorded in the card; a member named explicitly always trains")
    tr.add_argument("--data", help="dataset spec (default: the profile's data, 'sample' for the sample profile)")
    tr.add_argument("--out", default="runs/teachers", help="teachers directory (default runs/teachers)")
    tr.add_argument("--profile", default="sample", help="built-in profile name or a .toml file (default sample)")
    tr.add_argument("--epochs", type=int, help="override the profile's teacher epochs")
    tr.add_argument("--losses", help="e.g. mse=1,plcc=1,fidelity=1 (mse, l1, plcc, fidelity, rank)")
    tr.add_argument("--rank-epochs", type=int, metavar="N",
                    help="epochs of label-free ranking pre-training of each head on synthetic ladders of pool photos "
                         "(the profile's [teacher] rank_epochs; 0 = off; frozen backbones only)")
    tr.add_argument("--finetune", action="store_true", help="train backbones end to end (slow on CPU); default: frozen backbone, head only")
    tr.add_argument("--pretrained", action="store_true", help="start from timm's hub weights (needs a network); "
                    "brings the Swin/ViT members into 'ensemble'")
    tr.add_argument("--weights", help="local checkpoint (teacher.pt or a backbone state dict) to start from")
    tr.add_argument("--ensemble-weights", help="fixed member weights, e.g. lite2_mv=0.7,vit_s=0.3 (default: fitted on val)")
    tr.add_argument("--self-train", action="store_true", help="after training, one self-training round: each member retrains on "
                    "labelled + ensemble-pseudo-labelled pool images, from the same start (--pretrained/--weights), into "
                    "OUT/selftrain (default: the profile's [teacher] self_train)")
    add_accel_args(tr)
    tr.add_argument("--seed", type=int, help="random seed (default: the profile's)")
    tr.add_argument("--resume", action="store_true", help="continue an interrupted member from its last epoch checkpoint")
    tr.add_argument("--json", action="store_true", help="print the teachers card as JSON")
    tr.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    tr.set_defaults(func=cmd_train)

    pt = tsub.add_parser("pretrain", help="label-free ranking pre-training on synthetic degradations",
                         description="RankIQA-style pre-training: for unlabelled images, degraded copies at increasing "
                         "amounts must score lower. Degradations come from the library (`edgeiqa data kinds`), all kinds "
                         "unless --kinds/--groups restrict them (both given: their union). The pool needs at least 2 "
                         "readable images. Writes OUT/pretrained.pt (usable as --weights for train).")
    pt.add_argument("--teacher", required=True, help="teacher name (see `edgeiqa teachers list`)")
    pt.add_argument("--data", required=True, help="folder:DIR or any dataset spec (labels are ignored)")
    pt.add_argument("--out", default="runs/pretrain", help="output directory")
    pt.add_argument("--steps", type=int, default=100, help="optimisation steps (default 100)")
    pt.add_argument("--batch", type=int, default=4, help="source images per step; each gives 3 degraded copies")
    pt.add_argument("--kinds", metavar="K1,K2", help="only these degradation kinds (see `edgeiqa data kinds`)")
    pt.add_argument("--groups", metavar="G1,G2", help="only the kinds of these groups, e.g. blurs,noise")
    pt.add_argument("--lr", type=float, default=1e-4)
    pt.add_argument("--seed", type=int)
    pt.add_argument("--resume", action="store_true")
    add_accel_args(pt, workers=False)
    pt.add_argument("--json", action="store_true")
    pt.add_argument("--quiet", action="store_true")
    pt.set_defaults(func=cmd_pretrain)

    lb = tsub.add_parser("label", help="score images with trained teachers into a cached LabelSet",
                         description="Write a LabelSet (scores.csv, features.safetensors, manifest.json) for the images of a "
                         "dataset: every member's raw and calibrated score, the ensemble's, and opinion features. Written "
                         "atomically; reused when images and checkpoints are unchanged.")
    lb.add_argument("--teacher", default="ensemble", help="only 'ensemble' (the teachers directory's ensemble.json)")
    lb.add_argument("--teachers", default="runs/teachers", help="teachers directory from `teachers train`")
    lb.add_argument("--data", required=True, help="dataset spec whose images are labelled")
    lb.add_argument("--split", help="only these splits, e.g. pool")
    lb.add_argument("--out", required=True, help="LabelSet directory")
    lb.add_argument("--force", action="store_true", help="rebuild even when a matching LabelSet exists (replaces only a LabelSet edgeiqa wrote)")
    add_accel_args(lb, workers=False)
    lb.add_argument("--json", action="store_true")
    lb.add_argument("--quiet", action="store_true")
    lb.set_defaults(func=cmd_label)

    ls = tsub.add_parser("list", help="registered teachers")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
