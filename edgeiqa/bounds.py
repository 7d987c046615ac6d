"""Bounds of whole-number and real options (batch sizes, threads, workers, rates): one line naming the flag.

Light (standard library only): the runtime, the profiles and every stage check their options with it before work.
"""

from __future__ import annotations

import math
import os

from edgeiqa.errors import EdgeIQAError

MAX_BATCH = 1024  # images per batch: more never fits a device's memory at our input sizes


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity set, which containers and taskset narrow): the thread count
    of onnxruntime and of the bench when none is given, and the bound of every --threads/--workers."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


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
