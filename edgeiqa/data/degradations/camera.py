"""Camera-pipeline chains: several artefacts in the order a phone makes them (not a KADID group).
The sample ladder's `mixed` (blur + noise + JPEG) belongs here too."""

from __future__ import annotations

import cv2
import numpy as np

from edgeiqa.data.degradations.blur import disk_kernel
from edgeiqa.data.degradations.common import (
    _TO_LINEAR, _from_linear, _gaussian_blur, _jpeg, filter_rgb, jpeg_quality, ramp, white_noise,
)
from edgeiqa.data.distortions import register_distortion

FULL_WELL = 4000.0  # photons a pixel collects at white in good light
READ_NOISE = 3.0  # electrons, per pixel


def shot_noise(img: np.ndarray, photons_at_white: float, rng: np.random.Generator, gain: float = 1.0) -> np.ndarray:
    """Photon (Poisson, as Gaussian) plus read noise in linear light, then a digital gain; RGB uint8 out."""
    electrons = _TO_LINEAR[img] * np.float32(photons_at_white)
    z = rng.standard_normal(img.shape, dtype=np.float32)
    electrons = electrons + np.sqrt(electrons + READ_NOISE**2) * z
    return _from_linear(electrons * np.float32(gain / photons_at_white))


@register_distortion("low_light", "low light: 0 -> 5 EV less light, gain recovers half, shot noise, then NLM denoise",
                     uses_rng=True)
def low_light(img, amount, rng):
    ev = ramp(amount, 0.0, 5.0)
    photons = FULL_WELL * 2.0**-ev
    noisy = shot_noise(img, photons, rng, gain=2.0 ** (-ev / 2))  # the photo stays darker by half the EV lost
    h = float(max(1.0, 14.0 * amount))  # the phone's denoiser works harder the darker the scene
    return cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(noisy), None, h, h, 5, 11)


@register_distortion("blur_jpeg", "Gaussian blur (sigma 0 -> 3 px) then JPEG (quality 95 -> 10)")
def blur_jpeg(img, amount, rng):
    return _jpeg(_gaussian_blur(img, max(ramp(amount, 0.0, 3.0), 1e-3)), jpeg_quality(amount))


@register_distortion("noise_jpeg", "white noise (std 0 -> 25) then JPEG (quality 95 -> 10)", uses_rng=True)
def noise_jpeg(img, amount, rng):
    return _jpeg(white_noise(img, ramp(amount, 0.0, 25.0), rng), jpeg_quality(amount))


@register_distortion("camera_chain", "lens blur (radius 0 -> 3 px), shot noise (4000 -> 150 photons at white), "
                     "JPEG (quality 95 -> 10)", uses_rng=True)
def camera_chain(img, amount, rng):
    out = filter_rgb(img, disk_kernel(ramp(amount, 0.0, 3.0)))
    out = shot_noise(out, FULL_WELL * (150.0 / FULL_WELL) ** amount, rng)
    return _jpeg(out, jpeg_quality(amount))
