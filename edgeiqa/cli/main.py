"""The `edgeiqa` command. Each subcommand lives in its own `*_cmd.py` module with a `register()`.

Lazy: only the module of the command being run is imported (all of them for `edgeiqa --help`), and the
modules import heavy libraries inside their handlers, so `edgeiqa score --model x.onnx` starts fast and
never loads the training stack. In the runtime-only install (`pip install edgeiqa`, no `[train]` extra)
every command but `score` stops with one line naming the extra to install (exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from edgeiqa import __version__
from edgeiqa.errors import EdgeIQAError

# Order here is the order `edgeiqa --help` lists them: the pipeline's order.
COMMAND_MODULES = {
    "data": "data_cmd",
    "budget": "budget_cmd",
    "teachers": "teachers_cmd",
    "distill": "distill_cmd",
    "eval": "eval_cmd",
    "export": "export_cmd",
    "score": "score_cmd",
    "bench": "bench_cmd",
}
RUNTIME_COMMANDS = ("score",)  # the rest need the training stack
TRAIN_EXTRA = "pip install 'edgeiqa[train]'"
# Top-level modules that only the [train] extra installs: a command that misses one names the extra.
TRAIN_MODULES = ("torch", "torchvision", "timm", "onnx", "onnxscript", "fvcore", "torch_pruning", "scipy",
                 "skimage", "sklearn", "matplotlib", "rich", "safetensors", "psutil", "cv2", "efficientnet_lite_pytorch")


def training_missing() -> str | None:
    """The first training-stack module not installed, or None."""
    for mod in ("torch", "timm", "fvcore", "scipy"):
        if importlib.util.find_spec(mod) is None:
            return mod
    return None


def require_training(command: str) -> None:
    missing = training_missing()
    if missing:
        raise EdgeIQAError(f"`{command}` needs the training install ({missing} is not installed; this is the "
                           f"runtime-only install, which runs `edgeiqa score`): {TRAIN_EXTRA}")


def _wanted_command(argv: list[str] | None) -> str | None:
    args = sys.argv[1:] if argv is None else argv
    for a in args:
        if a in COMMAND_MODULES:
            return a
        if not a.startswith("-"):
            return None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeiqa",
        description="Distil image-quality teachers into small students under a GMAC budget, "
        "export them (ONNX, int8, TensorRT) and score images on the device.",
    )
    parser.add_argument("--version", action="version", version=f"edgeiqa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, name in COMMAND_MODULES.items():
        if only is not None and command != only:
            continue
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
        command = getattr(args, "command", None) or "distill"
        if command not in RUNTIME_COMMANDS:
            require_training(f"edgeiqa {command}" if getattr(args, "command", None) else "distill")
        try:
            return int(args.func(args) or 0)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] in TRAIN_MODULES:
                extra = "pip install 'edgeiqa[face]'" if exc.name == "cv2" else TRAIN_EXTRA
                raise EdgeIQAError(f"{exc.name} is not installed: {extra}") from None
            raise
    except EdgeIQAError as exc:
        print(f"edgeiqa: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        if "torch.distributed" in sys.modules:  # under torchrun: a dead peer is one line, not a traceback per rank
            from edgeiqa import distributed

            if distributed.is_peer_failure(exc):
                info = distributed.env_info()
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                print(f"edgeiqa: error: rank {info.rank} of {info.world_size} stopped: another process of this job "
                      f"failed ({first})", file=sys.stderr)
                return 1
        raise
    except KeyboardInterrupt:
        print("edgeiqa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edgeiqa ... --json | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _sub_actions(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _refuse_missing_choice(parser: argparse.ArgumentParser, what: str) -> int:
    """Usage, one error line, and each choice's one-line help indented below it (exit 2): a usage error."""
    action = _sub_actions(parser)
    names = list(action.choices)
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: choose {what}: {', '.join(names)}", file=sys.stderr)
    for choice in action._choices_actions:  # their one-line help, indented as in --help
        print(f"  {choice.dest:<10}{choice.help or ''}", file=sys.stderr)
    return 2


def _missing_action(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser | None:
    """The chosen command's parser when it has actions (`data build|check|...`) and none was given."""
    command = _sub_actions(parser).choices.get(getattr(args, "command", None) or "")
    actions = _sub_actions(command) if command is not None else None
    if actions is None or getattr(args, actions.dest, None) is not None:
        return None
    return command


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(_wanted_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        return _refuse_missing_choice(parser, "a command")
    command = _missing_action(parser, args)
    if command is not None:
        return _refuse_missing_choice(command, "an action")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
