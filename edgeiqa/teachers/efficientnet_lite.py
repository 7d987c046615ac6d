from edgeiqa.teachers.registry import register_teacher


@register_teacher(
    "lite2_mv",
    timm_name="tf_efficientnet_lite2",
    views=[("resize", (336, 336)), ("fragments", (336, 336))],
    encoder="multilevel",
)
def lite2_mv():
    """EfficientNet-Lite2 with its shipped ImageNet weights (offline), resize + large fragments views,
    mean+std pooled multi-level features: the member that makes the ensemble strong without a network."""


@register_teacher(
    "lite0_mv",
    timm_name="tf_efficientnet_lite0",
    views=[("resize", (320, 320)), ("fragments", (336, 336))],
    encoder="multilevel",
)
def lite0_mv():
    """EfficientNet-Lite0 (shipped weights), resize + fragments: a cheap pretrained member."""
