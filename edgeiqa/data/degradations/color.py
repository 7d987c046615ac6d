"""Colour distortions (KADID group 2): diffusion, shift, quantisation, desaturation and oversaturation."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from edgeiqa.data.degradations.common import from_lab, geom, ramp, to_lab
from edgeiqa.data.distortions import register_distortion


@register_distortion("color_diffusion", "colour bleeding: Lab chroma (a, b) blurred, sigma 0 -> 12 px, lightness kept")
def color_diffusion(img, amount, rng):
    lab = to_lab(img)
    sigma = max(ramp(amount, 0.0, 12.0), 1e-3)
    lab[..., 1:] = cv2.GaussianBlur(lab[..., 1:], (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return from_lab(lab)


@register_distortion("color_shift", "colour misregistration: red and blue planes shifted apart, 0 -> 8 px each")
def color_shift(img, amount, rng):
    d = ramp(amount, 0.0, 8.0)
    h, w = img.shape[:2]
    out = img.copy()
    for channel, sign in ((0, 1.0), (2, -1.0)):  # red one way, blue the other (lateral chromatic aberration)
        m = np.float32([[1, 0, sign * d], [0, 1, sign * d / 2]])
        out[..., channel] = cv2.warpAffine(img[..., channel], m, (w, h), flags=cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REFLECT_101)
    return out


@register_distortion("color_quantization", "palette reduction (fast octree, no dither), 256 -> 4 colours")
def color_quantization(img, amount, rng):
    colors = max(2, int(round(geom(amount, 256.0, 4.0))))
    pal = Image.fromarray(img).quantize(colors=colors, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    return np.asarray(pal.convert("RGB")).copy()


@register_distortion("desaturate", "saturation loss: Lab chroma scaled by 1 -> 0 (grey)")
def desaturate(img, amount, rng):
    lab = to_lab(img)
    lab[..., 1:] *= np.float32(1.0 - amount)
    return from_lab(lab)


@register_distortion("oversaturate", "oversaturation: Lab chroma scaled by 1 -> 4, out-of-gamut colours clipped")
def oversaturate(img, amount, rng):
    lab = to_lab(img)
    lab[..., 1:] *= np.float32(ramp(amount, 1.0, 4.0))
    return from_lab(lab)
