from edgeiqa.students.model import IQAStudent, build_student
from edgeiqa.students.registry import register_student


@register_student("mobilenetv3_large", timm_name="mobilenetv3_large_100", capability=30)
def mobilenetv3_large(views, **kwargs) -> IQAStudent:
    """MobileNetV3-Large 1.0 (timm); ImageNet weights with --pretrained (network) or --weights FILE."""
    return build_student("mobilenetv3_large", views, **kwargs)
