"""Torch datasets over image records, through the shared views. Used by teacher training and distillation.

Decoded images are cached in memory (the sample set is ~150 MB decoded); a file that fails to decode is
recorded with its reason and left out, never a crash. Training randomness (flip, fragment offsets, batch
order) comes from generators seeded by (seed, epoch, index), so a run resumed at epoch k sees exactly the
batches an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from edgeiqa.data.images import load_image
from edgeiqa.data.views import ViewSpec, make_views, to_batch
from edgeiqa.errors import ImageLoadError


class ImageCache:
    """path -> decoded RGB uint8; failures are remembered as path -> reason."""

    def __init__(self):
        self.images: dict[str, np.ndarray] = {}
        self.failed: dict[str, str] = {}

    def get(self, path: str | Path) -> np.ndarray | None:
        key = str(path)
        if key in self.images:
            return self.images[key]
        if key in self.failed:
            return None
        try:
            self.images[key] = load_image(key)
        except ImageLoadError as exc:
            self.failed[key] = exc.reason
            return None
        return self.images[key]

    def preload(self, paths, progress: bool = True, desc: str = "decode") -> None:
        todo = sorted({str(p) for p in paths} - set(self.images) - set(self.failed))
        for p in tqdm(todo, desc=desc, disable=not progress or not todo, leave=False):
            self.get(p)


@dataclass
class TrainItem:
    path: str
    target: float
    scene: int  # integer scene id, -1 when unknown
    weight: float = 1.0  # pseudo-labelled items weigh less than ground truth
    feat_row: int = -1  # row in the teacher-feature matrix, -1 when none


def epoch_index(k: int, n: int, epoch: int) -> tuple[int, int]:
    """(epoch, index) of a dataset key: training loaders pass epoch * n + index (see EpochIndexed), so worker
    processes, which hold their own copy of a dataset and never see set_epoch, derive the same
    (seed, epoch, index) randomness as the main process; a plain index keeps the dataset's own epoch."""
    return divmod(k, n) if k >= n else (epoch, k)


class ViewDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[TrainItem], views: list[ViewSpec], cache: ImageCache, train: bool, seed: int = 0):
        self.items = [it for it in items if cache.get(it.path) is not None]
        self.views = views
        self.cache = cache
        self.train = train
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        epoch, i = epoch_index(k, len(self.items), self.epoch)
        it = self.items[i]
        img = self.cache.get(it.path)
        rng = None
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, i])
            if rng.random() < 0.5:
                img = np.ascontiguousarray(img[:, ::-1])
        views, _ = make_views(img, self.views, rng)
        x = [torch.from_numpy(to_batch([views[v.name]])[0]) for v in self.views]
        return x, it.target, it.scene, it.weight, it.feat_row


def collate(batch):
    # channels_last: oneDNN's convolutions run 1.3-2x faster on CPU in this layout.
    views = [torch.stack([b[0][k] for b in batch]) for k in range(len(batch[0][0]))]
    views = [v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for v in views]
    target = torch.tensor([b[1] for b in batch], dtype=torch.float32)
    scene = torch.tensor([b[2] for b in batch], dtype=torch.long)
    weight = torch.tensor([b[3] for b in batch], dtype=torch.float32)
    feat_row = torch.tensor([b[4] for b in batch], dtype=torch.long)
    return views, target, scene, weight, feat_row


class SceneBatchSampler(torch.utils.data.Sampler):
    """Batches built from groups of images of the same scene, so pairwise losses have pairs to compare."""

    def __init__(self, scenes: list[int], batch_size: int, per_scene: int = 4, seed: int = 0):
        self.scenes = scenes
        self.batch_size = batch_size
        self.per_scene = per_scene
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch, 7919])
        by_scene: dict[int, list[int]] = {}
        for idx, s in enumerate(self.scenes):
            by_scene.setdefault(s, []).append(idx)
        groups = []
        for s in sorted(by_scene):
            idx = list(rng.permutation(by_scene[s]))
            step = len(idx) if s == -1 else self.per_scene
            groups += [idx[k : k + step] for k in range(0, len(idx), step)]
        order = rng.permutation(len(groups))
        flat = [int(i) for g in order for i in groups[g]]
        return [flat[k : k + self.batch_size] for k in range(0, len(flat), self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


class DistributedSceneBatchSampler(SceneBatchSampler):
    """Every rank builds the same global batches (same seed and epoch) and takes its contiguous slice of each,
    so N processes with global batch B see together what one process sees with batch B. A global batch too
    small to give every rank an item is dropped on all ranks alike (the ranks must take the same number of
    steps). Contiguous slices keep same-scene groups together when B is a multiple of per_scene x world."""

    def __init__(self, scenes: list[int], batch_size: int, rank: int, world_size: int, per_scene: int = 4, seed: int = 0):
        super().__init__(scenes, batch_size, per_scene, seed)
        self.rank, self.world_size = rank, world_size

    def _batches(self) -> list[list[int]]:
        from edgeiqa.distributed import shard_bounds

        out = []
        for b in super()._batches():
            if len(b) >= self.world_size:
                start, stop = shard_bounds(len(b), self.rank, self.world_size)
                out.append(b[start:stop])
        return out


class EpochIndexed(torch.utils.data.Sampler):
    """Yields a batch sampler's batches as epoch * len + index, which ViewDataset decodes: persistent worker
    processes hold their own copy of the dataset and never see set_epoch, yet must draw the same randomness."""

    def __init__(self, batch_sampler, n: int):
        self.batch_sampler, self.n, self.epoch = batch_sampler, n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batch_sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        return iter([[self.epoch * self.n + i for i in b] for b in self.batch_sampler])

    def __len__(self) -> int:
        return len(self.batch_sampler)


def make_loader(dataset: ViewDataset, batch_size: int, train: bool, seed: int = 0, workers: int = 0,
                pin_memory: bool = False):
    """Training loaders shard every global batch across torchrun's ranks; `workers` decode in parallel without
    changing a single value (randomness is per (seed, epoch, index), never per worker)."""
    from edgeiqa.distributed import current

    common = {"collate_fn": collate, "num_workers": workers, "pin_memory": pin_memory, "persistent_workers": workers > 0}
    if train:
        scenes, dist = [it.scene for it in dataset.items], current()
        sampler = (DistributedSceneBatchSampler(scenes, batch_size, dist.rank, dist.world_size, seed=seed) if dist.enabled
                   else SceneBatchSampler(scenes, batch_size, seed=seed))
        return torch.utils.data.DataLoader(dataset, batch_sampler=EpochIndexed(sampler, len(dataset)), **common)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, **common)


def scene_ids(scenes: list[str | None]) -> list[int]:
    """Stable integer ids for scene names (None -> -1)."""
    names = sorted({s for s in scenes if s is not None})
    lookup = {s: k for k, s in enumerate(names)}
    return [lookup[s] if s is not None else -1 for s in scenes]
