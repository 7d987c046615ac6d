from edgeiqa.teachers.registry import register_teacher


@register_teacher(
    "uiqa_swin_t",
    timm_name="swin_tiny_patch4_window7_224",
    views=[("resize", (224, 224)), ("fragments", (224, 224)), ("center", (224, 224))],
    shared_backbone=False,
)
def uiqa_swin_t():
    """UIQA-style multi-view Swin-T: resize + fragments + center views, one backbone per view, concatenated."""


@register_teacher("swin_b", timm_name="swin_base_patch4_window12_384", views=[("resize", (384, 384))])
def swin_b():
    """Swin-B at 384x384 (about 47 GMAC): the large single-view teacher for users with a GPU and hub weights."""


@register_teacher(
    "dual_face_swin_t",
    timm_name="swin_tiny_patch4_window7_224",
    views=[("resize", (224, 224)), ("face", (224, 224))],
    shared_backbone=False,
)
def dual_face_swin_t():
    """DN-PIQA-style dual teacher: the whole image plus a face crop (Haar cascade), one Swin-T per view."""
