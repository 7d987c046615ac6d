"""What every dataset loader returns: a list of image records, labelled or not."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

# Split names used across the toolkit. `pool` = images whose labels are held back so teachers label them.
SPLITS = ("train", "val", "test", "pool")


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    score: float | None = None  # ground-truth quality (MOS / JOD / severity-derived); None = unlabelled
    scene: str | None = None  # images compared against each other (PIQ23 scene, sample photo x distortion)
    split: str | None = None  # one of SPLITS or None when the dataset has no split
    kind: str | None = None  # distortion kind / attribute, for the worst-kind metric
    line: int | None = None  # line in the source CSV, for error messages
    group: str | None = None  # a subset the dataset defines (BIQ2021's ss01/ss02/ss03): reports break results down by it


@dataclass
class Dataset:
    spec: str
    records: list[ImageRecord]
    # Extra facts a loader knows (score scale, source CSV, official split file) for cards and manifests.
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, splits: str | Iterable[str]) -> "Dataset":
        wanted = {splits} if isinstance(splits, str) else set(splits)
        return Dataset(f"{self.spec}[{','.join(sorted(wanted))}]", [r for r in self.records if r.split in wanted], dict(self.info))

    def labelled(self) -> "Dataset":
        return Dataset(self.spec, [r for r in self.records if r.score is not None], dict(self.info))

    def unlabelled(self) -> "Dataset":
        """Copy with scores dropped (the pseudo-labelling pool keeps its ground truth out of training)."""
        return Dataset(self.spec, [replace(r, score=None) for r in self.records], dict(self.info))

    @property
    def splits(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.split or "-"] = counts.get(r.split or "-", 0) + 1
        return counts

    @property
    def scenes(self) -> list[str]:
        return sorted({r.scene for r in self.records if r.scene is not None})

    @property
    def has_scenes(self) -> bool:
        return any(r.scene is not None for r in self.records)


def split_key(record: ImageRecord) -> str:
    """The unit every train-side split moves whole: the scene when the record has one (a scene is never split),
    else the image."""
    return record.scene if record.scene is not None else str(record.path)
