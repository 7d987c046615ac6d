"""Small helpers every subcommand uses: JSON on stdout, input-size parsing."""

from __future__ import annotations

import json
import math
import os
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


MAX_BATCH = 1024  # images per batch: more never fits a device's memory at our input sizes


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity set, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_count(flag: str, value: int | None, *, low: int = 1, high: int | None = None, what: str = "") -> int | None:
    """A whole-number option within [low, high], else one line naming the flag; None passes (the default applies)."""
    if value is None:
        return None
    if value < low:
        raise EdgeIQAError(f"{flag} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise EdgeIQAError(f"{flag} {value} is more than {what or high}")
    return value


def check_cores(flag: str, value: int | None, *, low: int = 1) -> int | None:
    """Threads or worker processes: at most the usable cores (more only oversubscribes and can hang)."""
    cores = usable_cores()
    return check_count(flag, value, low=low, high=cores, what=f"this machine's {cores} usable CPU cores")


def check_positive(flag: str, value: float | None, *, high: float | None = None, zero: bool = False) -> float | None:
    """A finite number > 0 (>= 0 with zero=True) and <= high; NaN and infinities are refused."""
    if value is None:
        return None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero) or (high is not None and value > high):
        bound = f"{'>= 0' if zero else '> 0'}" + (f" and <= {high:g}" if high is not None else "")
        raise EdgeIQAError(f"{flag} must be a finite number {bound}, got {value}")
    return value
