from edgeiqa.students.model import IQAStudent, build_student
from edgeiqa.students.registry import register_student


@register_student("ghostnetv2", timm_name="ghostnetv2_100", capability=20)
def ghostnetv2(views, **kwargs) -> IQAStudent:
    """GhostNetV2 1.0 (timm); the cheapest student. Pruning skips its concat-slice Ghost modules."""
    return build_student("ghostnetv2", views, **kwargs)
