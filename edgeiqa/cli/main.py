"""The `edgeiqa` command. Each subcommand lives in its own `*_cmd.py` module with a `register()`.

Subcommand modules import heavy libraries (torch, timm, onnxruntime) inside their handlers, so
`edgeiqa --help` stays fast and `edgeiqa score --model x.onnx` never loads the training stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgeiqa import __version__
from edgeiqa.errors import EdgeIQAError

# Order here is the order `edgeiqa --help` lists them: the pipeline's order.
COMMAND_MODULES = [
    "data_cmd",
    "budget_cmd",
    "teachers_cmd",
    "distill_cmd",
    "eval_cmd",
    "export_cmd",
    "score_cmd",
    "bench_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeiqa",
        description="Distil image-quality teachers into small students under a GMAC budget, "
        "export them (ONNX, int8, TensorRT) and score images on the device.",
    )
    parser.add_argument("--version", action="version", version=f"edgeiqa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"edgeiqa.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"edgeiqa.cli.{name}":
                continue  # that stage is not part of this build
            raise
        module.register(sub)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except EdgeIQAError as exc:
        print(f"edgeiqa: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgeiqa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edgeiqa ... --json | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if argv is None and len(sys.argv) == 1 else 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
