"""Brightness change (KADID group 5): brighten, darken and a mean shift (sRGB edits, no exposure model;
the sample ladder's `overexposure` / `underexposure` are the linear-light versions)."""

from __future__ import annotations

import numpy as np

from edgeiqa.data.degradations.common import _to_u8, from_lab, ramp, to_lab
from edgeiqa.data.distortions import register_distortion


def _lightness_gamma(img: np.ndarray, gamma: float) -> np.ndarray:
    lab = to_lab(img)
    lab[..., 0] = 100.0 * (np.clip(lab[..., 0], 0.0, 100.0) / 100.0) ** np.float32(gamma)
    return from_lab(lab)


@register_distortion("brighten", "lightness curve L' = L^(1/g), g 1 -> 3: midtones lifted, contrast flattened")
def brighten(img, amount, rng):
    return _lightness_gamma(img, 1.0 / ramp(amount, 1.0, 3.0))


@register_distortion("darken", "lightness curve L' = L^g, g 1 -> 3: midtones pushed down, shadows crushed")
def darken(img, amount, rng):
    return _lightness_gamma(img, ramp(amount, 1.0, 3.0))


@register_distortion("mean_shift", "all values shifted by 0 -> 96 grey levels towards the side with more room, clipped")
def mean_shift(img, amount, rng):
    # Towards the far side (up for a dark photo, down for a bright one) so the shift shows before it clips.
    sign = 1.0 if float(img.mean()) < 127.5 else -1.0
    return _to_u8(img.astype(np.float32) + np.float32(sign * ramp(amount, 0.0, 96.0)))
