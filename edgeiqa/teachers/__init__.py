"""Teachers: timm backbones with IQA heads, ensembles, and the LabelSet of pseudo-labels they write."""

from edgeiqa.teachers import efficientnet_lite, swin, vit  # noqa: F401  (registration)
from edgeiqa.teachers.model import IQATeacher
from edgeiqa.teachers.registry import get_teacher_entry, is_registered, list_teachers, register_teacher


def create_teacher(name: str, pretrained: bool = False, hidden: int = 256) -> IQATeacher:
    """A registered teacher. `pretrained=True` asks timm's hub (network); shipped weights load offline."""
    return IQATeacher(get_teacher_entry(name), pretrained=pretrained, hidden=hidden)


__all__ = ["IQATeacher", "create_teacher", "get_teacher_entry", "is_registered", "list_teachers", "register_teacher"]
