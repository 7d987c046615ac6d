"""Views: the one input pipeline shared by training, calibration, export calibration and the runtime.

A view turns a decoded RGB uint8 image (H, W, 3) into a fixed-size uint8 array:
- `resize`    the whole image resized (aspect not kept) to the view size: global composition, exposure.
- `fragments` a grid of native-resolution mini-patches stitched together (FAST-VQA / UIQA): blur, noise and
              compression survive because nothing is resampled. Offsets are random in training and seeded
              at evaluation so the same image always gives the same score.
- `center`    the centre crop at native resolution (upscaled only when the image is smaller).
- `face`      a crop around the largest face found by OpenCV's Haar cascade; when none is found the
              centre crop is used and the record says `face_found: False`, never silently.
- `full`      native resolution, only scaled down when a side exceeds the view size (the size is a cap).

Normalisation to float happens in `to_batch` (ImageNet mean/std), so exported models and the runtime use
the same numbers; they travel in every artefact's metadata as NORMALIZATION.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from edgeiqa.errors import EdgeIQAError, did_you_mean

VIEW_KINDS = ("resize", "fragments", "center", "face", "full")
NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
EVAL_SEED = 0  # fragment offsets at evaluation: fixed so scores are reproducible


@dataclass(frozen=True)
class ViewSpec:
    kind: str
    size: tuple[int, int]  # (height, width) of the view; for `full` the largest allowed
    grid: int = 7  # fragments: grid x grid patches

    def __post_init__(self):
        # Every view of a profile, card or artefact passes here: a bad one fails before any work.
        if self.kind not in VIEW_KINDS:
            raise EdgeIQAError(f"unknown view {self.kind!r} (known: {', '.join(VIEW_KINDS)}){did_you_mean(self.kind, VIEW_KINDS)}")
        size = tuple(self.size) if isinstance(self.size, (list, tuple)) else (self.size,)
        if len(size) != 2 or not all(_is_int(v) for v in size):
            raise EdgeIQAError(f"view {self.kind}: size must be [height, width] (two integers), got {list(size)}")
        object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        if not _is_int(self.grid) or self.grid < 1:
            raise EdgeIQAError(f"view {self.kind}: grid must be an integer >= 1, got {self.grid!r}")
        h, w = self.size
        if h < 16 or w < 16:
            raise EdgeIQAError(f"view {self.kind}: size {h}x{w} is too small (min 16)")
        if self.kind == "fragments" and (h % self.grid or w % self.grid):
            raise EdgeIQAError(f"fragments view: size {h}x{w} must be divisible by the grid ({self.grid})")

    @property
    def name(self) -> str:
        return self.kind

    def to_dict(self) -> dict:
        return {"kind": self.kind, "size": list(self.size), "grid": self.grid}

    @classmethod
    def from_dict(cls, d: dict) -> "ViewSpec":
        return cls(d["kind"], tuple(d["size"]), int(d.get("grid", 7)))


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _resize(img: np.ndarray | Image.Image, h: int, w: int) -> np.ndarray:
    if isinstance(img, Image.Image):
        return np.asarray(img.resize((w, h), Image.BICUBIC)) if img.size != (w, h) else np.asarray(img)
    if img.shape[0] == h and img.shape[1] == w:
        return img
    # BICUBIC (antialiased in Pillow) for both directions: the same call in training and at runtime.
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))


def _ensure_min(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Upscale (keeping aspect) only when the image is smaller than h x w."""
    ih, iw = img.shape[:2]
    scale = max(h / ih, w / iw)
    if scale <= 1.0:
        return img
    return _resize(img, max(h, int(np.ceil(ih * scale))), max(w, int(np.ceil(iw * scale))))


def _center_crop(img: np.ndarray, h: int, w: int) -> np.ndarray:
    img = _ensure_min(img, h, w)
    top = (img.shape[0] - h) // 2
    left = (img.shape[1] - w) // 2
    return img[top : top + h, left : left + w]


def _fragments(img: np.ndarray | Image.Image, h: int, w: int, grid: int, rng: np.random.Generator) -> np.ndarray:
    ph, pw = h // grid, w // grid
    if isinstance(img, Image.Image):
        if img.width >= w and img.height >= h:  # crop the patches from the decoded image: no whole-image copy
            iw, ih = img.size
            return _assemble(lambda y0, x0: np.asarray(img.crop((x0, y0, x0 + pw, y0 + ph))), ih, iw, h, w, grid, rng)
        img = np.asarray(img)
    img = _ensure_min(img, h, w)
    ih, iw = img.shape[:2]
    return _assemble(lambda y0, x0: img[y0 : y0 + ph, x0 : x0 + pw], ih, iw, h, w, grid, rng)


