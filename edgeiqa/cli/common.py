"""Small helpers every subcommand uses: JSON on stdout, input-size parsing."""

from __future__ import annotations

import json
import sys
from typing import Any

from edgeiqa.errors import EdgeIQAError


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def parse_hw(text: str) -> tuple[int, int]:
    """'720x1280' -> (720, 1280); '384' -> (384, 384). Height first, as in the profiles."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise EdgeIQAError(f"bad input size {text!r}: expected HxW such as 720x1280") from None
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) < 16:
        raise EdgeIQAError(f"bad input size {text!r}: expected HxW with both sides >= 16")
    return nums[0], nums[1]


def add_accel_args(parser, *, workers: bool = True, device: str = "auto", device_help: str = "") -> None:
    """`--device`, `--precision` and `--workers`, with the same help, on every command that runs a torch model
    (checked by edgeiqa.accel before any work). `device` is the default (`bench` measures the CPU unless asked)."""
    parser.add_argument("--device", default=device, metavar="DEV",
                        help=f"auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps (default {device}); a "
                             f"device this machine lacks is an error, never a silent CPU fall-back{device_help}")
    parser.add_argument("--precision", default="fp32", metavar="P",
                        help="fp32 (default), or bf16 / fp16 autocast on a GPU (fp16 adds a gradient scaler); "
                             "metrics and calibration stay fp32")
    if workers:
        parser.add_argument("--workers", type=int, default=0, metavar="N",
                            help="decoding/view worker processes (default 0 = in the main process); results do not "
                                 "depend on N; at most the machine's cores")



def fmt_value(v) -> str:
    """A table cell: 3 decimals for a number, '-' when missing."""
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def fmt_metric(m: dict, key: str) -> str:
    """A metric cell of summary `m`; a per-scene metric of a dataset without scenes reads 'no scenes', never '-'
    (global SRCC/PLCC/KRCC/RMSE are then the numbers to read)."""
    if m.get(key) is None and "scene" in key and m.get("srcc") is not None and m.get("srcc_scene_mean") is None:
        return "no scenes"
    return fmt_value(m.get(key))


def fmt_groups(m: dict) -> str:
    """'ss01 0.880  ss02 0.440 ...' from a summary's srcc_per_group (a dataset's subsets), or ''."""
    groups = m.get("srcc_per_group") or {}
    return "  ".join(f"{g} {fmt_value(v)}" for g, v in sorted(groups.items()))
