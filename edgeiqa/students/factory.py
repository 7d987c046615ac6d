"""Build, save and load students. `student.pt` holds everything needed to rebuild the model."""

from __future__ import annotations

from pathlib import Path

import torch

from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path
from edgeiqa.students.model import IQAStudent
from edgeiqa.students.registry import STUDENTS

CHECKPOINT_FORMAT = "edgeiqa-student/1"


def create_student(
    name: str,
    views: list[ViewSpec],
    *,
    pretrained: bool = False,
    offline_pretrained: bool = True,
    weights: str | Path | None = None,
    hidden: int = 256,
    feature_dim: int | None = None,
) -> IQAStudent:
    """A registered student with an IQA head. `weights` = a backbone state dict file (not a student.pt)."""
    return STUDENTS.create(name, views, pretrained=pretrained, offline_pretrained=offline_pretrained,
                           weights=weights, hidden=hidden, feature_dim=feature_dim)


def save_student(model: IQAStudent, path: str | Path, views: list[ViewSpec], meta: dict) -> None:
    """Write student.pt atomically: the deployable weights (no projection head) plus rebuild metadata."""
    path = Path(path)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("projection.")}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "student": model.student_name,
        "views": [v.to_dict() for v in views],
        "hidden": model.score.in_features,
        "state_dict": state,
        "meta": meta,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_student(path: str | Path) -> tuple[IQAStudent, dict]:
    """Rebuild a student from student.pt (no network, no shipped weights needed). Returns (model, payload)."""
    path = Path(path)
    if path.is_dir():
        path = path / "student.pt"
    if not path.exists():
        raise EdgeIQAError(f"student checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise EdgeIQAError(f"cannot read student checkpoint {path}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise EdgeIQAError(f"{path} is not an edgeiqa student checkpoint (format {CHECKPOINT_FORMAT})")
    views = [ViewSpec.from_dict(v) for v in payload["views"]]
    model = create_student(payload["student"], views, offline_pretrained=False, hidden=payload["hidden"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
