"""Compression (KADID group 3): JPEG 2000 here; JPEG is the sample ladder's `jpeg` kind.

JPEG 2000 goes through Pillow's OpenJPEG plugin; a Pillow built without it falls back to OpenCV's
encoder, and with neither the kind raises a clear error instead of passing the image through.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from PIL import Image, features

from edgeiqa.data.degradations.common import geom
from edgeiqa.data.distortions import register_distortion
from edgeiqa.errors import EdgeIQAError


def _levels(h: int, w: int) -> int:
    # OpenJPEG refuses more wavelet levels than the smaller side allows (6 levels need >= 32 px).
    return max(1, min(6, int(math.log2(max(1, min(h, w))))))


def _jp2_pillow(img: np.ndarray, ratio: float) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG2000", quality_mode="rates", quality_layers=[float(ratio)],
                              irreversible=True, num_resolutions=_levels(*img.shape[:2]))
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


def _jp2_opencv(img: np.ndarray, ratio: float) -> np.ndarray:
    # OpenCV takes a rate in thousandths of the uncompressed size (1000 = lossless).
    x1000 = max(1, int(round(1000.0 / ratio)))
    h, w = img.shape[:2]
    # OpenCV always asks for 6 wavelet levels, which need 32 px: mirror-pad small images, crop after.
    border = cv2.BORDER_REFLECT_101 if min(h, w) > 1 else cv2.BORDER_REPLICATE
    padded = cv2.copyMakeBorder(img, 0, max(0, 32 - h), 0, max(0, 32 - w), border)
    bgr = cv2.cvtColor(padded, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jp2", bgr, [cv2.IMWRITE_JPEG2000_COMPRESSION_X1000, x1000])
    if not ok:
        raise EdgeIQAError("jpeg2000: OpenCV could not encode JPEG 2000")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)[:h, :w].copy()


def jpeg2000(img: np.ndarray, ratio: float) -> np.ndarray:
    """Round trip through a lossy (9/7 wavelet) JPEG 2000 codec at a compression ratio."""
    if features.check("jpg_2000"):
        return _jp2_pillow(img, ratio)
    if cv2.haveImageWriter(".jp2"):
        return _jp2_opencv(img, ratio)
    raise EdgeIQAError("jpeg2000: neither Pillow (OpenJPEG) nor OpenCV can write JPEG 2000 here")


@register_distortion("jpeg2000", "JPEG 2000 compression, ratio 8:1 -> 400:1 (3 -> 0.06 bits per pixel)")
def jpeg2000_kind(img, amount, rng):
    return jpeg2000(img, geom(amount, 8.0, 400.0))
