"""Distortion ladders: the table of degradations the sample set and label-free ranking pre-training use.

Every kind is a continuous function of an `amount` in [0, 1] (0 = the image unchanged, 1 = the worst
level) and takes an RGB uint8 image plus a numpy Generator (only the noise-based kinds draw from it), so
a result is fully determined by (image, kind, amount, rng seed). The sample set's six severities are the
points amount = severity / 6 on those curves:

    apply(img, "blur", 3, rng)  ==  degrade(img, "blur", 0.5, rng)

Parameters grow geometrically with the amount, so neighbouring severities are about equally far apart
perceptually: each step is visible side by side, yet severity 1 is not already ruined. Within one kind a
higher amount is always worse (PSNR to the original falls strictly; the sample tests check it), which is
what makes "higher amount = lower quality" a free ranking label (`random_degradation`).

Kinds and what they imitate:
  blur           out-of-focus / motion-free lens softness (Gaussian, sigma 0.8 -> 6 px)
  noise          sensor noise, additive Gaussian (std 4.7 -> 45 grey levels), partly shared by the channels
  jpeg           compression (quality 60 -> 4, 4:2:0 chroma)
  overexposure   +0.5 -> +3 EV in linear light, highlights clip to white
  underexposure  -0.67 -> -4 EV in linear light (a gamma-correct darkening), shadows crush to black
  pixelate       down-then-up sampling by 1.5x -> 12x (area down, nearest up)
  mixed          a camera chain at once: blur, then noise, then JPEG, all rising together. Blur lowers
                 a sharpness heuristic and noise raises it, so no single hand-made cue ranks this ladder
  contrast       haze / flare: pixels pulled towards the mean (78 % -> 12 % contrast kept)
  color          white-balance error: a loss of saturation plus a warm (tungsten-like) cast

Only numpy, Pillow and OpenCV are used.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, NamedTuple

import cv2
import numpy as np
from PIL import Image

from edgeiqa.errors import EdgeIQAError
from edgeiqa.registry import Registry

SEVERITIES = 6  # levels 1..6 of the sample set; 0 is the original


@dataclass(frozen=True)
class Distortion:
    """One kind of degradation. `fn(img, amount, rng)` gets amount in (0, 1] and returns uint8 RGB."""

    name: str
    fn: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    description: str
    uses_rng: bool = False

    def degrade(self, img: np.ndarray, amount: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Continuous level: amount 0 returns an unchanged copy, 1 the worst level."""
        _check_image(img)
        amount = float(amount)
        if not (0.0 <= amount <= 1.0) or not np.isfinite(amount):
            raise EdgeIQAError(f"distortion {self.name}: amount must be in [0, 1], got {amount}")
        if amount == 0.0:
            return img.copy()
        if rng is None:
            rng = np.random.default_rng(0)
        out = self.fn(img, amount, rng)
        assert out.dtype == np.uint8 and out.shape == img.shape, (self.name, out.dtype, out.shape)
        return out

    def apply(self, img: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Discrete level of the sample ladder: severity 1..6 (0 = unchanged copy)."""
        return self.degrade(img, severity_to_amount(severity), rng)


# name -> Distortion; the registered function `fn(img, amount, rng)` computes the degraded image.
DEGRADATIONS: Registry[Distortion] = Registry("distortion", Distortion)
DISTORTIONS: dict[str, Distortion] = DEGRADATIONS.entries  # the table itself (tests swap an entry in it)


def register_distortion(name: str, description: str, uses_rng: bool = False):
    """Decorator: add `fn(img, amount, rng) -> uint8 RGB` to the table under `name`."""
    return DEGRADATIONS.register(name, description=description, uses_rng=uses_rng)


def severity_to_amount(severity: int) -> float:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= SEVERITIES:
        raise EdgeIQAError(f"severity must be an integer 0..{SEVERITIES}, got {severity!r}")
    return int(severity) / SEVERITIES


def get_distortion(kind: str) -> Distortion:
    return DEGRADATIONS.get(kind)


def kinds() -> list[str]:
    return list(DISTORTIONS)


def apply(img: np.ndarray, kind: str, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """`img` degraded by `kind` at sample-ladder severity 1..6 (0 = unchanged)."""
    return get_distortion(kind).apply(img, severity, rng)


def degrade(img: np.ndarray, kind: str, amount: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """`img` degraded by `kind` at a continuous amount in [0, 1] (higher = worse)."""
    return get_distortion(kind).degrade(img, amount, rng)


class Degraded(NamedTuple):
    image: np.ndarray
    kind: str
    amount: float


def random_degradation(
    img: np.ndarray,
    rng: np.random.Generator,
    kind: str | None = None,
    amount: float | None = None,
    kinds: list[str] | tuple[str, ...] | None = None,
    min_amount: float = 0.05,
) -> Degraded:
    """A random degradation for label-free ranking: returns (image, kind, amount).

    Kind is drawn uniformly from `kinds` (default: all) unless given; amount uniformly from
    [min_amount, 1] unless given. Within one kind a larger amount is a worse image, so two draws of the
    same kind on the same photo form a ranked pair without any human label.
    """
    if kind is None:
        pool = list(kinds) if kinds is not None else list(DISTORTIONS)
        kind = pool[int(rng.integers(len(pool)))]
    if amount is None:
        amount = float(rng.uniform(min_amount, 1.0))
    return Degraded(degrade(img, kind, amount, rng), kind, float(amount))


# --------------------------------------------------------------------------------------------- helpers


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise EdgeIQAError(f"distortions expect an RGB uint8 array (H, W, 3), got {got}")


def _geom(amount: float, lo: float, hi: float) -> float:
    """Geometric interpolation with lo at amount = 1/6 (severity 1) and hi at amount = 1 (severity 6)."""
    t = (amount - 1 / SEVERITIES) / (1 - 1 / SEVERITIES)
    return float(lo * (hi / lo) ** t)


def _lin(amount: float, lo: float, hi: float) -> float:
    """Linear interpolation with lo at severity 1 and hi at severity 6."""
    t = (amount - 1 / SEVERITIES) / (1 - 1 / SEVERITIES)
    return float(lo + (hi - lo) * t)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# sRGB <-> linear via a 2.2 power law: close enough for exposure edits and exactly invertible.
_GAMMA = 2.2
_TO_LINEAR = ((np.arange(256, dtype=np.float64) / 255.0) ** _GAMMA).astype(np.float32)


def _from_linear(lin: np.ndarray) -> np.ndarray:
    return _to_u8(255.0 * np.clip(lin, 0.0, 1.0) ** (1.0 / _GAMMA))


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)


def _add_noise(img: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    h, w, _ = img.shape
    # 60 % of the variance shared by the channels (luma grain), 40 % per channel (chroma speckle).
    shared = rng.standard_normal((h, w, 1), dtype=np.float32)
    own = rng.standard_normal((h, w, 3), dtype=np.float32)
    noise = std * (np.sqrt(0.6, dtype=np.float32) * shared + np.sqrt(0.4, dtype=np.float32) * own)
    return _to_u8(img.astype(np.float32) + noise)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality), subsampling=2, optimize=False)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


# ------------------------------------------------------------------------------------------------ kinds


@register_distortion("blur", "Gaussian blur, sigma 0.8 -> 6 px")
def _blur(img, amount, rng):
    return _gaussian_blur(img, _geom(amount, 0.8, 6.0))


@register_distortion("noise", "additive Gaussian sensor noise, std 4.7 -> 45 grey levels", uses_rng=True)
def _noise(img, amount, rng):
    return _add_noise(img, _geom(amount, 4.7, 45.0), rng)


@register_distortion("jpeg", "JPEG compression, quality 60 -> 4")
def _jpeg_kind(img, amount, rng):
    return _jpeg(img, max(2, int(round(_geom(amount, 60.0, 4.0)))))


@register_distortion("overexposure", "+0.5 -> +3 EV in linear light, highlights clipped")
def _over(img, amount, rng):
    ev = 3.0 * amount
    return _from_linear(_TO_LINEAR[img] * np.float32(2.0**ev))


@register_distortion("underexposure", "-0.67 -> -4 EV in linear light, shadows crushed")
def _under(img, amount, rng):
    ev = 4.0 * amount
    lin = _TO_LINEAR[img] * np.float32(2.0**-ev)
    # A little black-level crush as in a real dark capture: the darkest tones go to 0.
    floor = np.float32(0.002 * amount)
    return _from_linear(np.maximum(lin - floor, 0.0) / (1.0 - floor))


@register_distortion("pixelate", "down/up sampling by 1.5x -> 12x")
def _pixelate(img, amount, rng):
    factor = _geom(amount, 1.5, 12.0)
    h, w = img.shape[:2]
    sh, sw = max(1, int(round(h / factor))), max(1, int(round(w / factor)))
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


@register_distortion("mixed", "camera chain: blur + noise + JPEG rising together", uses_rng=True)
def _mixed(img, amount, rng):
    out = _gaussian_blur(img, _geom(amount, 0.6, 2.6))
    out = _add_noise(out, _geom(amount, 3.0, 24.0), rng)
    return _jpeg(out, max(4, int(round(_geom(amount, 75.0, 12.0)))))


@register_distortion("contrast", "contrast loss towards the mean (haze), 78 % -> 12 % kept")
def _contrast(img, amount, rng):
    # Linear in the contrast kept: a geometric ladder made the last steps nearly invisible.
    keep = np.float32(_lin(amount, 0.78, 0.12))
    x = img.astype(np.float32)
    mean = x.reshape(-1, 3).mean(axis=0)
    return _to_u8(mean + (x - mean) * keep)


@register_distortion("color", "white-balance error: saturation loss, then a warm cast")
def _color(img, amount, rng):
    lin = _TO_LINEAR[img]
    # Desaturate first, then cast: the other order lets the desaturation undo part of the cast, and
    # the ladder stops being monotone on greyish photos.
    luma = lin @ np.asarray([0.2126, 0.7152, 0.0722], dtype=np.float32)
    sat = np.float32(1.0 - 0.6 * amount)
    lin = luma[..., None] + (lin - luma[..., None]) * sat
    strength = 1.2 * amount  # red up, blue down in linear light (a tungsten-balanced scene shot as daylight)
    gains = np.asarray([1.0 + 0.6 * strength, 1.0 + 0.1 * strength, 1.0 / (1.0 + 1.5 * strength)], dtype=np.float32)
    return _from_linear(lin * gains)
