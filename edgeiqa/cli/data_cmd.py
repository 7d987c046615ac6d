"""`edgeiqa data`: build the sample set, check a dataset, show its counts, list the degradation kinds.

    edgeiqa data build sample [--force] [--json]
    edgeiqa data check SPEC [--decode] [--json]     exit 1 when problems are found
    edgeiqa data info SPEC [--json]
    edgeiqa data kinds [--group NAME] [--json]
"""

from __future__ import annotations

import sys
import time

from edgeiqa.cli.common import print_json

SPEC_HELP = (
    "dataset spec: sample | csv:PATH | piq23:ROOT[?attr=overall|details|exposure&split=scene|device&val=F] | "
    "uhd-iqa:ROOT | koniq:ROOT[?res=1024x768|512x384] | gfiqa:ROOT | folder:DIR (a bare .csv file or folder also works)"
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="build the sample set, check a dataset, show its counts, list degradation kinds",
        description="Datasets: build the embedded sample set, check a dataset for bad rows and files, show counts, "
                    "list the degradation library's kinds.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")

    build = sub.add_parser("build", help="build a dataset that ships with edgeiqa (the sample set)",
                           description="Build the embedded sample set into the cache (EDGEIQA_CACHE) and print its counts.")
    build.add_argument("name", choices=["sample"], help="what to build (only `sample`)")
    build.add_argument("--force", action="store_true", help="rebuild even when a cached copy exists")
    build.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    build.set_defaults(func=_build)

    check = sub.add_parser("check", help="report missing files, unreadable images, bad and duplicate rows",
                           description="Check every row and image of a dataset; exit code 1 when problems are found.")
    check.add_argument("spec", help=SPEC_HELP)
    check.add_argument("--decode", action="store_true",
                       help="decode every image fully (slower) instead of reading headers only")
    check.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    check.set_defaults(func=_check)

    info = sub.add_parser("info", help="counts per split, scene and kind",
                          description="Load a dataset (without opening images) and print counts per split, scene and kind.")
    info.add_argument("spec", help=SPEC_HELP)
    info.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    info.set_defaults(func=_info)

    kinds = sub.add_parser("kinds", help="the degradation library: group, kind, severity range, description",
                           description="List the degradation library (KADID-10k's 7 groups plus camera chains) that the "
                           "sample set, ranking pre-training (`teachers pretrain --kinds/--groups`) and leave-kinds-out "
                           "folds draw from. Every kind takes an amount 0..1; the sample set's severities 1..6 are "
                           "amount = severity / 6. An unknown group is an error naming the closest (exit 2).")
    kinds.add_argument("--group", metavar="NAME", help="only this group (blurs, color, compression, noise, brightness, "
                       "spatial, sharpness_contrast, camera)")
    kinds.add_argument("--json", action="store_true", help="machine-readable list on stdout")
    kinds.set_defaults(func=_kinds)


def _build(args) -> int:
    from edgeiqa.data.sample import build_sample, describe_sample

    t0 = time.perf_counter()
    csv_path = build_sample(force=args.force, progress=not args.json and sys.stderr.isatty())
    elapsed = time.perf_counter() - t0
    desc = describe_sample(csv_path)
    out = {"csv": str(csv_path), **desc, "elapsed_s": round(elapsed, 2)}
    if args.json:
        print_json(out)
        return 0
    print(f"sample set: {csv_path}")
    print(f"  {desc.get('n_images', '?')} images ({desc.get('n_photos', '?')} photos, "
          f"{desc.get('n_scenes', '?')} scenes), {len(desc.get('kinds', []))} degradation kinds "
          "(`edgeiqa data kinds` lists them; `edgeiqa data info sample` counts them)")
    splits = desc.get("splits", {})
    if splits:
        print(f"  {'split':<8}{'images':>8}{'scenes':>8}{'photos':>8}")
        for name, c in splits.items():
            print(f"  {name:<8}{c.get('images', ''):>8}{c.get('scenes', ''):>8}{c.get('photos', ''):>8}")
    built = desc.get("seconds")
    took = f"{elapsed:.1f} s" + (f" (built in {built:.1f} s)" if isinstance(built, (int, float)) else "")
    print(f"  ready in {took}")
    return 0


