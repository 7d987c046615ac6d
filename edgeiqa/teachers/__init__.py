"""Teachers: timm backbones with IQA heads, ensembles, and the LabelSet of pseudo-labels they write."""

from edgeiqa.teachers import efficientnet_lite, swin, vit  # noqa: F401  (registration)
from edgeiqa.teachers.model import IQATeacher, build_teacher
from edgeiqa.teachers.registry import TEACHERS, create_teacher, get_teacher_entry, is_registered, list_teachers, register_teacher

__all__ = ["IQATeacher", "TEACHERS", "build_teacher", "create_teacher", "get_teacher_entry", "is_registered",
           "list_teachers", "register_teacher"]
