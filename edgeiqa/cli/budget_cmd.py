"""`edgeiqa budget`: GMACs of a model at the deployed input size, all views, against the budget.

    edgeiqa budget --model NAME --input HxW [--views resize,fragments] [--budget 50] [--json]
    edgeiqa budget --model STUDENT --profile sample          # the profile's views, as `distill` counts
    edgeiqa budget --model TEACHER                           # the teacher at its registered views

NAME is looked up in this order: an edgeiqa student (counted whole, backbone on every view plus the IQA
head, by the same function `distill` uses), an edgeiqa teacher (every backbone on its own view plus the
head), then a timm model (as timm builds it, one shared backbone per view). A toolkit name that timm
also knows (`nf_regnet_b1`) is therefore the student, never timm's classifier.

Exit code 0 when the model fits, 3 when it is over budget (the message on stderr names the largest input
of the same aspect ratio that fits; with --json the report still goes to stdout, with "fits": false).
"""

from __future__ import annotations

from edgeiqa.bounds import check_positive
from edgeiqa.cli.common import parse_hw, print_json
from edgeiqa.errors import EdgeIQAError, choose_names


# Kept here so `edgeiqa --help` does not import torch; tests check they equal edgeiqa.budget's.
DEFAULT_BUDGET_GMACS = 50.0
CONVENTION = "1 MAC = 1 fused multiply-add, fvcore FlopCountAnalysis"
# Pixels per side: larger than any camera sensor's output we target (a 200 MP phone sensor is 16320x12240);
# an input image is allocated whole (100000x100000 would be 120 GB).
MAX_INPUT_SIDE = 16384
# GMACs per image: the largest model counted here is a few thousand; a bigger budget is a typo.
MAX_BUDGET_GMACS = 100_000.0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "budget",
        help="count a model's GMACs at the deployed input size against the budget",
        description=(
            "Count the GMACs one image costs a model at the given input size, over all views "
            f"(convention: {CONVENTION}; timm fused attention off while counting). The name is looked "
            "up as an edgeiqa student first (counted as `distill` deploys it: backbone on every view "
            "plus the IQA head), then as an edgeiqa teacher (at its own views), then as a timm model. "
            "A second count "
            "from torch's FlopCounterMode is shown beside it. Exit code 3 when over budget, with the "
            "largest input that fits."
        ),
    )
    parser.add_argument("--model", required=True,
                        help="an edgeiqa student or teacher name (see `edgeiqa teachers list`) or any timm model "
                        "name, e.g. mobilenetv3_large (student) or mobilenetv3_large_100 (timm)")
    parser.add_argument("--input", metavar="HxW",
                        help="input size, height first, e.g. 720x1280 (a single number means square); required "
                        "for timm models and for students without --profile; a teacher runs at its own views")
    parser.add_argument("--views", default=None,
                        help="comma-separated views, each a separate input of HxW, e.g. resize,fragments "
                        "(default: resize). A timm model runs the same backbone on each (total = sum over "
                        "views); a student runs its backbone on each and its IQA head on all")
    parser.add_argument("--profile", default=None,
                        help="students only: take the views and sizes (and the budget, unless --budget) from "
                        "this profile's [student] section, exactly what `distill --profile` counts; with "
                        "--input HxW every view is rescaled so that the first one is HxW")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"budget in GMACs per image (default: the profile's, else {DEFAULT_BUDGET_GMACS:g}, "
                        "the AIM 2024 rule)")
    parser.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    parser.set_defaults(func=run)


def parse_view_names(text: str) -> list[str]:
    from edgeiqa.data.views import VIEW_KINDS

    return choose_names(text, VIEW_KINDS, "--views", "view")


def check_input_size(hw: tuple[int, int], what: str = "--input") -> tuple[int, int]:
    """Refuse an input side above MAX_INPUT_SIDE (counting allocates the image whole) before any work."""
    if max(hw) > MAX_INPUT_SIDE:
        raise EdgeIQAError(f"{what} {hw[0]}x{hw[1]}: each side must be at most {MAX_INPUT_SIDE} px (larger than "
                           f"any camera sensor's output; counting allocates the whole image)")
    return hw


def check_view_sizes(specs, profile: str | None) -> None:
    """A student's views (a profile's, rescaled to --input) bounded like --input, each and together (each is
    allocated whole)."""
    whose = f"profile {profile}'s views" if profile else "the views"
    for spec in specs:
        check_input_size(spec.size, what=f"{whose}: {spec.kind}")
    pixels = sum(s.size[0] * s.size[1] for s in specs)
    if pixels > MAX_INPUT_SIDE ** 2:
        raise EdgeIQAError(f"{whose} add up to {pixels / 1e6:.0f} M pixels, more than one {MAX_INPUT_SIDE}x"
                           f"{MAX_INPUT_SIDE} image (counting allocates each view whole): give a smaller --input")


