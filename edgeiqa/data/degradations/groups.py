"""The group table: every degradation kind (the sample ladder's nine and this library's) in one group.

Seven groups follow KADID-10k's reference list of 25 distortion types (Lin, Hosu, Saupe 2019); the
eighth, `camera`, holds chains of artefacts as a phone makes them. KADID's JPEG and pixelate types are
the sample ladder's `jpeg` and `pixelate`; the ladder's other kinds sit in the group they belong to.
Leave-kinds-out folds and ranking pre-training pick kinds by group through `kinds_in_group`.
"""

from __future__ import annotations

from edgeiqa.data.distortions import DISTORTIONS
from edgeiqa.errors import EdgeIQAError, did_you_mean

GROUPS: dict[str, tuple[str, ...]] = {
    "blurs": ("blur", "gaussian_blur", "lens_blur", "motion_blur"),
    "color": ("color", "color_diffusion", "color_shift", "color_quantization", "desaturate", "oversaturate"),
    "compression": ("jpeg", "jpeg2000"),
    "noise": ("noise", "white_noise", "color_noise", "impulse_noise", "multiplicative_noise", "denoise"),
    "brightness": ("overexposure", "underexposure", "brighten", "darken", "mean_shift"),
    "spatial": ("pixelate", "jitter", "patch_shuffle", "quantization", "color_block"),
    "sharpness_contrast": ("contrast", "sharpen", "contrast_change"),
    "camera": ("mixed", "low_light", "blur_jpeg", "noise_jpeg", "camera_chain"),
}

_GROUP_OF = {kind: group for group, members in GROUPS.items() for kind in members}


def group_names() -> list[str]:
    return list(GROUPS)


def kinds_in_group(name: str) -> list[str]:
    """The kinds of one group; EdgeIQAError naming the closest group for an unknown name."""
    try:
        return list(GROUPS[name])
    except (KeyError, TypeError):
        raise EdgeIQAError(f"unknown degradation group {name!r} (groups: {', '.join(GROUPS)})"
                           f"{did_you_mean(str(name), GROUPS)}") from None


def group_of(kind: str) -> str:
    """The group a kind belongs to; EdgeIQAError naming the closest kind for an unknown name."""
    try:
        return _GROUP_OF[kind]
    except (KeyError, TypeError):
        raise EdgeIQAError(f"unknown degradation kind {kind!r}{did_you_mean(str(kind), _GROUP_OF)}") from None


def select_kinds(kinds=None, groups=None) -> list[str] | None:
    """The kinds named in `kinds` plus every kind of the groups in `groups`, in table order, no repeats;
    None when neither is given (the caller's default). An unknown name is an EdgeIQAError naming the closest."""
    if kinds is None and groups is None:
        return None
    wanted = set()
    for k in kinds or ():
        group_of(k)  # an unknown kind raises here
        wanted.add(k)
    for g in groups or ():
        wanted.update(kinds_in_group(g))
    if not wanted:
        raise EdgeIQAError("no degradation kind selected: name at least one kind or group")
    return [k for ks in GROUPS.values() for k in ks if k in wanted]


def severity_range(kind: str) -> str:
    """What the range in a kind's description spans: the sample-v1 ladder's nine (registered by
    `edgeiqa.data.distortions` itself) put their first level at severity 1; the library's kinds at amount 0."""
    if DISTORTIONS[kind].fn.__module__ == "edgeiqa.data.distortions":
        return "severity 1 -> 6"
    return "amount 0 -> 1"


def describe_kinds() -> list[dict]:
    """One row per kind, table order: group, kind, description (the docs/datasets.md table is made from it), what
    the description's range spans, and whether the kind draws from the rng."""
    return [{"group": g, "kind": k, "description": DISTORTIONS[k].description, "severity_range": severity_range(k),
             "uses_rng": DISTORTIONS[k].uses_rng} for g, ks in GROUPS.items() for k in ks]
