"""Build, save and load students. `student.pt` holds everything needed to rebuild the model.

A pruned student (`distill --fit prune`) has narrower layers than its registered build. Its checkpoint
also holds torch-pruning's per-module attributes (`tp.state_dict(...)["attributions"]`: channel counts,
groups, feature sizes); loading builds the registered student, applies them with `tp.load_state_dict`,
resizes each tensor to the saved shape and only then loads the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path
from edgeiqa.safeload import load_weights
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
    pruning = getattr(model, "pruning", None)
    if pruning:
        payload["pruning"] = {**pruning, "attributes": pruned_attributes(model)}
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
        payload = load_weights(path, what="student checkpoint")
    except EdgeIQAError:
        raise
    except Exception as exc:
        raise EdgeIQAError(f"cannot read student checkpoint {path}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise EdgeIQAError(f"{path} is not an edgeiqa student checkpoint (format {CHECKPOINT_FORMAT})")
    views = [ViewSpec.from_dict(v) for v in payload["views"]]
    model = create_student(payload["student"], views, offline_pretrained=False, hidden=payload["hidden"])
    pruning = payload.get("pruning")
    if pruning:
        try:
            apply_pruned_shapes(model, pruning["attributes"], payload["state_dict"])
        except (AttributeError, KeyError, TypeError) as exc:
            raise EdgeIQAError(f"{path}: cannot rebuild the pruned layers of {payload['student']}: {exc}") from None
        model.pruning = {k: v for k, v in pruning.items() if k != "attributes"}
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0] if first else ""
        raise EdgeIQAError(f"{path}: weights do not fit student {payload['student']} ({detail})") from None
    model.eval()
    return model, payload


# Attribute values kept from torch-pruning's record: plain values only (channel counts, kernel sizes,
# groups, flags), so loading never sets an object that belongs to the run that saved it.
_PLAIN = (int, float, bool, str, type(None))


def _plain(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN)


def pruned_attributes(model: IQAStudent) -> dict[str, dict]:
    """torch-pruning's attributes of every module that owns tensors (the layers pruning can narrow)."""
    import torch_pruning as tp

    attrs = tp.state_dict(model)["attributions"]
    owners = {name for name, mod in model.named_modules()
              if any(True for _ in mod.parameters(recurse=False)) or any(True for _ in mod.buffers(recurse=False))}
    return {name: {k: v for k, v in attrs[name].items() if k != "training" and _plain(v)}
            for name in owners if name in attrs}


def apply_pruned_shapes(model: IQAStudent, attributes: dict[str, dict], state: dict[str, torch.Tensor]) -> None:
    """Narrow a freshly built student to a pruned checkpoint: layer attributes, then tensor shapes."""
    import torch_pruning as tp

    tp.load_state_dict(model, {"full_state_dict": {}, "attributions": attributes})
    for name, mod in model.named_modules():
        tensors = list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False))
        for tname, tensor in tensors:
            saved = state.get(f"{name}.{tname}" if name else tname)
            if saved is not None and saved.shape != tensor.shape:
                tensor.data = torch.empty_like(saved)
