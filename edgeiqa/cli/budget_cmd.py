"""`edgeiqa budget`: GMACs of a model at the deployed input size, all views, against the budget.

    edgeiqa budget --model NAME --input HxW [--views resize,fragments] [--budget 50] [--json]

Exit code 0 when the model fits, 3 when it is over budget (the message on stderr names the largest input
of the same aspect ratio that fits; with --json the report still goes to stdout, with "fits": false).
"""

from __future__ import annotations

import difflib

from edgeiqa.cli.common import parse_hw, print_json
from edgeiqa.errors import EdgeIQAError


# Kept here so `edgeiqa --help` does not import torch; tests check they equal edgeiqa.budget's.
DEFAULT_BUDGET_GMACS = 50.0
CONVENTION = "1 MAC = 1 fused multiply-add, fvcore FlopCountAnalysis"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "budget",
        help="count a model's GMACs at the deployed input size against the budget",
        description=(
            "Count the GMACs one image costs a model at the given input size, over all views "
            f"(convention: {CONVENTION}; timm fused attention off while counting). A second count "
            "from torch's FlopCounterMode is shown beside it. Exit code 3 when over budget, with the "
            "largest input that fits."
        ),
    )
    parser.add_argument("--model", required=True,
                        help="an edgeiqa student/teacher name or any timm model name, e.g. mobilenetv3_large_100")
    parser.add_argument("--input", required=True, metavar="HxW",
                        help="input size, height first, e.g. 720x1280 (a single number means square)")
    parser.add_argument("--views", default="resize",
                        help="comma-separated views, each a separate input of HxW through the same backbone "
                        "(total = sum over views), e.g. resize,fragments (default: resize)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_GMACS,
                        help=f"budget in GMACs per image (default {DEFAULT_BUDGET_GMACS:g}, the AIM 2024 rule)")
    parser.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    parser.set_defaults(func=run)


def parse_view_names(text: str) -> list[str]:
    from edgeiqa.data.views import VIEW_KINDS

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise EdgeIQAError(f"--views {text!r}: name at least one view ({', '.join(VIEW_KINDS)})")
    for name in names:
        if name not in VIEW_KINDS:
            near = difflib.get_close_matches(name, VIEW_KINDS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise EdgeIQAError(f"unknown view {name!r} (known: {', '.join(VIEW_KINDS)}){hint}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise EdgeIQAError(f"--views names {', '.join(dup)} more than once")
    return names


def run(args) -> int:
    hw = parse_hw(args.input)
    views = parse_view_names(args.views)
    if not args.budget > 0:
        raise EdgeIQAError(f"--budget must be a positive number of GMACs, got {args.budget:g}")

    from edgeiqa.budget import check_budget, resolve_model

    report = resolve_model(args.model, hw, views).count(budget=args.budget)
    if args.json:
        print_json(report.to_dict())
    else:
        print_table(report)
    check_budget(report)  # raises BudgetExceeded (exit 3) with the largest input that fits
    return 0


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
