"""Views: shapes, determinism, native pixels in fragments, the face record, the `full` cap, normalisation."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from edgeiqa.data.images import load_image
from edgeiqa.data.views import (
    EVAL_SEED,
    NORMALIZATION,
    VIEW_KINDS,
    ViewSpec,
    make_view,
    make_views,
    to_batch,
)
from edgeiqa.errors import EdgeIQAError

SKIMAGE_DATA = Path(list(find_spec("skimage").submodule_search_locations)[0]) / "data"


@pytest.fixture(scope="module")
def astronaut():
    return load_image(SKIMAGE_DATA / "astronaut.png")  # 512x512 portrait


@pytest.fixture(scope="module")
def coffee():
    return load_image(SKIMAGE_DATA / "coffee.png")  # 400x600, no face


SIZE = (224, 224)


@pytest.mark.parametrize("kind", VIEW_KINDS)
def test_every_view_on_real_photos(kind, astronaut, coffee):
    for img in (astronaut, coffee):
        out, info = make_view(img, ViewSpec(kind, SIZE))
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        if kind == "full":
            # a cap, not a target: both photos are larger than 224, so the longer side hits it
            assert max(out.shape[:2]) == 224 and out.shape[0] <= 224 and out.shape[1] <= 224
        else:
            assert out.shape == (224, 224, 3)
        if kind == "face":
            assert "face_found" in info
        else:
            assert info == {}


@pytest.mark.parametrize("shape", [(17, 23), (16, 300), (301, 19), (225, 223)])
@pytest.mark.parametrize("kind", VIEW_KINDS)
def test_small_and_odd_sized_inputs(kind, shape):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    out, info = make_view(img, ViewSpec(kind, SIZE))
    assert out.dtype == np.uint8
    if kind == "full":
        # under the cap on both sides -> unchanged; over on one side -> scaled to fit, at least 16 px
        if shape[0] <= 224 and shape[1] <= 224:
            assert out.shape == (*shape, 3)
            assert np.array_equal(out, img)
        else:
            assert out.shape[0] <= 224 and out.shape[1] <= 224 and min(out.shape[:2]) >= 16
    else:
        assert out.shape == (224, 224, 3)
    if kind == "face":
        assert info["face_found"] is False  # random noise has no face, and the record says so


def test_non_square_view_sizes(coffee):
    for kind in ("resize", "center", "face", "fragments"):
        out, _ = make_view(coffee, ViewSpec(kind, (224, 336)))
        assert out.shape == (224, 336, 3)


def test_fragments_deterministic_at_eval_and_random_in_training(coffee):
    spec = ViewSpec("fragments", SIZE)
    a, _ = make_view(coffee, spec)
    b, _ = make_view(coffee, spec)
    assert np.array_equal(a, b)  # rng=None twice: the same fragments, so the same score
    seeded, _ = make_view(coffee, spec, np.random.default_rng(EVAL_SEED))
    assert np.array_equal(a, seeded)
    r1, _ = make_view(coffee, spec, np.random.default_rng(1))
    r2, _ = make_view(coffee, spec, np.random.default_rng(2))
    assert not np.array_equal(r1, r2)
    assert not np.array_equal(r1, a)


def _find_crop(src: np.ndarray, patch: np.ndarray, ys: range, xs: range) -> tuple[int, int] | None:
    ph, pw = patch.shape[:2]
    for y in ys:
        for x in xs:
            if np.array_equal(src[y : y + ph, x : x + pw], patch):
                return y, x
    return None


def test_fragments_keep_native_pixels(astronaut, coffee):
    for img in (astronaut, coffee):
        spec = ViewSpec("fragments", SIZE, grid=7)
        out, _ = make_view(img, spec, np.random.default_rng(5))
        ph, pw = 224 // 7, 224 // 7
        ih, iw = img.shape[:2]
        cell_h, cell_w = int(np.ceil(ih / 7)), int(np.ceil(iw / 7))
        for gy, gx in [(0, 0), (3, 4), (6, 6)]:
            patch = out[gy * ph : (gy + 1) * ph, gx * pw : (gx + 1) * pw]
            # the patch must be an exact (un-resampled) crop from inside its own grid cell
            ys = range(max(0, gy * ih // 7 - 1), min(ih - ph, gy * ih // 7 + cell_h) + 1)
            xs = range(max(0, gx * iw // 7 - 1), min(iw - pw, gx * iw // 7 + cell_w) + 1)
            assert _find_crop(img, patch, ys, xs) is not None, (gy, gx)


def test_center_is_a_native_crop(coffee):
    out, _ = make_view(coffee, ViewSpec("center", SIZE))
    top, left = (400 - 224) // 2, (600 - 224) // 2
    assert np.array_equal(out, coffee[top : top + 224, left : left + 224])


def test_resize_keeps_the_whole_picture(coffee):
    out, _ = make_view(coffee, ViewSpec("resize", (100, 150)))
    assert out.shape == (100, 150, 3)
    # a global view: mean colour preserved (no crop)
    assert np.allclose(out.reshape(-1, 3).mean(0), coffee.reshape(-1, 3).mean(0), atol=2.0)


def test_face_view_records_whether_a_face_was_found(astronaut, coffee):
    out, info = make_view(astronaut, ViewSpec("face", SIZE))
    assert info["face_found"] is True
    x, y, w, h = info["face_box"]
    assert 0 <= x < 512 and 0 <= y < 512 and w > 40 and h > 40
    assert out.shape == (224, 224, 3)
    # the face of the astronaut is in the upper half of the picture, left of the flag
    assert y < 256

    out, info = make_view(coffee, ViewSpec("face", SIZE))
    assert info == {"face_found": False}
    # the fallback is the centre crop, not silence
    assert np.array_equal(out, make_view(coffee, ViewSpec("center", SIZE))[0])


def test_make_views_keys_and_merged_info(astronaut):
    specs = [ViewSpec(kind, SIZE) for kind in ("resize", "fragments", "face")]
    views, info = make_views(astronaut, specs)
    assert list(views) == ["resize", "fragments", "face"]
    assert info["face_found"] is True
    assert all(v.shape == (224, 224, 3) for v in views.values())


def test_full_keeps_size_under_cap_and_scales_down_over(coffee):
    out, _ = make_view(coffee, ViewSpec("full", (1024, 1024)))
    assert out.shape == coffee.shape and np.array_equal(out, coffee)
    out, _ = make_view(coffee, ViewSpec("full", (200, 1000)))
    assert out.shape == (200, 300, 3)  # height is the binding side, aspect kept
    out, _ = make_view(coffee, ViewSpec("full", (300, 300)))
    assert out.shape == (200, 300, 3)


def test_to_batch_normalisation():
    red = np.zeros((8, 10, 3), dtype=np.uint8)
    red[..., 0] = 255
    gray = np.full((8, 10, 3), 128, dtype=np.uint8)
    batch = to_batch([red, gray])
    assert batch.shape == (2, 3, 8, 10) and batch.dtype == np.float32 and batch.flags["C_CONTIGUOUS"]
    mean, std = NORMALIZATION["mean"], NORMALIZATION["std"]
    assert NORMALIZATION == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    np.testing.assert_allclose(batch[0, 0], (1 - mean[0]) / std[0], rtol=1e-6)
    np.testing.assert_allclose(batch[0, 1], (0 - mean[1]) / std[1], rtol=1e-6)
    np.testing.assert_allclose(batch[0, 2], (0 - mean[2]) / std[2], rtol=1e-6)
    for c in range(3):
        np.testing.assert_allclose(batch[1, c], (128 / 255 - mean[c]) / std[c], rtol=1e-6)


def test_unknown_view_name_suggests():
    with pytest.raises(EdgeIQAError, match="did you mean 'fragments'"):
        ViewSpec("fragment", SIZE)
    with pytest.raises(EdgeIQAError, match="unknown view"):
        ViewSpec("zzz", SIZE)


def test_fragments_size_must_divide_by_grid():
    with pytest.raises(EdgeIQAError, match="divisible by the grid"):
        ViewSpec("fragments", (225, 224))
    with pytest.raises(EdgeIQAError, match="divisible by the grid"):
        ViewSpec("fragments", (224, 224), grid=5)
    assert ViewSpec("fragments", (225, 225), grid=5).grid == 5


def test_too_small_view_and_bad_input():
    with pytest.raises(EdgeIQAError, match="too small"):
        ViewSpec("resize", (8, 224))
    with pytest.raises(EdgeIQAError, match="RGB uint8"):
        make_view(np.zeros((32, 32), dtype=np.uint8), ViewSpec("resize", SIZE))
    with pytest.raises(EdgeIQAError, match="RGB uint8"):
        make_view(np.zeros((32, 32, 3), dtype=np.float32), ViewSpec("resize", SIZE))


def test_spec_round_trip():
    spec = ViewSpec("fragments", (224, 448), grid=7)
    assert ViewSpec.from_dict(spec.to_dict()) == spec
    assert spec.name == "fragments"
