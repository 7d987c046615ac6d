"""Sharpness and contrast (KADID group 7): over-sharpening and a contrast boost (the sample ladder's
`contrast` kind is the opposite, contrast loss)."""

from __future__ import annotations

import numpy as np

from edgeiqa.data.degradations.common import _gaussian_blur, _to_u8, ramp
from edgeiqa.data.distortions import register_distortion


@register_distortion("sharpen", "over-sharpening: unsharp mask (sigma 1.5 px), gain 0 -> 5, halos and clipping")
def sharpen(img, amount, rng):
    x = img.astype(np.float32)
    detail = x - _gaussian_blur(img, 1.5).astype(np.float32)
    return _to_u8(x + np.float32(ramp(amount, 0.0, 5.0)) * detail)


@register_distortion("contrast_change", "contrast boost about the mean, x1 -> x3, clipped at black and white")
def contrast_change(img, amount, rng):
    x = img.astype(np.float32)
    mean = x.reshape(-1, 3).mean(axis=0)
    return _to_u8(mean + (x - mean) * np.float32(ramp(amount, 1.0, 3.0)))
