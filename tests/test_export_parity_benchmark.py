"""benchmarks/export_parity.py --formats: each row scored by the runtime's backend against torch on the split's
images (--max-images spread over it), a row this machine cannot run listed with its reason, and a bad argument
refused before any export."""

from __future__ import annotations

import json
import sys

import pytest

from edgeiqa.data.views import ViewSpec
from helpers import load_benchmark, make_run, skimage_photos, write_photo_csv

pytestmark = pytest.mark.usefixtures("one_thread")

def _script():
    return load_benchmark("export_parity")


def test_formats_rows_on_at_most_n_images(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", [ViewSpec("resize", (64, 64))])
    photos = skimage_photos(10, ("*.png",))
    data = write_photo_csv(tmp_path / "data.csv", photos, scenes=2)  # every photo in the test split
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    out = tmp_path / "parity.json"
    rc = _script().main([str(run), "--data", f"csv:{data}", "--formats", "onnx,tensorrt", "--max-images", "6",
                         "--calib-imgs", "4", "--out", str(out), "--machine", "test"])
    doc = json.loads(out.read_text())
    assert rc == 0 and doc["n_images"] == 6 and doc["machine"] == "test" and doc["commit"]
    onnx = doc["formats"]["onnx"]
    assert onnx["bar_met"] is True and onnx["max_abs_diff_vs_torch"] <= 1e-4 and onnx["backend"] == "onnxruntime"
    assert onnx["vs_truth"]["n_images"] == 6
    assert "not_run" in doc["formats"]["tensorrt"] and "bar_met" not in doc["formats"]["tensorrt"]


def test_a_row_that_cannot_be_exported_is_reported_and_the_others_go_on(tmp_path):
    run = make_run(tmp_path / "run", [ViewSpec("resize", (64, 64))])
    photos = skimage_photos(4, ("*.png",))
    data = write_photo_csv(tmp_path / "data.csv", photos, scenes=1)
    from edgeiqa.export import export_model

    export_model(run, "onnx", calib=photos, imgs=4)  # reused below; the int8 row must export with the bad calib
    (tmp_path / "empty").mkdir()
    out = tmp_path / "parity.json"
    rc = _script().main([str(run), "--data", f"csv:{data}", "--formats", "onnx-int8,onnx", "--reuse", "--calib",
                         f"folder:{tmp_path / 'empty'}", "--out", str(out)])
    rows = json.loads(out.read_text())["formats"]
    assert rc == 1 and rows["onnx-int8"]["bar_met"] is False and "empty" in rows["onnx-int8"]["export_failed"]
    assert rows["onnx"]["bar_met"] is True


def test_max_images_below_two_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _script().main([str(tmp_path), "--max-images", "1"])
    assert e.value.code == 2 and "--max-images must be >= 2" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
