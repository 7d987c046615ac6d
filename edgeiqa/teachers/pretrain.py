"""Label-free ranking pre-training (RankIQA idea) of a teacher on synthetic degradations.

Each step takes a few unlabelled images; each is degraded with one random distortion kind at three
increasing amounts (kinds from the degradation library `edgeiqa.data.degradations`: all 36 by default,
`kinds=` restricts them, e.g. to hold whole groups out). Within that little "scene", the less degraded
copy must score higher (margin ranking loss on same-scene pairs). Pair accuracy on a fixed, seeded
probe set is measured before and after. The result (`OUT/pretrained.pt`) is a teacher checkpoint that `teachers train --weights` starts from.
Checkpointed every 10 steps with optimizer and RNG state; `--resume` continues.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edgeiqa.accel import Accel
from edgeiqa.data.degradations import GROUPS, group_of
from edgeiqa.data.distortions import random_degradation
from edgeiqa.data.records import Dataset
from edgeiqa.data.torchdata import ImageCache
from edgeiqa.errors import EdgeIQAError
from edgeiqa.losses import LossBatch, rank
from edgeiqa.outsafe import mark_dir
from edgeiqa.safeload import load_weights
from edgeiqa.teachers import create_teacher
from edgeiqa.teachers.features import view_tensors
from edgeiqa.teachers.train import TEACHER_FORMAT, unique_paths
from edgeiqa.training import atomic_save

LEVELS = 3
MIN_IMAGES = 2  # with a single photo every step would rank ladders of that one scene


def library_kinds() -> list[str]:
    """Every kind of the degradation library, in group-table order (the default pool)."""
    return [k for members in GROUPS.values() for k in members]


def _ladder(img: np.ndarray, rng: np.random.Generator, kinds: list[str]) -> tuple[list[np.ndarray], list[float], str]:
    """The image plus LEVELS copies of one random kind at increasing amounts; target = -amount; the kind."""
    first = random_degradation(img, rng, kinds=kinds)
    amounts = np.sort(rng.uniform(0.1, 1.0, LEVELS))
    images, targets = [img], [0.0]
    for a in amounts:
        images.append(random_degradation(img, rng, kind=first.kind, amount=float(a)).image)
        targets.append(-float(a))
    return images, targets, first.kind


def _batch(teacher, imgs: list[np.ndarray], rng, device=None) -> list[torch.Tensor]:
    per_image = [view_tensors(im, teacher.entry.views, rng) for im in imgs]
    return [torch.cat([p[k] for p in per_image]).to(device or "cpu") for k in range(len(teacher.entry.views))]


@torch.no_grad()
def pair_accuracy(teacher, probe: list[tuple[list[np.ndarray], list[float]]], accel: Accel | None = None) -> float:
    accel = accel or Accel(torch.device("cpu"))
    teacher.eval()
    right = total = 0
    for images, targets in probe:
        with accel.autocast():
            out = teacher(*_batch(teacher, images, None, accel.device))[0]
        s = out.float().cpu().numpy()  # compared in fp32
        for i in range(len(targets)):
            for j in range(i + 1, len(targets)):
                right += int((s[i] - s[j]) * (targets[i] - targets[j]) > 0)
                total += 1
    return right / max(1, total)


def ranking_pretrain(name: str, dataset: Dataset, out: Path, *, steps: int = 100, batch_pairs: int = 4, lr: float = 1e-4,
                     seed: int = 0, resume: bool = False, progress: bool = True, pretrained: bool = False,
                     accel: Accel | None = None, kinds: list[str] | None = None) -> dict:
    """`accel` (edgeiqa.accel): the device the teacher trains on and the autocast of its forwards (fp16 adds a
    gradient scaler); default CPU, fp32. The loss and pair accuracy are computed in fp32. `kinds`: the degradation
    kinds the ranking ladders use (default: the whole library)."""
    from edgeiqa.bounds import MAX_BATCH, check_count, check_positive

    check_count("steps", steps)  # steps=0 would write an untrained "pretrained" model
    check_count("batch_pairs", batch_pairs, high=MAX_BATCH)
    check_positive("lr", lr)
    accel = accel or Accel(torch.device("cpu"))
    out = Path(out)
    kinds = library_kinds() if kinds is None else list(dict.fromkeys(kinds))
    if not kinds:
        raise EdgeIQAError("ranking pre-training needs at least one degradation kind")
    for kind in kinds:
        group_of(kind)  # an unknown name: EdgeIQAError naming the closest kind
    cache = ImageCache()
    candidates = unique_paths(dataset)
    paths = [p for p in candidates if cache.get(p) is not None]
    if len(paths) < MIN_IMAGES:
        raise EdgeIQAError(f"{dataset.spec}: ranking pre-training needs at least {MIN_IMAGES} readable images, found "
                           f"{len(paths)} ({len(candidates) - len(paths)} of {len(candidates)} could not be read)")
    mark_dir(out, "pretrain")  # work starts: edgeiqa owns the folder (a rerun or --resume may write here)
    torch.manual_seed(seed)
    teacher = create_teacher(name, pretrained=pretrained).to(accel.device)
    scaler = accel.grad_scaler()
    opt = torch.optim.AdamW([p for p in teacher.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    probe_rng = np.random.default_rng([seed, 99])
    probe = [_ladder(cache.get(paths[i % len(paths)]), probe_rng, kinds)[:2] for i in range(min(6, len(paths)))]
    state = {"step": 0, "losses": [], "pair_accuracy_before": pair_accuracy(teacher, probe, accel), "kinds": kinds,
             "drawn": {}}
    ckpt = out / "last.pt"
    if resume and ckpt.exists():
        c = load_weights(ckpt, map_location=accel.device, what="pre-training checkpoint")
        if c["state"].get("kinds", kinds) != kinds:
            raise EdgeIQAError(f"{ckpt}: --resume with other degradation kinds than the interrupted run "
                               f"({','.join(c['state']['kinds'])})")
        teacher.load_state_dict(c["model"])
        opt.load_state_dict(c["optimizer"])
        torch.set_rng_state(c["rng"].cpu())
        state = c["state"]
    drawn = state.setdefault("drawn", {})  # kind -> ladders drawn, reported so a restriction can be checked
    t0 = time.time()
    bar = tqdm(range(state["step"], steps), desc=f"rank-pretrain {name}", disable=not progress, leave=False)
    for step in bar:
        rng = np.random.default_rng([seed, step])
        teacher.train()
        imgs, targets, scenes = [], [], []
        for k, i in enumerate(rng.choice(len(paths), size=min(batch_pairs, len(paths)), replace=False)):
            ladder, t, kind = _ladder(cache.get(paths[i]), rng, kinds)
            drawn[kind] = drawn.get(kind, 0) + 1
            imgs += ladder
            targets += t
            scenes += [k] * len(t)
        with accel.autocast():
            pred, _ = teacher(*_batch(teacher, imgs, rng, accel.device))
        n, dev = len(targets), accel.device
        loss = rank(LossBatch(pred.float(), torch.tensor(targets, device=dev), torch.tensor(scenes, device=dev),
                              torch.ones(n, device=dev)))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        state["losses"].append(round(float(loss.detach()), 5))
        state["step"] = step + 1
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if state["step"] % 10 == 0 or state["step"] == steps:
            atomic_save({"model": teacher.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "state": state}, ckpt)
    state["pair_accuracy_after"] = pair_accuracy(teacher, probe, accel)
    atomic_save({"format": TEACHER_FORMAT, "teacher": name, "state_dict": teacher.state_dict(),
                 "weights_source": f"rank-pretrain:{teacher.weights_source}", "metrics": {},
                 "compute": accel.describe()}, out / "pretrained.pt")
    return {"teacher": name, "steps": state["step"], "kinds": kinds, "kinds_drawn": dict(sorted(drawn.items())),
            "pair_accuracy_before": state["pair_accuracy_before"],
            "pair_accuracy_after": state["pair_accuracy_after"], "final_loss": state["losses"][-1] if state["losses"] else None,
            "seconds": round(time.time() - t0, 1), "weights": str(out / "pretrained.pt"), "compute": accel.describe()}
