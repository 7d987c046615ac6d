"""What every family file of the degradation library shares: amount -> parameter ramps and colour spaces.

The pixel helpers the sample ladder already has (Gaussian blur, JPEG round trip, rounding to uint8,
sRGB <-> linear light) are imported from `edgeiqa.data.distortions`, not copied.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeiqa.data.distortions import _TO_LINEAR, _from_linear, _gaussian_blur, _jpeg, _to_u8  # noqa: F401


def ramp(amount: float, lo: float, hi: float, power: float = 1.0) -> float:
    """`lo` as amount -> 0, `hi` at amount 1; power > 1 spends more of the range on the mild end."""
    return float(lo + (hi - lo) * float(amount) ** power)


def geom(amount: float, lo: float, hi: float) -> float:
    """Geometric ramp (lo, hi > 0): equal amount steps are equal ratios, e.g. for codec rates and levels."""
    return float(lo * (hi / lo) ** float(amount))


def jpeg_quality(amount: float, best: int = 95, worst: int = 10) -> int:
    """JPEG quality for the codec stage of the camera chains: `best` as amount -> 0, `worst` at 1."""
    return max(2, int(round(ramp(amount, best, worst))))


def to_lab(img: np.ndarray) -> np.ndarray:
    """float32 CIE Lab (L 0..100, a/b about -128..127) of an RGB uint8 image."""
    return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def from_lab(lab: np.ndarray) -> np.ndarray:
    """RGB uint8 from float32 Lab; colours outside sRGB are clipped."""
    return _to_u8(255.0 * cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB))


def filter_rgb(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel with a normalised float kernel (mirror borders), rounded back to uint8."""
    out = cv2.filter2D(img.astype(np.float32), -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return _to_u8(out)


def white_noise(img: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Independent Gaussian noise per pixel and channel (KADID's white noise), std in grey levels."""
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    return _to_u8(img.astype(np.float32) + np.float32(std) * noise)
