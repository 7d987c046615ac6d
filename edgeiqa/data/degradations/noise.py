"""Noise (KADID group 4): white, white in the chroma components, impulse, multiplicative, and denoised noise.

All draw their noise field once at full strength and scale it with the amount, so one seed gives the
same grain at every amount and a larger amount is strictly more of it.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeiqa.data.degradations.common import _to_u8, ramp, white_noise
from edgeiqa.data.distortions import register_distortion


@register_distortion("white_noise", "white Gaussian noise, independent per channel, std 0 -> 40 grey levels",
                     uses_rng=True)
def white_noise_kind(img, amount, rng):
    return white_noise(img, ramp(amount, 0.0, 40.0), rng)


@register_distortion("color_noise", "white Gaussian noise in the chroma (Cr, Cb) components only, std 0 -> 40",
                     uses_rng=True)
def color_noise(img, amount, rng):
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    ycc[..., 1:] += np.float32(ramp(amount, 0.0, 40.0)) * rng.standard_normal(ycc[..., 1:].shape, dtype=np.float32)
    return cv2.cvtColor(_to_u8(ycc), cv2.COLOR_YCrCb2RGB)


@register_distortion("impulse_noise", "salt-and-pepper noise, 0 -> 12 % of the values set to 0 or 255", uses_rng=True)
def impulse_noise(img, amount, rng):
    u = rng.random(img.shape, dtype=np.float32)
    salt = rng.random(img.shape, dtype=np.float32) < 0.5
    hit = u < np.float32(ramp(amount, 0.0, 0.12))  # one uniform field: a larger amount hits a superset
    out = img.copy()
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


@register_distortion("multiplicative_noise", "speckle: each value times (1 + n), n Gaussian with std 0 -> 0.5",
                     uses_rng=True)
def multiplicative_noise(img, amount, rng):
    n = rng.standard_normal(img.shape, dtype=np.float32)
    return _to_u8(img.astype(np.float32) * (1.0 + np.float32(ramp(amount, 0.0, 0.5)) * n))


@register_distortion("denoise", "white noise (std 0 -> 40) then non-local-means denoising: smeared texture",
                     uses_rng=True)
def denoise(img, amount, rng):
    std = ramp(amount, 0.0, 40.0)
    noisy = white_noise(img, std, rng)
    # A denoiser tuned to the noise, as a camera or a codec pre-filter would be: it removes the grain and
    # with it fine detail, leaving the waxy look KADID's "denoise" type shows.
    h = float(max(1.0, 0.8 * std))
    return cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(noisy), None, h, h, 5, 11)