def check_args(args) -> tuple:
    """Every option checked before torch is imported: (hw, views), or one line naming the bad option."""
    hw = check_input_size(parse_hw(args.input)) if args.input is not None else None
    views = parse_view_names(args.views) if args.views is not None else None
    if args.budget is not None:
        check_positive("--budget", args.budget, high=MAX_BUDGET_GMACS)
    if not args.model.strip():
        raise EdgeIQAError("--model is empty: name an edgeiqa student or teacher, or a timm model")
    return hw, views


def run(args) -> int:
    hw, views = check_args(args)

    from edgeiqa.budget import check_budget

    report = count_model(args.model, hw, views, args.profile, args.budget)
    if args.json:
        print_json(report.to_dict())
    else:
        print_table(report)
    check_budget(report)  # raises BudgetExceeded (exit 3) with the largest input that fits
    return 0


def count_model(name: str, hw, views, profile: str | None, budget: float | None):
    """The BudgetReport of `name`: an edgeiqa student, else an edgeiqa teacher, else a timm model.
    Arguments that do not apply to that kind of model are refused (one line, exit 2) before any count."""
    from edgeiqa.students import is_registered as is_student, list_students
    from edgeiqa.teachers import is_registered as is_teacher, list_teachers

    if is_student(name):
        return _count_student(name, hw, views, profile, budget)
    if profile is not None:
        raise EdgeIQAError(f"--profile applies to edgeiqa students ({', '.join(list_students())}); {name!r} is not one")
    if is_teacher(name):
        if hw is not None or views is not None:
            raise EdgeIQAError(f"teacher {name!r} runs at its registered views and sizes: leave out --input and --views")
        from edgeiqa.teachers.counting import count_teacher

        return count_teacher(name, _budget_or_default(budget))

    import timm

    from edgeiqa.budget import resolve_model, unknown_model_error

    if not timm.is_model(name):
        raise unknown_model_error(name, also_known=list_students() + list_teachers())
    if hw is None:
        raise EdgeIQAError(f"--input HxW is required for the timm model {name!r}")
    return resolve_model(name, hw, views or ["resize"]).count(budget=_budget_or_default(budget))


def _count_student(name: str, hw, views, profile: str | None, budget: float | None):
    """The deployable student (backbone on every view + IQA head) counted by distill's own function."""
    from edgeiqa.data.views import ViewSpec
    from edgeiqa.distill.budget_fit import count_student
    from edgeiqa.students import create_student

    if profile is not None:
        if views is not None:
            raise EdgeIQAError("--profile sets the views: leave out --views (--input HxW rescales them all)")
        from edgeiqa.distill.budget_fit import views_at
        from edgeiqa.profiles import load_profile

        prof = load_profile(profile)
        specs = prof.student_views
        if hw is not None:  # every view rescaled so that the first is hw, as distill's fitting search does
            specs = views_at(specs, hw)
        if budget is None:
            budget = float(prof.get("budget_gmacs", DEFAULT_BUDGET_GMACS))
    else:
        if hw is None:
            raise EdgeIQAError(f"student {name!r}: give --input HxW (and --views), or --profile NAME for a profile's views")
        specs = [ViewSpec(kind, hw) for kind in views or ["resize"]]
    check_view_sizes(specs, profile)
    model = create_student(name, specs, offline_pretrained=False)  # random init: weights do not change the count
    return count_student(model, specs, _budget_or_default(budget), name)


def _budget_or_default(budget: float | None) -> float:
    return DEFAULT_BUDGET_GMACS if budget is None else float(budget)


def print_table(report) -> None:
    from rich.console import Console
    from rich.table import Table

    d = report.to_dict()
    table = Table(title=f"GMACs of {d['model']} at {d['input']}", show_header=True, header_style="bold")
    table.add_column("item")
    table.add_column("value", justify="right")
    for name, g in d["views"].items():
        table.add_row(f"view {name}", f"{g:.3f} GMACs")
    table.add_row("total (fvcore)", f"{d['total_gmacs']:.3f} GMACs")
    cross = d["cross_check_gmacs"]
    table.add_row("cross-check (FlopCounterMode)", "n/a" if cross is None else f"{cross:.3f} GMACs")
    table.add_row("parameters", f"{d['params_m']:.2f} M")
    table.add_row("budget", f"{d['budget_gmacs']:g} GMACs")
    table.add_row("fits", "[green]yes[/green]" if d["fits"] else "[red]no[/red]")
    skipped = d["skipped_ops"]
    if skipped:
        shown = ", ".join(f"{op.removeprefix('aten::')}×{n}" for op, n in list(skipped.items())[:6])
        more = f" (+{len(skipped) - 6} more)" if len(skipped) > 6 else ""
        table.add_row("ops without MACs (skipped)", shown + more)
    console = Console(highlight=False, soft_wrap=False)
    console.print(table)
    console.print(f"convention: {d['convention']}")
