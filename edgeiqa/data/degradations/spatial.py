"""Spatial distortions (KADID group 6): jitter, non-eccentricity patches, quantisation and colour blocks.
Pixelation is the sample ladder's `pixelate` kind.

The random kinds draw every position at full strength and use a prefix (or a scaled field), so one seed
gives nested results: a larger amount keeps all the damage of a smaller one and adds more.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeiqa.data.degradations.common import geom, ramp
from edgeiqa.data.distortions import register_distortion

PATCH = 16  # px, the patch and block side at any image size (KADID uses fixed-size patches too)


@register_distortion("jitter", "every pixel displaced at random by up to 0 -> 5 px (bilinear)", uses_rng=True)
def jitter(img, amount, rng):
    h, w = img.shape[:2]
    d = np.float32(ramp(amount, 0.0, 5.0))
    dx, dy = rng.uniform(-1.0, 1.0, (2, h, w)).astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(img, xs + d * dx, ys + d * dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _patch_slots(h: int, w: int) -> int:
    return max(1, (h * w) // (PATCH * PATCH))


@register_distortion("patch_shuffle", "non-eccentricity patches: 16 px patches replaced by a neighbour 8-24 px away, "
                     "0 -> 60 % of the image", uses_rng=True)
def patch_shuffle(img, amount, rng):
    h, w = img.shape[:2]
    p = min(PATCH, h, w)
    slots = int(round(0.6 * _patch_slots(h, w)))
    ys = rng.integers(0, h - p + 1, slots)
    xs = rng.integers(0, w - p + 1, slots)
    dist = rng.uniform(8.0, 24.0, slots)
    ang = rng.uniform(0.0, 2 * np.pi, slots)
    sy = np.clip(np.rint(ys + dist * np.sin(ang)), 0, h - p).astype(int)
    sx = np.clip(np.rint(xs + dist * np.cos(ang)), 0, w - p).astype(int)
    n = int(np.ceil(amount * slots))
    out = img.copy()
    for y, x, y0, x0 in zip(ys[:n], xs[:n], sy[:n], sx[:n]):
        out[y : y + p, x : x + p] = img[y0 : y0 + p, x0 : x0 + p]  # copied from the original: nested damage
    return out


@register_distortion("quantization", "uniform quantisation of every channel, 256 -> 2 levels (posterisation)")
def quantization(img, amount, rng):
    levels = max(2, int(round(geom(amount, 256.0, 2.0))))
    step = 256.0 / levels
    q = np.floor(img.astype(np.float32) / step)
    return np.clip(np.rint(q * (255.0 / (levels - 1))), 0, 255).astype(np.uint8)


@register_distortion("color_block", "16 px blocks of random flat colour pasted over 0 -> 30 % of the image",
                     uses_rng=True)
def color_block(img, amount, rng):
    h, w = img.shape[:2]
    p = min(PATCH, h, w)
    slots = int(round(0.3 * _patch_slots(h, w))) + 1
    ys = rng.integers(0, h - p + 1, slots)
    xs = rng.integers(0, w - p + 1, slots)
    colours = rng.integers(0, 256, (slots, 3), dtype=np.uint8)
    out = img.copy()
    for y, x, c in list(zip(ys, xs, colours))[: int(np.ceil(amount * slots))]:
        out[y : y + p, x : x + p] = c
    return out
