from edgeiqa.teachers.model import IQATeacher, build_teacher
from edgeiqa.teachers.registry import register_teacher


@register_teacher("vit_b", timm_name="vit_base_patch16_384", views=[("resize", (384, 384))])
def vit_b(**kwargs) -> IQATeacher:
    """ViT-B/16 at 384x384 (about 55.5 GMAC with attention counted)."""
    return build_teacher("vit_b", **kwargs)


@register_teacher("vit_s", timm_name="vit_small_patch16_224", views=[("fragments", (224, 224))])
def vit_s(**kwargs) -> IQATeacher:
    """ViT-S/16 on native-resolution fragments at 224x224: the CPU preset of the ViT teacher."""
    return build_teacher("vit_s", **kwargs)
