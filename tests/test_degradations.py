"""The degradation library (edgeiqa/data/degradations): every kind, old and new, on real photos.

Measure of "worse" per kind. SSIM to the original (RGB, data range 255) must fall strictly over the
amounts 0.2 < 0.5 < 1.0 for EVERY kind, by at least MIN_DROP each step: on colour photos every kind
here removes or moves structure, luminance or chroma, all of which SSIM sees. For the kinds that are a
global tone or colour edit, SSIM alone would also fall for a harmless edit of any kind, so a statistic of
what the kind is meant to do must move strictly in its direction too (STATISTIC below, with the reason).
Greyscale photos are left out on purpose: colour kinds cannot change them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from edgeiqa.data import distortions, sample
from edgeiqa.errors import EdgeIQAError

from edgeiqa.data.degradations import GROUPS, describe_kinds, group_of, kinds_in_group

ROOT = Path(__file__).resolve().parents[1]
ALL_KINDS = [k for members in GROUPS.values() for k in members]
# The sample-v1 ladder's nine: the kinds edgeiqa/data/distortions.py registers itself.
LADDER_KINDS = {k for k, d in distortions.DISTORTIONS.items() if d.fn.__module__ == distortions.__name__}

AMOUNTS = (0.2, 0.5, 1.0)
MIN_DROP = 0.002  # SSIM per step: well above what rounding to uint8 alone moves


def _luma(x):
    return x.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])


def _colourfulness(x):
    """Hasler & Suesstrunk's colourfulness (opponent-colour spread): 0 for grey, grows with saturation."""
    x = x.astype(np.float32)
    rg, yb = x[..., 0] - x[..., 1], 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _distinct_colours(x):
    packed = x.reshape(-1, 3).astype(np.int32) @ np.int32([1 << 16, 1 << 8, 1])
    return len(np.unique(packed))


# kind -> (statistic(original, degraded), +1 rises / -1 falls with the amount, why SSIM is not enough)
STATISTIC = {
    "brighten": (lambda o, d: _luma(d).mean(), +1, "a tone curve: the photo must get brighter, not just different"),
    "overexposure": (lambda o, d: _luma(d).mean(), +1, "exposure: brighter"),
    "darken": (lambda o, d: _luma(d).mean(), -1, "a tone curve: darker"),
    "underexposure": (lambda o, d: _luma(d).mean(), -1, "exposure: darker"),
    "mean_shift": (lambda o, d: abs(_luma(d).mean() - _luma(o).mean()), +1, "the mean itself moves further"),
    "desaturate": (lambda o, d: _colourfulness(d), -1, "only chroma changes: less colourful"),
    "oversaturate": (lambda o, d: _colourfulness(d), +1, "only chroma changes: more colourful"),
    "color_diffusion": (lambda o, d: _colourfulness(d), -1, "blurred chroma: small SSIM steps, colour spread falls"),
    "color_shift": (lambda o, d: _colourfulness(d), +1, "misregistered planes: colour fringes at every edge"),
    "color_quantization": (lambda o, d: _distinct_colours(d), -1, "a palette: fewer distinct colours"),
    "quantization": (lambda o, d: _distinct_colours(d), -1, "posterisation: fewer distinct values"),
    "contrast": (lambda o, d: _luma(d).std(), -1, "haze: tonal spread falls"),
    "contrast_change": (lambda o, d: _luma(d).std(), +1, "a contrast boost: tonal spread rises"),
}


@pytest.fixture(scope="module")
def photos():
    """Three colour photos of the sample set (a portrait, a still life, a landscape), longer side 192 px."""
    out = {}
    for name in ("astronaut", "coffee", "china"):
        photo = next(p for p in sample.PHOTOS if p.name == name)
        with Image.open(sample.photo_source(photo)) as im:
            im = im.convert("RGB")
            im.thumbnail((192, 192), Image.LANCZOS)
            out[name] = np.asarray(im).copy()
    return out