def _assemble(patch, ih: int, iw: int, h: int, w: int, grid: int, rng: np.random.Generator) -> np.ndarray:
    ph, pw = h // grid, w // grid
    out = np.empty((h, w, 3), dtype=np.uint8)
    ys = np.linspace(0, ih, grid + 1).astype(int)
    xs = np.linspace(0, iw, grid + 1).astype(int)
    for gy in range(grid):
        for gx in range(grid):
            # A random patch inside each grid cell (cells are at least one patch large after _ensure_min).
            y0 = ys[gy] + int(rng.integers(0, max(1, ys[gy + 1] - ys[gy] - ph + 1)))
            x0 = xs[gx] + int(rng.integers(0, max(1, xs[gx + 1] - xs[gx] - pw + 1)))
            y0, x0 = min(y0, ih - ph), min(x0, iw - pw)
            out[gy * ph : (gy + 1) * ph, gx * pw : (gx + 1) * pw] = patch(y0, x0)
    return out


_DETECTORS = threading.local()


def _face_detector():
    """One cascade per thread: cv2.CascadeClassifier.detectMultiScale is not thread-safe (concurrent calls
    on one instance fail with 'scaleIdx' assertions or return wrong boxes), and the runtime decodes and
    builds views in worker threads."""
    det = getattr(_DETECTORS, "cascade", None)
    if det is None:
        import cv2

        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        det = cv2.CascadeClassifier(path)
        if det.empty():
            raise EdgeIQAError(f"OpenCV Haar cascade not found at {path}")
        _DETECTORS.cascade = det
    return det


def detect_face(img: np.ndarray) -> tuple[int, int, int, int] | None:
    """Largest frontal face as (x, y, w, h) in image coordinates, or None."""
    import cv2

    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    # Detect on a copy at most 640 px wide: fast on 4K inputs and the cascade's scale range suits it.
    scale = min(1.0, 640.0 / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    faces = _face_detector().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return tuple(int(round(v / scale)) for v in (x, y, w, h))


def _face_crop(img: np.ndarray, h: int, w: int) -> tuple[np.ndarray, dict]:
    box = detect_face(img)
    if box is None:
        return _center_crop(img, h, w), {"face_found": False}
    x, y, fw, fh = box
    # Keep hair and chin: a square 1.8x the detected box, clipped to the image.
    side = int(max(fw, fh) * 1.8)
    cx, cy = x + fw // 2, y + fh // 2
    ih, iw = img.shape[:2]
    x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
    x1, y1 = min(iw, x0 + side), min(ih, y0 + side)
    return _resize(img[y0:y1, x0:x1], h, w), {"face_found": True, "face_box": [x, y, fw, fh]}


def _full(img: np.ndarray, h: int, w: int) -> np.ndarray:
    ih, iw = img.shape[:2]
    scale = min(1.0, h / ih, w / iw)
    if scale >= 1.0:
        return img
    return _resize(img, max(16, int(round(ih * scale))), max(16, int(round(iw * scale))))


def make_view(img: np.ndarray, spec: ViewSpec, rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict]:
    """One view of `img` (H, W, 3 uint8). `rng=None` means evaluation: the fixed EVAL_SEED.

    `img` may also be an RGB PIL image (the runtime's fast path): resize and fragments views read it
    directly (same pixels, no whole-image copy into numpy), the other views convert it first."""
    if isinstance(img, Image.Image):
        if img.mode != "RGB":
            raise EdgeIQAError(f"views expect an RGB image, got a PIL image in mode {img.mode}")
        if spec.kind not in ("resize", "fragments"):
            img = np.asarray(img)
    elif img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise EdgeIQAError(f"views expect an RGB uint8 array (H, W, 3), got {img.dtype} {img.shape}")
    h, w = spec.size
    if spec.kind == "resize":
        return _resize(img, h, w), {}
    if spec.kind == "fragments":
        return _fragments(img, h, w, spec.grid, rng if rng is not None else np.random.default_rng(EVAL_SEED)), {}
    if spec.kind == "center":
        return _center_crop(img, h, w), {}
    if spec.kind == "face":
        return _face_crop(img, h, w)
    return _full(img, h, w), {}


def make_views(img: np.ndarray, specs: list[ViewSpec], rng: np.random.Generator | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """All views of one image, keyed by view kind, plus the merged info (e.g. face_found)."""
    views, info = {}, {}
    for spec in specs:
        views[spec.name], extra = make_view(img, spec, rng)
        info.update(extra)
    return views, info


def to_batch(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack uint8 (H, W, 3) views into a normalised float32 (N, 3, H, W) batch."""
    x = np.stack(arrays).astype(np.float32) / 255.0
    mean = np.asarray(NORMALIZATION["mean"], dtype=np.float32)
    std = np.asarray(NORMALIZATION["std"], dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
