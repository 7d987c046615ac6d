from edgeiqa.teachers.model import IQATeacher, build_teacher
from edgeiqa.teachers.registry import register_teacher


@register_teacher(
    "uiqa_swin_t",
    timm_name="swin_tiny_patch4_window7_224",
    views=[("resize", (224, 224)), ("fragments", (224, 224)), ("center", (224, 224))],
    shared_backbone=False,
)
def uiqa_swin_t(**kwargs) -> IQATeacher:
    """UIQA-style multi-view Swin-T: resize + fragments + center views, one backbone per view, concatenated."""
    return build_teacher("uiqa_swin_t", **kwargs)


@register_teacher("swin_b", timm_name="swin_base_patch4_window12_384", views=[("resize", (384, 384))])
def swin_b(**kwargs) -> IQATeacher:
    """Swin-B at 384x384 (about 47 GMAC): the large single-view teacher for users with a GPU and hub weights."""
    return build_teacher("swin_b", **kwargs)


@register_teacher(
    "dual_face_swin_t",
    timm_name="swin_tiny_patch4_window7_224",
    views=[("resize", (224, 224)), ("face", (224, 224))],
    shared_backbone=False,
)
def dual_face_swin_t(**kwargs) -> IQATeacher:
    """DN-PIQA-style dual teacher: the whole image plus a face crop (Haar cascade), one Swin-T per view."""
    return build_teacher("dual_face_swin_t", **kwargs)
