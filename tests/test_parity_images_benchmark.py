"""benchmarks/parity_images.py: SRCC vs torch of an exported artefact on the first N parity images, for each N
asked, a row not exported said so, and bad arguments refused before any work."""

from __future__ import annotations

import json

import pytest

from edgeiqa.data.views import ViewSpec
from helpers import load_benchmark, make_run, skimage_photos, write_photo_csv

pytestmark = pytest.mark.usefixtures("one_thread")


def test_srcc_per_image_count_and_a_row_not_exported(tmp_path):
    from edgeiqa.export import export_model

    run = make_run(tmp_path / "run", [ViewSpec("resize", (64, 64))])
    photos = skimage_photos(12, ("*.png",))
    export_model(run, "onnx-int8", calib=photos, imgs=8)
    data = write_photo_csv(tmp_path / "data.csv", photos, scenes=3)
    out = tmp_path / "counts.json"
    assert load_benchmark("parity_images").main([str(run), "--formats", "onnx-int8,litert-int8", "--counts", "4,8,12",
                                                 "--data", f"csv:{data}", "--out", str(out), "--machine", "test"]) == 0
    doc = json.loads(out.read_text())
    srcc = doc["rows"]["onnx-int8"]["srcc_vs_torch"]
    assert set(srcc) == {"4", "8", "12"} and all(-1 <= v <= 1 for v in srcc.values()) and srcc["12"] > 0.5
    assert doc["rows"]["litert-int8"]["not_run"].startswith("no export at") and doc["machine"] == "test"
    assert doc["images"]["n_images"] == 12


@pytest.mark.parametrize("argv, message", [(["--counts", "2,16"], "--counts must be whole numbers >= 3"),
                                           (["--counts", "a"], "--counts must be whole numbers"),
                                           (["--formats", "onnx-int9"], "unknown format 'onnx-int9'; did you mean 'onnx-int8'?"),
                                           (["--formats", "teacher"], "unknown format 'teacher'")])
def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        load_benchmark("parity_images").main([str(tmp_path), *argv, "--out", str(tmp_path / "r.json")])
    assert e.value.code == 2 and message in capsys.readouterr().err and not (tmp_path / "r.json").exists()
