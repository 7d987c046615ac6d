"""Blurs (KADID group 1): Gaussian, lens (defocus disk) and linear motion blur."""

from __future__ import annotations

import math

import cv2
import numpy as np

from edgeiqa.data.degradations.common import _gaussian_blur, filter_rgb, ramp
from edgeiqa.data.distortions import register_distortion


def disk_kernel(radius: float) -> np.ndarray:
    """An anti-aliased disk (a defocused lens's point spread), sum 1; radius may be fractional."""
    r = max(float(radius), 1e-3)
    half = int(math.ceil(r))
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    k = np.clip(r + 0.5 - np.hypot(x, y), 0.0, 1.0)  # partial coverage of the rim pixels
    return k / k.sum()


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A straight streak of `length` px at `angle_deg`, fractional ends, sum 1."""
    length = max(float(length), 1e-3)
    half = int(math.ceil(length / 2)) + 1
    size = 2 * half + 1
    k = np.zeros((size, size), np.float32)
    xs = np.arange(size, dtype=np.float32) - half
    k[half] = np.clip(length / 2 + 0.5 - np.abs(xs), 0.0, 1.0)  # horizontal streak, partial end pixels
    rot = cv2.getRotationMatrix2D((float(half), float(half)), float(angle_deg), 1.0)
    k = cv2.warpAffine(k, rot, (size, size), flags=cv2.INTER_LINEAR)
    return k / k.sum()


@register_distortion("gaussian_blur", "Gaussian blur, sigma 0 -> 5 px")
def gaussian_blur(img, amount, rng):
    return _gaussian_blur(img, max(ramp(amount, 0.0, 5.0), 1e-3))


@register_distortion("lens_blur", "lens (defocus) blur with a disk kernel, radius 0 -> 8 px")
def lens_blur(img, amount, rng):
    return filter_rgb(img, disk_kernel(ramp(amount, 0.0, 8.0)))


@register_distortion("motion_blur", "linear motion blur at a random angle, streak 0 -> 24 px", uses_rng=True)
def motion_blur(img, amount, rng):
    angle = float(rng.uniform(0.0, 180.0))  # drawn first, so one seed gives the same direction at every amount
    return filter_rgb(img, motion_kernel(ramp(amount, 0.0, 24.0), angle))
