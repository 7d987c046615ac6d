"""load_image on every kind of file a user can point at: each failure is an ImageLoadError naming the file."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from edgeiqa.data.images import MAX_PIXELS, iter_image_files, load_image
from edgeiqa.errors import EdgeIQAError, ImageLoadError


def _noise(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _fails(path, *words):
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    err = info.value
    assert err.path == str(path)
    assert str(path) in str(err)
    msg = str(err).lower()
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"
    return err


# --------------------------------------------------------------------------- failures


def test_missing_file(tmp_path):
    _fails(tmp_path / "nope.jpg", "not found")


def test_folder_is_not_an_image(tmp_path):
    d = tmp_path / "dir.jpg"
    d.mkdir()
    _fails(d, "folder")


def test_zero_byte(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    _fails(p, "empty")


def test_corrupt_bytes(tmp_path):
    p = tmp_path / "random.jpg"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _fails(p)


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a picture\n" * 20)
    _fails(p, "not an image")


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_noise(128, 128)).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    _fails(p, "truncated")


def test_corrupt_jpeg_body(tmp_path):
    """A real JPEG whose headers are intact but whose entropy-coded scan is corrupt: the header parses, the JPEG
    decoder fails, and the error carries the decoder's reason (never garbage pixels returned silently)."""
    buf = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sos = data.index(b"\xff\xda")  # start of scan; the entropy-coded body follows its header
    body = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    middle = (body + len(data)) // 2
    data[middle:middle + 2] = b"\xff\xd8"  # a start-of-image marker inside the scan: libjpeg stops there
    p = tmp_path / "garbled.jpg"
    p.write_bytes(bytes(data))
    with Image.open(p) as img:  # the header is fine: the failure below is the decoder's
        assert img.format == "JPEG" and img.size == (64, 64)
    _fails(p, "corrupt", "broken data stream")


def test_one_pixel_too_small(tmp_path):
    p = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(p)
    _fails(p, "too small")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    # 12000 x 12000 1-bit image: 144 MP (> the 120 MP limit) yet tiny on disk.
    p = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(p, optimize=False)
    assert p.stat().st_size < 2_000_000
    assert 12000 * 12000 > MAX_PIXELS
    t0 = time.perf_counter()
    _fails(p, "too large")
    assert time.perf_counter() - t0 < 1.0  # header only: decoding 144 MP would take far longer


def test_huge_header_refused(tmp_path):
    """A PNG whose header claims 20000 x 20000 (Pillow's own bomb guard fires first): still 'too large'."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    p = tmp_path / "claims_huge.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))
    _fails(p, "too large")


def test_max_pixels_argument(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(_noise(40, 40)).save(p)
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(p, max_pixels=1000)


# --------------------------------------------------------------------------- conversions


def _check_rgb(arr, h, w):
    assert arr.dtype == np.uint8
    assert arr.shape == (h, w, 3)
    assert arr.flags["C_CONTIGUOUS"]


def test_rgb_jpeg_and_png_roundtrip(tmp_path):
    img = _noise(40, 56)
    p = tmp_path / "a.png"
    Image.fromarray(img).save(p)
    out = load_image(p)
    _check_rgb(out, 40, 56)
    assert np.array_equal(out, img)


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(p, "JPEG", quality=95)  # red in CMYK
    assert Image.open(p).mode == "CMYK"
    out = load_image(p)
    _check_rgb(out, 30, 40)
    r, g, b = out[15, 20].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16bit_png(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(ramp).save(p)
    assert Image.open(p).mode.startswith("I;16")
    out = load_image(p)
    _check_rgb(out, 64, 64)
    assert out.max() == 255 and out.min() == 0
    assert np.array_equal(out[..., 0], out[..., 1])
    assert np.all(np.diff(out[..., 0].ravel().astype(int)) >= 0)  # monotone ramp


def test_dark_16bit_png_stays_dark(tmp_path):
    """All values <= 255 in a 16-bit file are still 16-bit values (near black), not 8-bit ones."""
    p = tmp_path / "dark16.png"
    Image.fromarray(np.full((32, 32), 200, np.uint16)).save(p)
    assert load_image(p).max() <= 1


def test_rgba_composited_on_white(tmp_path):
    arr = np.zeros((32, 32, 4), np.uint8)
    arr[..., 0] = 255  # red
    arr[:, :16, 3] = 0  # left half fully transparent
    arr[:, 16:, 3] = 255
    p = tmp_path / "alpha.png"
    Image.fromarray(arr, "RGBA").save(p)
    out = load_image(p)
    _check_rgb(out, 32, 32)
    assert tuple(out[5, 5]) == (255, 255, 255)
    assert tuple(out[5, 25]) == (255, 0, 0)


def test_palette_and_la_modes(tmp_path):
    p = tmp_path / "pal.png"
    Image.fromarray(_noise(32, 32)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(p)
    assert Image.open(p).mode == "P"
    _check_rgb(load_image(p), 32, 32)

    la = tmp_path / "la.png"
    Image.new("LA", (32, 24), (100, 255)).save(la)
    assert Image.open(la).mode == "LA"
    out = load_image(la)
    _check_rgb(out, 24, 32)
    assert tuple(out[0, 0]) == (100, 100, 100)

    gray = tmp_path / "l.jpg"
    Image.new("L", (20, 20), 77).save(gray)
    _check_rgb(load_image(gray), 20, 20)


def test_exif_orientation_applied(tmp_path):
    img = Image.fromarray(_noise(20, 40))  # 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    p = tmp_path / "rot.jpg"
    img.save(p, "JPEG", exif=exif.tobytes())
    out = load_image(p)
    _check_rgb(out, 40, 20)  # shape swapped


def test_tiff(tmp_path):
    p = tmp_path / "a.tiff"
    Image.fromarray(_noise(24, 36)).save(p)
    _check_rgb(load_image(p), 24, 36)


# --------------------------------------------------------------------------- listing


def test_iter_image_files(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.jpg", "a.PNG", "sub/c.tiff", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path])]
    assert found == ["a.PNG", "b.jpg", "sub/c.tiff"]
    assert [p.name for p in iter_image_files([tmp_path], recursive=False)] == ["a.PNG", "b.jpg"]
    # a file named explicitly is yielded whatever its extension (so it gets its own error later)
    assert [p.name for p in iter_image_files([tmp_path / "notes.txt"])] == ["notes.txt"]
    with pytest.raises(EdgeIQAError, match="missing"):
        list(iter_image_files([tmp_path / "missing"]))