def _ssim(a, b):
    return structural_similarity(a, b, channel_axis=2, data_range=255)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_rising_amount_is_measurably_worse(kind, photos):
    for name, img in photos.items():
        outs = [distortions.degrade(img, kind, a, np.random.default_rng(5)) for a in AMOUNTS]
        ssims = [_ssim(img, o) for o in outs]
        assert all(x - y >= MIN_DROP for x, y in zip([1.0] + ssims, ssims)), (name, ssims)
        if kind in STATISTIC:
            stat, sign, _why = STATISTIC[kind]
            values = [stat(img, img)] + [stat(img, o) for o in outs]
            assert all(sign * (y - x) > 0 for x, y in zip(values, values[1:])), (name, values)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_deterministic_shape_and_identity(kind, photos):
    img = photos["coffee"][:64, :80]
    entry = distortions.get_distortion(kind)
    a = distortions.degrade(img, kind, 0.6, np.random.default_rng(7))
    b = distortions.degrade(img, kind, 0.6, np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == img.shape and a.tobytes() == b.tobytes()
    c = distortions.degrade(img, kind, 0.6, np.random.default_rng(8))
    assert (a.tobytes() != c.tobytes()) == entry.uses_rng  # only the kinds that say so draw from the rng
    assert np.array_equal(distortions.degrade(img, kind, 0.0, np.random.default_rng(7)), img)
    tiny = np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)  # smaller than any patch
    out = distortions.degrade(tiny, kind, 1.0, np.random.default_rng(0))
    assert out.shape == tiny.shape and out.dtype == np.uint8


def test_group_table_covers_the_registry_once():
    assert len(ALL_KINDS) == len(set(ALL_KINDS)) == len(distortions.DISTORTIONS)
    assert set(ALL_KINDS) == set(distortions.DISTORTIONS)
    kadid = [k for g, ks in GROUPS.items() if g != "camera" for k in ks]
    assert len(GROUPS) == 8 and "camera" in GROUPS
    # KADID-10k's 25 types: the 7 groups minus the sample ladder's kinds that are not a KADID type
    assert len(LADDER_KINDS) == 9
    assert len([k for k in kadid if k not in LADDER_KINDS - {"jpeg", "pixelate"}]) == 25
    assert {"low_light", "blur_jpeg", "noise_jpeg", "camera_chain", "mixed"} <= set(kinds_in_group("camera"))
    assert group_of("jpeg") == "compression" and group_of("blur") == "blurs" and group_of("pixelate") == "spatial"
    for row in describe_kinds():
        assert "->" in row["description"] or row["kind"] in LADDER_KINDS, row  # range at amount 0 and 1
    assert set(STATISTIC) <= set(ALL_KINDS)


def test_unknown_group_or_kind_names_the_closest():
    with pytest.raises(EdgeIQAError, match="did you mean 'color'") as err:
        kinds_in_group("colour")
    assert "\n" not in str(err.value)
    with pytest.raises(EdgeIQAError, match="did you mean 'sharpness_contrast'"):
        kinds_in_group("sharpness")
    with pytest.raises(EdgeIQAError, match="did you mean 'gaussian_blur'"):
        group_of("gausian_blur")
    with pytest.raises(EdgeIQAError, match="lens_blur"):
        distortions.get_distortion("lens_blurr")


def test_sample_set_imports_the_library():
    """distortions.py alone registers the ladder's nine; importing the sample set registers the library."""
    code = (
        "import json, sys\n"
        "from edgeiqa.data.distortions import DISTORTIONS\n"
        "before = list(DISTORTIONS)\n"
        "assert 'edgeiqa.data.degradations' not in sys.modules\n"
        "import edgeiqa.data.sample\n"
        "print(json.dumps([before, list(DISTORTIONS)]))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert res.returncode == 0, res.stderr
    before, after = json.loads(res.stdout)
    assert set(before) == LADDER_KINDS
    assert after[: len(before)] == before and set(after) == set(ALL_KINDS)


def test_docs_table_lists_every_kind():
    """docs/datasets.md's degradation table is `describe_kinds()` row for row (the library is its source)."""
    text = (ROOT / "docs" / "datasets.md").read_text()
    for row in describe_kinds():
        assert f"| {row['group']} | `{row['kind']}` | {row['description']} |" in text, row
