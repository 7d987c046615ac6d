"""Reading images: any file a user points at becomes an RGB uint8 array or an ImageLoadError naming it.

Every stage (sample building, training, calibration, the runtime) reads pixels through `load_image`,
so EXIF orientation, mode conversion and the size guards are the same everywhere.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgeiqa.errors import EdgeIQAError, ImageLoadError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# A 4K photo is 8.3 MP and a 108 MP phone sensor is the largest thing a user plausibly scores.
# Anything larger is refused *before* decoding so a decompression bomb cannot exhaust memory.
MAX_PIXELS = 120_000_000
# Below this a quality score means nothing (a 1x1 image has no blur, noise or exposure to judge).
MIN_SIDE = 16


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale integer/float arrays of any depth to uint8 (16-bit PNG/TIFF, 32-bit 'I', float 'F')."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        hi = float(np.nanmax(arr)) if arr.size else 1.0
        scale = 255.0 if hi <= 1.0 else 255.0 / max(hi, 1e-12)
        return np.clip(np.nan_to_num(arr) * scale, 0, 255).round().astype(np.uint8)
    hi = int(arr.max()) if arr.size else 0
    if hi <= 255:
        return np.clip(arr, 0, 255).astype(np.uint8)
    # 16-bit data (the common case) maps 65535 -> 255; wider integers are scaled by their maximum.
    top = 65535 if hi <= 65535 else hi
    return (arr.astype(np.float64) * (255.0 / top)).round().astype(np.uint8)


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode (L, LA, P, RGBA, CMYK, I;16, I, F, YCbCr, ...) to HxWx3 uint8."""
    mode = img.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Composite transparent pixels on white: what a viewer shows, and deterministic.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # The mode itself says 16 bits: always map 0..65535 -> 0..255, even for a dark image whose
        # values all happen to be <= 255 (guessing from the maximum would brighten it 257-fold).
        gray16 = np.asarray(img).astype(np.float64)
        gray = np.clip(np.round(gray16 / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("I", "F"):
        gray = _to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "RGB":
        return np.asarray(img)
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype != np.uint8:  # e.g. 16-bit RGB
        return _to_uint8(arr)
    return np.asarray(img.convert("RGB"))


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
               draft: int | None = None, keep_pil: bool = False) -> np.ndarray:
    """Read `path` as an RGB uint8 array (H, W, 3) with EXIF orientation applied.

    draft: when set, a JPEG whose sides are both >= 2 x `draft` is decoded at the smallest DCT scale (1/2,
    1/4, 1/8) that keeps both sides >= `draft` px (Pillow's `Image.draft`): up to 64x fewer pixels, for
    callers that only resize the image down (the runtime passes twice its resize views' size). Other
    formats and smaller JPEGs decode in full.

    keep_pil: an RGB image is returned as the decoded PIL image itself, not copied into numpy (the copy of
    a 12 MP photo costs about as much as its decode): for callers that only reduce and crop it (the
    runtime's fast path, `edgeiqa.data.views.make_view` accepts it). Other modes are converted as usual.

    Raises ImageLoadError (naming the file and the reason) for missing, empty, truncated, corrupt,
    non-image, too small or too large files.
    """
    p = Path(path)
    if not p.exists():
        raise ImageLoadError(p, "file not found")
    if p.is_dir():
        raise ImageLoadError(p, "is a folder, not an image")
    if p.stat().st_size == 0:
        raise ImageLoadError(p, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageLoadError(
                        p, f"too large ({w}x{h} = {w * h / 1e6:.0f} MP > {max_pixels / 1e6:.0f} MP limit); refused before decoding"
                    )
                if draft and img.format == "JPEG" and min(w, h) >= 2 * draft:
                    img.draft(None, (draft, draft))  # picks a scale whose result is still >= draft px per side
                img.load()
                img = _oriented(img)
                rgb = img if (keep_pil and img.mode == "RGB") else pil_to_rgb(img)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(p, "not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fires in Image.open() for sizes above 2x its limit; same wording as ours.
        raise ImageLoadError(p, f"too large; refused before decoding as a possible decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise ImageLoadError(p, "truncated image data (file is cut short)") from None
        raise ImageLoadError(p, f"corrupt or unreadable image: {msg}") from None
    except Exception as exc:  # noqa: BLE001 - malformed files trip odd errors deep in decoders (struct.error, ...)
        raise ImageLoadError(p, f"corrupt or unreadable image: {type(exc).__name__}: {exc}") from None
    w, h = (rgb.size if isinstance(rgb, Image.Image) else rgb.shape[1::-1])
    if min(w, h) < min_side:
        raise ImageLoadError(p, f"too small ({w}x{h}); at least {min_side} px per side is needed")
    return rgb if isinstance(rgb, Image.Image) else np.ascontiguousarray(rgb)


def _oriented(img: Image.Image) -> Image.Image:
    """EXIF orientation applied (`ImageOps.exif_transpose`); the image itself when there is nothing to
    turn, instead of the whole-image copy exif_transpose returns then."""
    if img.getexif().get(0x0112, 1) not in (2, 3, 4, 5, 6, 7, 8):  # Orientation; exif_transpose's table
        return img
    return ImageOps.exif_transpose(img)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def iter_image_files(paths: Iterable[str | os.PathLike], recursive: bool = True) -> Iterator[Path]:
    """Expand files and folders into image paths, sorted so every run sees the same order.

    Files named explicitly are yielded whatever their extension (so a bad one gets its error row);
    folders contribute files with an image extension.
    """
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            yield from sorted(f for f in p.glob(pattern) if f.is_file() and is_image_file(f))
        elif p.exists():
            yield p
        else:
            raise EdgeIQAError(f"{p}: no such file or folder")
