from edgeiqa.teachers.model import IQATeacher, build_teacher
from edgeiqa.teachers.registry import register_teacher


@register_teacher(
    "lite2_mv",
    timm_name="tf_efficientnet_lite2",
    views=[("resize", (336, 336)), ("fragments", (336, 336))],
    encoder="multilevel",
)
def lite2_mv(**kwargs) -> IQATeacher:
    """EfficientNet-Lite2 with its shipped ImageNet weights (offline), resize + large fragments views,
    mean+std pooled multi-level features: the member that makes the ensemble strong without a network."""
    return build_teacher("lite2_mv", **kwargs)


@register_teacher(
    "lite0_mv",
    timm_name="tf_efficientnet_lite0",
    views=[("resize", (320, 320)), ("fragments", (336, 336))],
    encoder="multilevel",
)
def lite0_mv(**kwargs) -> IQATeacher:
    """EfficientNet-Lite0 (shipped weights), resize + fragments: a cheap pretrained member."""
    return build_teacher("lite0_mv", **kwargs)


@register_teacher(
    "lite1_mv",
    timm_name="tf_efficientnet_lite1",
    views=[("resize", (320, 320)), ("fragments", (336, 336))],
    encoder="multilevel",
)
def lite1_mv(**kwargs) -> IQATeacher:
    """EfficientNet-Lite1 (shipped weights), resize + fragments: between Lite0 and Lite2 in cost."""
    return build_teacher("lite1_mv", **kwargs)
