"""Running under `torchrun`: the process group, which rank does what, and how work is split.

`torchrun --nproc-per-node N -m edgeiqa ...` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
`init_from_env()` checks them and joins the group (gloo on the CPU, nccl on GPUs). Without those variables
everything runs as a single process (rank 0 of 1) and nothing here talks to another process.
Only rank 0 writes checkpoints, cards and plots (`is_main`). A rank that dies ends the job with a message, not
a hang: torchrun sees the dead worker and sends SIGTERM to the others, which here raises `JobStopped` (so every
atomic write in progress removes its temporary file and the CLI prints one line); a collective whose peer is
gone fails (`is_peer_failure`) or waits at most `timeout_s`.
"""

from __future__ import annotations

import datetime
import gc
import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist

from edgeiqa.errors import EdgeIQAError


class JobStopped(EdgeIQAError):
    """This rank was stopped because another process of the job failed (or the launcher was stopped)."""

    exit_code = 1

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# A dead rank is seen by torchrun at once (SIGTERM, see above); this timeout only bounds a rank that hangs while
# alive. Rank 0 alone extracts teacher features or writes a LabelSet while the others wait at a barrier, which
# takes longer than 10 minutes on big pools, so the default is one hour; EDGEIQA_DIST_TIMEOUT_S overrides it.
DEFAULT_TIMEOUT_S = 3600
TIMEOUT_ENV = "EDGEIQA_DIST_TIMEOUT_S"


def timeout_from_env() -> int:
    """Seconds a collective may wait: $EDGEIQA_DIST_TIMEOUT_S (a positive integer) or DEFAULT_TIMEOUT_S."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    if not text.isdigit() or int(text) < 1:
        raise EdgeIQAError(f"{TIMEOUT_ENV}={text!r}: expected a positive number of seconds")
    return int(text)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """The launch as torchrun described it in the environment, checked; no process group is created."""
    present = {k: os.environ.get(k) for k in _ENV}
    if present["WORLD_SIZE"] is None and present["RANK"] is None:
        return DistInfo()
    try:
        rank, world = int(present["RANK"] or "-1"), int(present["WORLD_SIZE"] or "-1")
        local = int(present["LOCAL_RANK"] or "0")
    except ValueError:
        raise EdgeIQAError(f"bad torchrun environment: RANK={present['RANK']!r} WORLD_SIZE={present['WORLD_SIZE']!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise EdgeIQAError(f"inconsistent launch: RANK={rank} is not within WORLD_SIZE={world} (launch with torchrun)")
    if world > 1 and not (present["MASTER_ADDR"] and present["MASTER_PORT"]):
        raise EdgeIQAError("no rendezvous: WORLD_SIZE > 1 but MASTER_ADDR/MASTER_PORT are not set (launch with torchrun)")
    return DistInfo(rank, world, local)


def init_from_env(device: torch.device | None = None, timeout_s: int | None = None) -> DistInfo:
    """Join the process group torchrun set up (idempotent); a single process returns rank 0 of 1."""
    info = env_info()
    if not info.enabled or dist.is_initialized():
        return info
    timeout_s = timeout_from_env() if timeout_s is None else timeout_s
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    except Exception as exc:  # noqa: BLE001 - rendezvous failures become one line
        raise EdgeIQAError(f"could not join the process group ({backend}, rank {info.rank} of {info.world_size}): "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    _stop_on_sigterm(info)
    return info


def _stop_on_sigterm(info: DistInfo) -> None:
    """torchrun stops the surviving workers with SIGTERM when one dies; Python's default would end this process on
    the spot, leaving temporary files of atomic writes behind and no word of why."""
    def stop(signum, frame):
        raise JobStopped(f"rank {info.rank} of {info.world_size} stopped: another process of this job failed or the "
                         f"launcher was stopped (SIGTERM); nothing half-written is left (torchrun names the failed rank)")

    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (e.g. an embedding application): keep its handling
        pass


def is_peer_failure(exc: BaseException) -> bool:
    """A collective failed because another rank is gone (gloo: connection closed/reset; nccl: a communicator
    error), as opposed to a bug in this rank. Judged by the launch (the group may be shut down by then)."""
    try:
        if not env_info().enabled:
            return False
    except EdgeIQAError:
        return False
    text = str(exc).lower()
    return isinstance(exc, getattr(dist, "DistError", ())) or (
        isinstance(exc, RuntimeError) and any(k in text for k in ("gloo", "nccl", "connection closed", "connection reset",
                                                                   "broken pipe", "timed out")))


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def barrier(what: str) -> None:
    """Wait for every rank; a rank that died or timed out ends this one with a message naming the step."""
    if not current().enabled:
        return
    try:
        dist.barrier()
    except Exception as exc:  # noqa: BLE001
        raise EdgeIQAError(f"another process of this job failed or timed out during {what}: {type(exc).__name__}") from None


def all_gather_objects(obj) -> list:
    """Every rank's `obj`, in rank order (a list of one without a process group)."""
    info = current()
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous [start, stop) of n items for `rank`: sizes differ by at most one, concatenation is the whole."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def use_sync_batchnorm(device: torch.device, world_size: int) -> bool:
    """Whether DDP training converts BatchNorm layers to SyncBatchNorm (statistics over the global batch, so N
    processes normalise like one process with the same global batch).

    Only on CUDA: torch implements SyncBatchNorm's training forward for GPU tensors alone (on the CPU with gloo it
    raises "SyncBatchNorm expected input tensor to be on GPU"), so on the CPU each process normalises over its
    own slice of the batch and BatchNorm statistics differ slightly from a one-process run."""
    return world_size > 1 and device.type == "cuda"


def shutdown() -> None:
    """Leave the process group. Objects still holding it (a DDP wrapper of a failed step, in a reference cycle) are
    collected first: freed after the group is gone, at interpreter exit, gloo aborts the process."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
