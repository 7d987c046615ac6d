"""Students: small timm backbones with an IQA head, registered by family (one file per family)."""

from edgeiqa.students import efficientnet_lite, ghostnet, mobilenetv3, nfregnet  # noqa: F401  (registration)
from edgeiqa.students.factory import create_student, load_student, save_student
from edgeiqa.students.model import IQAStudent, build_student
from edgeiqa.students.registry import STUDENTS, get_student_entry, is_registered, list_students, register_student

__all__ = [
    "IQAStudent",
    "STUDENTS",
    "build_student",
    "create_student",
    "get_student_entry",
    "is_registered",
    "list_students",
    "load_student",
    "register_student",
    "save_student",
]
