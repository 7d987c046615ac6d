"""The models whose frozen-backbone features the heads learn from, and the per-image feature cache."""

from __future__ import annotations

import hashlib
import json

import torch

from edgeiqa.data.sample import sample_root
from edgeiqa.data.torchdata import ImageCache
from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path
from edgeiqa.teachers.features import extract_features
from edgeiqa.teachers.model import IQATeacher
from edgeiqa.teachers.registry import TeacherEntry

from .images import Img

TEACHERS = ("lite2_mv", "lite0_mv")
STUDENT = "student_lite0"
# A student at <= 1/10 of the teacher ensemble's GMACs: the same backbone on one native-resolution fragments view.
SMALL_STUDENT = "student_lite0_small"
SMALL_VIEWS = (ViewSpec("fragments", (224, 224), 7),)
GEN_VERSION = "generalise-v1"  # bump when photo preparation or a degradation changes: cached features are per image key


def student_model(views, name: str = STUDENT) -> IQATeacher:
    """The deployed student's backbone (EfficientNet-Lite0, shipped weights) at the given student views."""
    entry = TeacherEntry(name, None, "tf_efficientnet_lite0", tuple(views), encoder="multilevel")
    return IQATeacher(entry)


def cached_features(model: IQATeacher, imgs: list[Img], cache: ImageCache, progress: bool) -> torch.Tensor:
    """(N, F) frozen-backbone features of every image. Stored per image under $EDGEIQA_CACHE/generalise (one file
    per model, weights and views), so a --quick run's images are reused by the full run and reruns cost nothing."""
    sig = hashlib.sha256(json.dumps([GEN_VERSION, model.weights_source, [v.to_dict() for v in model.entry.views]]).encode())
    path = sample_root().parent / "generalise" / f"{model.entry.name}-{sig.hexdigest()[:12]}.pt"
    stored: dict[str, torch.Tensor] = torch.load(path, weights_only=True) if path.exists() else {}
    todo = [i.key for i in imgs if i.key not in stored]
    if todo:
        torch.manual_seed(0)
        feats = extract_features(model, todo, cache, batch_size=16, progress=progress, desc=f"{model.entry.name} features")
        if not bool(feats["ok"].all()):
            raise EdgeIQAError(f"{model.entry.name}: {int((~feats['ok']).sum())} images failed to give features")
        stored.update(zip(todo, feats["eval"].unbind(0)))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({k: v.clone() for k, v in stored.items()}, tmp)
    return torch.stack([stored[i.key] for i in imgs])
