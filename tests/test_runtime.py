"""Runtime: Scorer.load by suffix, explicit providers, per-image errors, determinism, static batches, the
logistic mapping, and no torch/timm/training code when scoring with an ONNX model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from helpers import make_run, skimage_photos

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (64, 64)


@pytest.fixture(scope="module")
def photos():
    return skimage_photos(16, ("*.png",))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"), [ViewSpec("resize", SIZE)])


@pytest.fixture(scope="module")
def onnx_path(run_dir, photos):
    from edgeiqa.export import export_model

    return export_model(run_dir, "onnx", calib=photos[:4], imgs=4, dynamic_batch=True, exporter="torchscript").path


@pytest.fixture(scope="module")
def static_onnx_path(run_dir, photos):
    from edgeiqa.export import export_model

    return export_model(run_dir, "onnx", calib=photos[:4], imgs=4, exporter="torchscript",
                        out=run_dir / "export" / "static.onnx").path


def test_backend_by_suffix(onnx_path, run_dir):
    from edgeiqa.runtime import Scorer

    s = Scorer.load(onnx_path)
    assert s.backend.name == "onnxruntime" and s.backend.provider == "CPUExecutionProvider"
    assert s.backend.fixed_batch is None
    assert Scorer.load(run_dir).backend.name == "torch"
    assert Scorer.load(run_dir / "student.pt").backend.name == "torch"
    with pytest.raises(EdgeIQAError, match="cannot tell the model format"):
        bad = run_dir / "model.caffemodel"
        bad.write_bytes(b"x")
        Scorer.load(bad)
    with pytest.raises(EdgeIQAError, match="model not found"):
        Scorer.load(run_dir / "missing.onnx")


def test_onnx_matches_torch_backend(onnx_path, run_dir, photos):
    from edgeiqa.runtime import Scorer

    a = [r.score for r in Scorer.load(onnx_path).score(photos, batch_size=8)]
    b = [r.score for r in Scorer.load(run_dir).score(photos, batch_size=8)]
    assert len(a) == 16 and np.abs(np.array(a) - np.array(b)).max() <= 1e-4


def test_deterministic_across_runs_batches_and_workers(onnx_path, photos):
    from edgeiqa.runtime import Scorer

    s = Scorer.load(onnx_path)
    first = [r.score for r in s.score(photos, batch_size=4, workers=1)]
    again = [r.score for r in Scorer.load(onnx_path).score(photos, batch_size=4, workers=3)]
    assert first == again  # bit-identical: same batches whatever the thread count
    single = [r.score for r in s.score(photos, batch_size=1)]
    assert np.abs(np.array(first) - np.array(single)).max() <= 1e-5


def test_static_batch_model_pads(static_onnx_path, onnx_path, photos):
    from edgeiqa.runtime import Scorer

    s = Scorer.load(static_onnx_path)
    assert s.backend.fixed_batch == 1
    a = [r.score for r in s.score(photos[:5], batch_size=4)]
    b = [r.score for r in Scorer.load(onnx_path).score(photos[:5], batch_size=4)]
    assert np.abs(np.array(a) - np.array(b)).max() <= 1e-5


def test_per_item_errors_and_arrays(onnx_path, photos, tmp_path):
    from edgeiqa.data.images import load_image
    from edgeiqa.runtime import Scorer

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "note.jpg"
    text.write_text("not a picture")
    arr = load_image(photos[0])
    items = [photos[0], tmp_path / "missing.png", empty, arr, np.zeros((1, 1, 3), np.uint8), text,
             arr[..., 0], np.dstack([arr, np.full(arr.shape[:2], 255, np.uint8)]), photos[1]]
    res = Scorer.load(onnx_path).score(items, batch_size=3)
    assert len(res) == len(items)
    ok = [r.ok for r in res]
    assert ok == [True, False, False, True, False, False, True, True, True]
    assert res[1].error == "file not found"
    assert "empty" in res[2].error
    assert "too small" in res[4].error
    assert "not an image" in res[5].error
    assert res[0].score == pytest.approx(res[3].score, abs=1e-6)  # path and array give the same score
    assert res[7].score == pytest.approx(res[3].score, abs=1e-6)  # opaque alpha composited away
    assert res[3].path is None and res[3].info["index"] == 3


def test_logistic_mapping_from_metadata(onnx_path, photos, tmp_path):
    import shutil

    from edgeiqa.export.metadata import embed_onnx_metadata, read_metadata
    from edgeiqa.metrics import logistic4
    from edgeiqa.runtime import Scorer

    mapped = tmp_path / "mapped.onnx"
    shutil.copyfile(onnx_path, mapped)
    meta = read_metadata(onnx_path)
    params = {"type": "logistic4", "beta": [5.0, 1.0, 0.0, 0.1]}
    embed_onnx_metadata(mapped, {**meta, "logistic": params})
    raw = Scorer.load(onnx_path).score(photos[:3])
    out = Scorer.load(mapped).score(photos[:3])
    for r, m in zip(raw, out):
        assert m.info["raw_score"] == pytest.approx(r.score, abs=1e-7)
        assert m.score == pytest.approx(float(logistic4(np.array([r.score]), params)[0]), abs=1e-9)
        assert 1.0 <= m.score <= 5.0


def test_unavailable_provider_is_a_clear_error(onnx_path):
    from edgeiqa.runtime import Scorer

    with pytest.raises(EdgeIQAError, match="'CUDAExecutionProvider' is not available"):
        Scorer.load(onnx_path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(EdgeIQAError, match="did you mean 'CPUExecutionProvider'"):
        Scorer.load(onnx_path, providers=["CPUExecutionProvidr"])
    with pytest.raises(EdgeIQAError, match="not available"):
        Scorer.load(onnx_path, device="cuda")
    assert Scorer.load(onnx_path, providers=["cpu"]).backend.provider == "CPUExecutionProvider"


def test_provider_fallback_is_refused(onnx_path, monkeypatch):
    """onnxruntime silently falls back to CPU when a listed provider cannot start: we refuse instead."""
    import onnxruntime as ort

    from edgeiqa.runtime import Scorer

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA provider really available here")
    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: real + ["CUDAExecutionProvider"])
    with pytest.raises(EdgeIQAError, match="asked onnxruntime for CUDAExecutionProvider but the session runs on CPUExecutionProvider"):
        Scorer.load(onnx_path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_torch_backend_cuda_without_gpu(run_dir):
    from edgeiqa.runtime import Scorer

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(EdgeIQAError, match="CUDA is not available on this machine"):
        Scorer.load(run_dir, device="cuda")


def test_tensorrt_engine_needs_tensorrt(tmp_path):
    from edgeiqa.export.tensorrt_export import tensorrt_missing
    from edgeiqa.runtime import Scorer

    missing = tensorrt_missing()
    if not missing:
        pytest.skip("TensorRT and a GPU are present")
    fake = tmp_path / "m.engine"
    fake.write_bytes(b"\0" * 16)
    with pytest.raises(EdgeIQAError, match="missing .*tensorrt"):
        Scorer.load(fake)


def test_onnx_runtime_imports_no_torch_timm_or_training_code(onnx_path, photos):
    code = (
        "import sys, json\n"
        "from edgeiqa.runtime import Scorer\n"
        f"s = Scorer.load({str(onnx_path)!r})\n"
        f"r = s.score({[str(p) for p in photos[:3]]!r}, batch_size=2)\n"
        "assert all(x.ok for x in r), r\n"
        "r2 = s.score_arrays([__import__('numpy').zeros((32, 32, 3), 'uint8')])\n"
        "assert r2[0].ok\n"
        "bad = [m for m in ('torch', 'timm', 'torchvision', 'fvcore', 'scipy', 'sklearn', 'skimage', 'cv2', 'onnx',\n"
        "                   'matplotlib', 'edgeiqa.students', 'edgeiqa.teachers', 'edgeiqa.distill',\n"
        "                   'edgeiqa.training', 'edgeiqa.backbones', 'edgeiqa.metrics', 'edgeiqa.data.datasets',\n"
        "                   'edgeiqa.data.torchdata', 'edgeiqa.data.sample', 'edgeiqa.data.distortions',\n"
        "                   'edgeiqa.data.loading', 'edgeiqa.export.onnx_export', 'edgeiqa.export.parity')\n"
        "       if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "clean" in out.stdout


def test_same_score_whatever_the_batch(onnx_path, run_dir, photos):
    """Issue 9 defect 11: an image's score does not depend on the batch it was scored in (onnxruntime and
    torch, default threads), to 1e-6."""
    from edgeiqa.runtime import Scorer

    for model in (onnx_path, run_dir):
        s = Scorer.load(model)
        one = np.array([r.score for r in s.score(photos[:9], batch_size=1)])
        eight = np.array([r.score for r in s.score(photos[:9], batch_size=8)])
        assert np.abs(one - eight).max() <= 1e-6, (model, np.abs(one - eight).max())
    assert Scorer.load(run_dir).backend.threads == 1  # torch: one thread unless asked
    assert Scorer.load(onnx_path, threads=1).backend.threads == 1


def test_score_arrays_matches_files(onnx_path, photos, tmp_path):
    """PIL images and arrays of any layout/depth get the preprocessing of a file: the same score."""
    from PIL import Image

    from edgeiqa.runtime import Scorer

    s = Scorer.load(onnx_path)
    files = [photos[0], photos[1]]
    ref = [r.score for r in s.score(files)]
    pil = Image.open(photos[1])
    rgb = np.asarray(pil.convert("RGB"))
    exif = Image.Exif()
    exif[0x0112] = 6  # a camera frame held sideways: EXIF says rotate 90 degrees clockwise
    rotated = tmp_path / "rot.png"
    Image.fromarray(np.rot90(rgb, 1).copy()).save(rotated, exif=exif)
    items = [Image.open(photos[0]), rgb, rgb.astype(np.uint16) * 257, Image.open(rotated), np.zeros((4, 4, 3), np.uint8)]
    res = s.score_arrays(items, batch_size=2)
    assert [r.ok for r in res] == [True, True, True, True, False]
    assert res[0].score == pytest.approx(ref[0], abs=1e-6)
    for r in res[1:4]:
        assert r.score == pytest.approx(ref[1], abs=1e-6)
    assert [r.info["index"] for r in res] == [0, 1, 2, 3, 4] and "too small" in res[4].error
    with pytest.raises(EdgeIQAError, match="give PIL images or numpy arrays"):
        s.score_arrays([str(photos[0])])


def test_reduced_jpeg_decode_for_resize_views(onnx_path, photos, tmp_path):
    """A large JPEG is decoded at a reduced DCT scale (>= 2x the view) for a resize-only model: far fewer
    pixels, nearly the same score; fast_decode=False (--full-decode) gives the full-decode score."""
    from PIL import Image

    from edgeiqa.data.images import load_image
    from edgeiqa.runtime import Scorer

    big = tmp_path / "big.jpg"
    Image.open(photos[0]).convert("RGB").resize((1600, 1200), Image.BICUBIC).save(big, quality=92)
    assert load_image(big).shape == (1200, 1600, 3)
    assert load_image(big, draft=128).shape == (150, 200, 3)  # 1/8 scale still keeps >= 128 px (2x the view)
    png = tmp_path / "big.png"
    Image.open(big).save(png)
    assert load_image(png, draft=128).shape == (1200, 1600, 3)  # only JPEG has DCT scaling
    fast = Scorer.load(onnx_path, fast_decode=True)  # what `edgeiqa score` uses unless --full-decode
    exact = Scorer.load(onnx_path)  # the library default: exactly the training pipeline
    assert fast.draft == 128 and exact.draft is None
    f, e = fast.score_one(big), exact.score_one(big)
    assert e == pytest.approx(exact.score_one(png), abs=1e-3)  # full decode: the decoded pixels of the PNG copy
    assert abs(f - e) < 0.05 * (abs(e) + 1e-3) + 0.02


def test_fast_path_keeps_native_pixels_for_fragments(photos, tmp_path):
    """resize + fragments with fast_decode: the fragments view is exactly the full-decode one (native
    pixels), the resize view starts from a box-reduced copy and stays close to the exact one."""
    from PIL import Image

    from edgeiqa.runtime import Scorer

    run = make_run(tmp_path / "rf", [ViewSpec("resize", (64, 64)), ViewSpec("fragments", (56, 56))])
    big = tmp_path / "big.jpg"
    Image.open(photos[0]).convert("RGB").resize((1024, 768), Image.BICUBIC).save(big, quality=92)
    fast, exact = Scorer.load(run, fast_decode=True), Scorer.load(run)
    assert fast.fast and fast.draft is None  # fragments need the full decode
    (fv, _), (ev, _) = fast.preprocess(big), exact.preprocess(big)
    assert np.array_equal(fv["fragments"], ev["fragments"])
    assert not np.array_equal(fv["resize"], ev["resize"])
    assert np.abs(fv["resize"].astype(int) - ev["resize"].astype(int)).mean() < 2.0


def test_fast_path_keeps_the_decoded_jpeg_as_a_pil_image(photos, tmp_path):
    """resize + fragments, fast path: a decoded RGB file is not copied whole into numpy (the resize view is
    box-reduced from the PIL image, the fragments are cropped from it); the views are the same pixels as the
    same fast path on the decoded array, EXIF rotation included, and the fragments are the training ones.
    Grayscale files and images smaller than the fragments view go through the array path."""
    from PIL import Image

    from edgeiqa.runtime import Scorer

    run = make_run(tmp_path / "rf", [ViewSpec("resize", (64, 64)), ViewSpec("fragments", (56, 56))])
    fast, exact = Scorer.load(run, fast_decode=True), Scorer.load(run)
    src = Image.open(photos[0]).convert("RGB")
    big = tmp_path / "big.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    src.resize((1024, 768), Image.BICUBIC).save(big, quality=92, exif=exif)
    gray = tmp_path / "gray.jpg"
    src.convert("L").resize((800, 600)).save(gray, quality=90)
    small = tmp_path / "small.jpg"
    src.resize((48, 40)).save(small, quality=90)
    img = fast.decode(big)
    assert isinstance(img, Image.Image) and img.size == (768, 1024)  # kept as PIL, rotated
    assert isinstance(fast.decode(gray), np.ndarray) and isinstance(exact.decode(big), np.ndarray)
    for p in (big, gray, small):
        (fv, _), (av, _) = fast.preprocess(p), fast.preprocess(exact.to_rgb(p))  # array input: array path
        (ev, _) = exact.preprocess(p)
        for name in ("resize", "fragments"):
            assert fv[name].dtype == np.uint8 and np.array_equal(fv[name], av[name]), (p.name, name)
        assert np.array_equal(fv["fragments"], ev["fragments"]), p.name
    assert fast.score_one(big) == pytest.approx(fast.score_arrays([exact.to_rgb(big)])[0].score, abs=1e-6)


def test_onnx_session_spins_and_the_speed_benchmark_measures_it(onnx_path, tmp_path):
    """The runtime's session keeps onnxruntime's spinning on (off cost the bench row ~15 % on a VM), and
    benchmarks/onnx_speed.py, the check that would have caught that, times it beside plain sessions."""
    import json

    from edgeiqa.runtime.backends import OnnxBackend

    opts = OnnxBackend(onnx_path, threads=1).session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "1"

    from helpers import load_benchmark

    bench = load_benchmark("onnx_speed")
    out = tmp_path / "speed.json"
    bench.main([str(onnx_path), "--threads", "1", "--rounds", "2", "--runs", "3", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert set(doc["rows"]) == {"runtime", "ort_default", "no_spinning"}
    assert all(r["p50_ms"] > 0 and len(r["block_p50_ms"]) == 2 for r in doc["rows"].values())
    assert doc["ceiling_conv_gmacs_per_s"] > 0 and set(doc["checks"]) == {"runtime_pct_ceiling_ge_60",
                                                                          "runtime_within_10pct_of_ort_default"}
    with pytest.raises(SystemExit) as exc:  # not a model: argparse's one line, exit 2, nothing written
        bench.main([str(tmp_path / "speed.json"), "--out", str(tmp_path / "x.json")])
    assert exc.value.code == 2 and not (tmp_path / "x.json").exists()
