"""One checkpointed training loop for teachers and students.

Every epoch writes `last.pt` (model, optimizer, scheduler, torch RNG state, history) atomically, and
`best.pt` when validation improves. `resume=True` continues from `last.pt`; since data order and
augmentation are seeded by (seed, epoch, index) and the RNG state is restored, a run killed after epoch k
and resumed ends with the same weights as an uninterrupted run (same seed, CPU).
"""

from __future__ import annotations

import gc
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from edgeiqa import distributed
from edgeiqa.accel import Accel
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path
from edgeiqa.losses import LossBatch, combined_loss
from edgeiqa.safeload import load_weights


@dataclass
class TrainConfig:
    epochs: int = 5
    lr: float = 1e-3
    backbone_lr_scale: float = 0.3  # pretrained backbones move slower than the fresh head
    weight_decay: float = 1e-4
    batch_size: int = 16
    seed: int = 0
    losses: dict = field(default_factory=lambda: {"mse": 1.0})
    grad_clip: float = 5.0
    warmup_frac: float = 0.1


def atomic_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "state")


def load_checkpoint(path: Path) -> dict:
    """`last.pt` read back for `--resume`; a truncated or foreign file is refused naming it (never resumed from)."""
    try:
        ckpt = load_weights(path, what="training checkpoint")
    except EdgeIQAError:
        raise
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError ... for a damaged file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EdgeIQAError(f"cannot resume: {path} is corrupt or truncated ({reason}); delete it to start over, "
                           f"or drop --resume") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS) or "config" not in ckpt["state"]:
        raise EdgeIQAError(f"cannot resume: {path} is not an edgeiqa training checkpoint; delete it or drop --resume")
    return ckpt


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    backbone, head = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if ".backbone" in f".{name}" or name.startswith("backbones") else head).append(p)
    groups = [{"params": head, "lr": cfg.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": cfg.lr * cfg.backbone_lr_scale})
    return groups


def cosine_with_warmup(total_steps: int, warmup_frac: float):
    warm = max(1, int(total_steps * warmup_frac))

    def fn(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return fn


def to_device(batch, device: torch.device):
    """A collated batch (tensors, lists and tuples of them) moved to `device` (non-blocking from pinned memory)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


class _Step(torch.nn.Module):
    """The training forward as a module, so DistributedDataParallel sees it (step functions call methods such
    as `forward_train`, which DDP would not synchronise if called on the model directly)."""

    def __init__(self, model: torch.nn.Module, step_fn: Callable):
        super().__init__()
        self.model = model
        self.step_fn = step_fn

    def forward(self, batch) -> LossBatch:
        return self.step_fn(self.model, batch)


def _fp32(lb: LossBatch) -> LossBatch:
    """Losses are computed in fp32 whatever precision the forward ran at."""
    return replace(lb, pred=lb.pred.float(), proj=None if lb.proj is None else lb.proj.float())


class Trainer:
    """`step_fn(model, batch) -> LossBatch`; `eval_fn(model) -> dict` with a `val` key (higher is better).

    `accel` puts the model on its device and runs forwards under its autocast (fp16 with a gradient scaler).
    Under torchrun the step runs in DistributedDataParallel (gradients averaged over ranks; each rank's loader
    yields its slice of every global batch), rank 0 alone evaluates and writes checkpoints, and every rank ends
    with the same weights. On CUDA, BatchNorm becomes SyncBatchNorm under DDP (edgeiqa.distributed.use_sync_batchnorm)."""

    def __init__(self, model, step_fn: Callable, eval_fn: Callable | None, out_dir: Path, cfg: TrainConfig, desc: str = "train",
                 accel: Accel | None = None):
        self.model = model
        self.step_fn = step_fn
        self.eval_fn = eval_fn
        self.out_dir = Path(out_dir)
        self.cfg = cfg
        self.desc = desc
        self.accel = accel or Accel(torch.device("cpu"))

    def fit(self, loader, resume: bool = False, progress: bool = True) -> dict:
        cfg, accel, dist = self.cfg, self.accel, distributed.current()
        main = dist.is_main
        progress = progress and main
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.model.to(accel.device)
        sync_bn = distributed.use_sync_batchnorm(accel.device, dist.world_size)
        if sync_bn:  # in place for every child layer; same parameter and buffer names, so checkpoints load as before
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        step = _Step(self.model, self.step_fn)
        if dist.enabled:
            ids = [accel.device.index] if accel.device.type == "cuda" else None
            # find_unused_parameters: a training-only head may be unused when its loss weight is 0.
            step = torch.nn.parallel.DistributedDataParallel(step, device_ids=ids, find_unused_parameters=True)
        scaler = accel.grad_scaler()
        opt = torch.optim.AdamW(param_groups(self.model, cfg), weight_decay=cfg.weight_decay)
        total = max(1, cfg.epochs * len(loader))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(total, cfg.warmup_frac))
        state = {"epoch": 0, "history": [], "best": -math.inf, "config": asdict(cfg), "world_size": dist.world_size,
                 "sync_batchnorm": sync_bn}
        last = self.out_dir / "last.pt"
        if resume and last.exists():
            ckpt = load_checkpoint(last)
            if ckpt["state"]["config"] != state["config"]:
                raise EdgeIQAError(f"cannot resume from {last}: it was trained with other settings; remove it or drop --resume")
            if ckpt["state"].get("world_size", 1) != dist.world_size:
                raise EdgeIQAError(f"cannot resume from {last}: it was trained with {ckpt['state'].get('world_size', 1)} "
                                   f"process(es), this job has {dist.world_size}; relaunch with the same --nproc-per-node")
            self.model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            if "scaler" in ckpt:
                scaler.load_state_dict(ckpt["scaler"])
            torch.set_rng_state(ckpt["rng"])
            state = ckpt["state"]
        for epoch in range(state["epoch"], cfg.epochs):
            t0 = time.time()
            loader.dataset.set_epoch(epoch)
            if hasattr(loader, "batch_sampler") and hasattr(loader.batch_sampler, "set_epoch"):
                loader.batch_sampler.set_epoch(epoch)
            self.model.train()
            sums: dict[str, float] = {}
            bar = tqdm(loader, desc=f"{self.desc} {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
            for batch in bar:
                with accel.autocast():
                    lb: LossBatch = step(to_device(batch, accel.device))
                loss, parts = combined_loss(cfg.losses, _fp32(lb))
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            record = {"epoch": epoch + 1, "seconds": round(time.time() - t0, 1)}
            record.update({f"loss_{k}": round(v / max(1, len(loader)), 5) for k, v in sums.items()})
            if self.eval_fn is not None:
                if main:
                    self.model.eval()
                    with torch.no_grad():
                        record.update(self.eval_fn(self.model))
                record = distributed.all_gather_objects(record)[0]  # every rank follows rank 0's evaluation
                if record.get("val", -math.inf) > state["best"]:
                    state["best"] = record["val"]
                    if main:
                        atomic_save(self.model.state_dict(), self.out_dir / "best.pt")
            state["history"].append(record)
            state["epoch"] = epoch + 1
            if progress:
                # Logs go to stderr: stdout carries only results (`--json` prints one document there).
                tqdm.write(f"{self.desc} epoch {epoch + 1}/{cfg.epochs}: " + json.dumps(record), file=sys.stderr)
            if main:
                atomic_save(
                    {"model": self.model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "scaler": scaler.state_dict(), "rng": torch.get_rng_state(), "state": state},
                    last,
                )
        distributed.barrier(f"{self.desc} training")  # best.pt is written before any rank reads it
        if dist.enabled:
            # DDP sits in a reference cycle, so leaving this function alone does not free it: its reducer (which
            # holds the process group and the last gradient all-reduce's work) would wait for the cyclic collector,
            # possibly until interpreter exit, after destroy_process_group, where gloo can abort the process (the
            # likely cause of a SIGABRT seen once in CI). Free it now, while the group and the interpreter are alive.
            del step
            gc.collect()
        if self.eval_fn is not None and (self.out_dir / "best.pt").exists():
            self.model.load_state_dict(torch.load(self.out_dir / "best.pt", map_location=accel.device, weights_only=True))
        return state
