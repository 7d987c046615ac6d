from edgeiqa.students.model import IQAStudent, build_student
from edgeiqa.students.registry import register_student


@register_student("nf_regnet_b1", timm_name="nf_regnet_b1", capability=40)
def nf_regnet_b1(views, **kwargs) -> IQAStudent:
    """NF-RegNet-B1 (timm): no BatchNorm (weight standardisation), the largest student."""
    return build_student("nf_regnet_b1", views, **kwargs)
