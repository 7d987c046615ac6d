"""Where a model runs and at which precision: `--device`, `--precision` and `--workers`, checked before any work.

Every command that runs a torch model resolves its flags here, so the rules are written once:
- `--device auto|cpu|cuda|cuda:N|mps`: `auto` is CUDA when present, else CPU. Asking for a device this
  machine lacks is a one-line error (exit 2), never a silent fall-back to the CPU.
- `--precision fp32|bf16|fp16`: autocast on accelerators; fp16 trains with a gradient scaler. On the CPU only
  fp32 is offered (CPU autocast is slower than fp32 on most CPUs and changes results). Metrics and the
  logistic calibration are always computed in fp32 by the callers (they convert with `.float()`).
- `--workers N`: decoding/view workers; more than the machine's cores is refused.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from edgeiqa.errors import EdgeIQAError, did_you_mean

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Accel:
    """The resolved device and precision of one run (recorded in cards and LabelSet manifests)."""

    device: torch.device
    precision: str = "fp32"

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.precision)

    def autocast(self):
        """Autocast context for forward passes (a no-op at fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self):
        """A gradient scaler for fp16 training (disabled otherwise, so callers can always use it)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def describe(self) -> dict:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else self.device.type
        return {"device": str(self.device), "device_name": name, "precision": self.precision}


def resolve_device(spec: str | None) -> torch.device:
    spec = (spec or "auto").strip().lower()
    kind, _, index = spec.partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind != "cuda" or not index.isdigit())):
        raise EdgeIQAError(f"unknown device {spec!r} (choose auto, cpu, cuda, cuda:N or mps){did_you_mean(kind, DEVICE_CHOICES)}")
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise EdgeIQAError("CUDA is not available on this machine (use --device cpu or --device auto)")
        n = torch.cuda.device_count()
        if index and int(index) >= n:
            raise EdgeIQAError(f"device {spec!r} does not exist: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")
        # Under torchrun each process takes the GPU of its local rank unless one was named.
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device(f"cuda:{index}" if index else f"cuda:{local % n}")
    if kind == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise EdgeIQAError("MPS is not available on this machine (use --device cpu or --device auto)")
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    precision = (precision or "fp32").strip().lower()
    if precision not in PRECISIONS:
        raise EdgeIQAError(f"unknown precision {precision!r} (choose {', '.join(PRECISIONS)}){did_you_mean(precision, PRECISIONS)}")
    if precision == "fp32":
        return precision
    if device.type == "cpu":
        raise EdgeIQAError(f"--precision {precision} needs a GPU; on the CPU use --precision fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise EdgeIQAError(f"--precision bf16 is not supported by {torch.cuda.get_device_name(device)} (use fp16 or fp32)")
    return precision


def resolve_accel(device: str | None = "auto", precision: str | None = "fp32") -> Accel:
    dev = resolve_device(device)
    return Accel(dev, resolve_precision(precision, dev))


def check_workers(workers: int | None) -> int:
    """Decoding workers: 0 = in the main process; more than the machine's cores is refused."""
    n = 0 if workers is None else int(workers)
    cores = os.cpu_count() or 1
    if n < 0:
        raise EdgeIQAError(f"--workers must be 0 or more, got {n}")
    if n > cores:
        raise EdgeIQAError(f"--workers {n} is more than this machine's {cores} CPU cores")
    return n
