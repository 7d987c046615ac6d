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