def _check(args) -> int:
    from edgeiqa.data.check import check_dataset, format_report

    report = check_dataset(args.spec, decode=args.decode)
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0 if report["ok"] else 1


def dataset_counts(dataset) -> dict:
    """Counts per split / scene / kind for `data info` (JSON-ready)."""
    splits: dict[str, dict] = {}
    scenes: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for r in dataset.records:
        s = splits.setdefault(r.split or "-", {"images": 0, "labelled": 0, "scenes": set()})
        s["images"] += 1
        s["labelled"] += r.score is not None
        if r.scene is not None:
            s["scenes"].add(r.scene)
            scenes[r.scene] = scenes.get(r.scene, 0) + 1
        if r.kind is not None:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
    order = {"train": 0, "val": 1, "test": 2, "pool": 3, "-": 4}
    split_out = {
        k: {"images": v["images"], "labelled": v["labelled"], "scenes": len(v["scenes"])}
        for k, v in sorted(splits.items(), key=lambda kv: order.get(kv[0], 9))
    }
    return {
        "spec": dataset.spec,
        "n_images": len(dataset.records),
        "n_labelled": sum(1 for r in dataset.records if r.score is not None),
        "n_scenes": len(scenes),
        "splits": split_out,
        "kinds": dict(sorted(kinds.items())),
        "scenes": dict(sorted(scenes.items())),
        "info": dataset.info,
    }


def load_for_info(spec: str):
    """The dataset to count; a bad row or no rows at all is one line (exit 2) pointing at `data check`."""
    from edgeiqa.data.check import require_target_type
    from edgeiqa.data.datasets import load_dataset, parse_spec
    from edgeiqa.errors import DatasetError

    require_target_type(parse_spec(spec))  # the same words as `data check` for a folder given as csv: etc.
    ds = load_dataset(spec, check_files=False)
    if not ds.records:  # a header-only CSV: counting nothing would read as success
        raise DatasetError(f"{spec}: no images (no data rows to count)")
    return ds


def _info(args) -> int:
    ds = load_for_info(args.spec)
    counts = dataset_counts(ds)
    if args.json:
        print_json(counts)
        return 0
    print(f"{ds.spec}: {counts['n_images']} images, {counts['n_labelled']} labelled, {counts['n_scenes']} scenes")
    rng = ds.info.get("score_range")
    if rng:
        name = ds.info.get("score_name", "score")
        print(f"  {name}: {rng[0]:.4g} .. {rng[1]:.4g}")
    print(f"  {'split':<8}{'images':>8}{'labelled':>10}{'scenes':>8}")
    for name, c in counts["splits"].items():
        print(f"  {name:<8}{c['images']:>8}{c['labelled']:>10}{c['scenes']:>8}")
    if counts["kinds"]:
        print("  kinds: " + ", ".join(f"{k} {v}" for k, v in counts["kinds"].items()))
    if counts["scenes"]:
        items = list(counts["scenes"].items())
        shown = ", ".join(f"{k} {v}" for k, v in items[:20])
        more = f", ... ({len(items) - 20} more; --json lists all)" if len(items) > 20 else ""
        print(f"  scenes: {shown}{more}")
    return 0


def _kinds(args) -> int:
    from edgeiqa.data.degradations import describe_kinds, kinds_in_group

    rows = describe_kinds()
    if args.group is not None:
        keep = set(kinds_in_group(args.group))  # an unknown group: one line naming the closest, exit 2
        rows = [r for r in rows if r["kind"] in keep]
    if args.json:
        print_json(rows)
        return 0
    head = ("group", "kind", "range over", "description")
    cols = [[r["group"], r["kind"], r["severity_range"], r["description"]] for r in rows]
    width = [max(len(h), *(len(c[i]) for c in cols)) for i, h in enumerate(head[:3])]
    print("  ".join(h.ljust(w) for h, w in zip(head[:3], width)) + "  " + head[3])
    for c in cols:
        print("  ".join(v.ljust(w) for v, w in zip(c[:3], width)) + "  " + c[3])
    groups = len({r["group"] for r in rows})
    print(f"{len(rows)} kinds in {groups} group{'s' if groups != 1 else ''}; amount 0..1, sample severities 1..6 = amount severity/6")
    return 0
