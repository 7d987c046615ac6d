"""The openvino and openvino-int8 rows (issue 24 item 1): OpenVINO IR exported from the ONNX graph, float32 parity
vs torch, NNCF int8 with the layers kept in float recorded, the runtime backend chosen by `.xml` (score, eval,
bench), the missing extra and a corrupt or foreign `.xml`. One EfficientNet-Lite0 student (shipped ImageNet
backbone, untrained head) at 64x64 on the 16 scikit-image photos the ONNX parity tests use, exported once per
format. Without `pip install 'edgeiqa[openvino]'` the export and runtime tests skip; the refusals run anyway."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeiqa.export.formats import FORMATS, missing_extra
from helpers import assert_refused, bench_reused_exports, format_fixtures, score_folder_with, write_photo_csv

pytestmark = pytest.mark.usefixtures("one_thread")

MISSING = missing_extra(FORMATS["openvino-int8"], runtime=True)
needs_openvino = pytest.mark.skipif(bool(MISSING), reason=str(MISSING))
EXTRA = r"pip install 'edgeiqa\[openvino\]'"


photos, run_dir, fp32, int8 = format_fixtures(
    "openvino", "openvino-int8", float_kwargs={"dynamic_batch": True, "exporter": "torchscript"},
    int8_kwargs={"exporter": "torchscript"})


# ------------------------------------------------------------------------------------------ the table rows


def test_rows_of_the_formats_table():
    from edgeiqa.export.formats import FORMATS, artefact_files, backend_for_path

    for name in ("openvino", "openvino-int8"):
        f = FORMATS[name]
        assert f.suffix == ".xml" and f.backend == "openvino" and f.companions == (".bin",) and f.extra == "openvino"
        assert set(f.flags) >= {"calib", "imgs", "dynamic_batch"}
    assert FORMATS["openvino"].parity_max_abs == 1e-4 and FORMATS["openvino-int8"].parity_min_srcc == 0.99
    assert FORMATS["openvino-int8"].requires == ("openvino", "nncf")
    assert backend_for_path("m.xml") == "openvino"
    assert [p.name for p in artefact_files("d/m.xml")] == ["m.xml", "m.bin"]


def test_int8_flag_points_to_the_int8_row(run_dir, capsys):
    assert_refused(["export", str(run_dir), "--format", "openvino", "--int8"], capsys, run_dir,
                   "use --format openvino-int8")


# ------------------------------------------------------------------------------------------ export


@needs_openvino
def test_fp32_ir_parity_and_metadata(fp32, run_dir, photos):
    from edgeiqa.export.openvino_export import import_openvino
    from edgeiqa.runtime import Scorer

    ov = import_openvino()

    xml, weights = fp32.path, fp32.path.with_suffix(".bin")
    assert xml.name == "student-openvino.xml" and weights.is_file()
    par = fp32.parity
    assert par["ok"] and par["n_images"] == 16 and par["max_abs_diff"] <= 1e-4, par
    assert "CPU plugin (f32)" in par["compared"]
    # the same document in the IR's rt_info and in the sidecar, as for ONNX
    inside = json.loads(ov.Core().read_model(str(xml)).get_rt_info(["edgeiqa"]).astype(str))
    side = json.loads(fp32.sidecar.read_text())
    for key in ("views", "normalization", "logistic", "gmacs", "parity", "input_order", "source"):
        assert inside[key] == side[key], key
    assert inside["format"] == "openvino" and inside["openvino"]["compress_to_fp16"] is False
    assert side["companions"] == {weights.name: __import__("hashlib").sha256(weights.read_bytes()).hexdigest()}
    assert fp32.metadata["gmacs"]["match"] is True  # recounted on the ONNX graph the IR was converted from
    graph = fp32.metadata["size"]["bytes"] - weights.stat().st_size  # the .bin counts (size taken before rt_info)
    assert 0 < graph < xml.stat().st_size
    # end to end through the runtime: the .xml vs the torch backend on the same 16 photos
    scorer = Scorer.load(xml)
    assert scorer.backend.name == "openvino" and scorer.backend.fixed_batch is None  # --dynamic-batch kept
    a = np.array([r.score for r in scorer.score(photos, batch_size=8)])
    b = np.array([r.score for r in Scorer.load(run_dir).score(photos, batch_size=8)])
    assert np.abs(a - b).max() <= 1e-4 and np.ptp(b) > 1e-3
    one = np.array([r.score for r in scorer.score(photos[:5], batch_size=1)])
    assert np.abs(one - a[:5]).max() <= 1e-6  # a score does not depend on its batch


@pytest.mark.slow  # the int8 export: NNCF quantises 1-4 times (~30 s on 2 cores)
@needs_openvino
def test_int8_ir_meets_the_bar_and_records_its_float_layers(int8, photos, tmp_path):
    from edgeiqa.export.openvino_export import import_openvino

    ov = import_openvino()

    par = int8.parity
    assert par["n_images"] == 16 and par["srcc"] >= 0.99 and par["ok"], par
    q = int8.metadata["quantization"]
    assert q["calibration_batches"] == 16 and q["quantized_nodes"] > 10
    kept = q["float_layers"]
    assert kept["head"]["ops"] > 0 and "texture" in kept["head"]["why"]
    tries = q["ladder"]["tries"]
    assert tries[-1]["passed"] and [t["float_backbone_layers"] for t in tries] == [0, 1, 2, 4, 8][:len(tries)]
    assert len(kept["backbone"]["names"]) == tries[-1]["float_backbone_layers"] < kept["backbone"]["of"] / 2
    ops = {op.get_type_name() for op in ov.Core().read_model(str(int8.path)).get_ordered_ops()}
    assert "FakeQuantize" in ops
    assert int8.metadata["size"]["ratio_to_fp32"] < 0.5 and int8.metadata["precision"] == "int8"
    from edgeiqa.cli.main import main

    out = tmp_path / "int8.csv"
    assert main(["score", *map(str, photos[:3]), "--model", str(int8.path), "--out", str(out), "--no-progress"]) == 0
    assert out.read_text().count(",ok,") == 3


@needs_openvino
def test_own_ir_is_replaced_a_foreign_bin_is_kept(fp32, run_dir, tmp_path, capsys):
    from edgeiqa.export.exporter import check_output
    from edgeiqa.export.formats import get_format
    from edgeiqa.outsafe import OutputRefused

    f, ckpt = get_format("openvino"), run_dir / "student.pt"
    assert check_output(f, run_dir, ckpt, fp32.path) == fp32.path  # a rerun replaces its own export
    out = tmp_path / "m.xml"
    out.with_suffix(".bin").write_bytes(b"the user's weights")
    with pytest.raises(OutputRefused, match=r"m\.bin exists and edgeiqa did not write it"):
        check_output(f, run_dir, ckpt, out)


# ------------------------------------------------------------------------------------------ runtime


@needs_openvino
def test_score_cli_with_the_xml(fp32, photos, tmp_path, capsys):
    from edgeiqa.cli.main import main

    folder, out = score_folder_with(fp32.path, photos, tmp_path, capsys, "openvino")
    again = tmp_path / "again.csv"  # the same bytes for another --batch / --workers
    assert main(["score", str(folder), "--model", str(fp32.path), "--out", str(again), "--batch", "1", "--workers", "2",
                 "--no-progress"]) == 0
    assert again.read_text() == out.read_text()


@needs_openvino
def test_thread_count_is_honoured(fp32):
    from edgeiqa.bounds import usable_cores
    from edgeiqa.runtime import Scorer

    assert Scorer.load(fp32.path, threads=1).backend.threads == 1
    assert Scorer.load(fp32.path).backend.threads == usable_cores()


@needs_openvino
def test_runtime_imports_no_torch_for_an_xml(fp32, photos, tmp_path):
    """Nor nncf, nor anything of training; and OpenVINO's telemetry stays off (it would write ~/intel)."""
    import os

    code = (
        "import sys\n"
        "from edgeiqa.runtime import Scorer\n"
        f"r = Scorer.load({str(fp32.path)!r}, threads=1).score({[str(p) for p in photos[:2]]!r})\n"
        "assert all(x.ok for x in r), r\n"
        "bad = [m for m in ('torch', 'timm', 'onnx', 'nncf', 'scipy', 'edgeiqa.students', 'edgeiqa.training',\n"
        "                   'edgeiqa.export.parity', 'edgeiqa.export.onnx_export') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # the int8 export: NNCF quantises 1-4 times (~30 s on 2 cores)
@needs_openvino
def test_bench_rows_and_eval(fp32, int8, run_dir, photos, tmp_path, capsys):
    """bench reuses both exports (same code path as every format) and eval takes the .xml."""
    doc, rows = bench_reused_exports(run_dir, fp32, photos, tmp_path, capsys, "openvino", "openvino-int8", "OpenVINO")
    assert rows["openvino-int8"]["ceiling_fraction"] is not None and rows["openvino"]["ceiling_fraction"] is not None
    on_disk = sum(p.stat().st_size for p in (fp32.path, fp32.path.with_suffix(".bin")))
    assert rows["openvino"]["size_mb"] == pytest.approx(on_disk / 1e6, abs=1e-3)  # .xml + .bin
    assert "openvino" in doc["ceiling"] and doc["device"]["versions"]["openvino"]


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("fmt, hide, name", [("openvino", "openvino", "openvino"), ("openvino-int8", "nncf", "nncf")])
def test_missing_extra_export_is_one_line_exit_2(run_dir, capsys, monkeypatch, fmt, hide, name):
    """As the other optional modules are simulated (None in sys.modules = not importable): one line naming the
    command, exit 2, nothing written, refused before the run is read."""
    monkeypatch.setitem(sys.modules, hide, None)
    line = assert_refused(["export", str(run_dir), "--format", fmt], capsys, run_dir, EXTRA)
    assert f"needs {name}" in line


def test_missing_extra_score_and_bench(run_dir, photos, tmp_path, capsys, monkeypatch):
    from edgeiqa.bench import BenchOptions, run_bench

    monkeypatch.setitem(sys.modules, "openvino", None)
    model = tmp_path / "m.xml"
    model.write_text("<net/>")
    line = assert_refused(["score", str(photos[0]), "--model", str(model), "--no-progress"], capsys, tmp_path, EXTRA)
    assert str(model) in line and "OpenVINO model" in line
    data = write_photo_csv(tmp_path / "d.csv", photos[:3], scenes=1)
    report = run_bench(run_dir, BenchOptions(formats=["openvino"], data=f"csv:{data}", runs=1, warmup=0, threads=1))
    (row,) = report["rows"]
    assert row["status"] == "unavailable" and "pip install 'edgeiqa[openvino]'" in row["reason"]


@needs_openvino
def test_corrupt_foreign_or_incomplete_xml_is_one_line_naming_the_file(fp32, photos, tmp_path, capsys):
    from edgeiqa.export.openvino_export import import_openvino

    ov = import_openvino()
    from openvino import opset13 as ops

    corrupt = tmp_path / "corrupt.xml"
    corrupt.write_bytes(b"<?xml version='1.0'?><net name='x' version='11'><layers><layer id='0'")
    corrupt.with_suffix(".bin").write_bytes(b"\0" * 8)
    x = ops.parameter([1, 3, 64, 64], np.float32, name="resize")
    foreign = tmp_path / "foreign.xml"
    ov.save_model(ov.Model([ops.relu(x)], [x], "foreign"), str(foreign))
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(fp32.path.read_bytes())  # no .bin beside it
    junk = tmp_path / "junk.xml"
    junk.write_bytes(bytes(range(256)))
    junk.with_suffix(".bin").write_bytes(b"\0" * 8)
    cases = ((corrupt, "not an OpenVINO IR"), (junk, "not an OpenVINO IR"), (foreign, "no edgeiqa metadata"),
             (lonely, r"lonely\.bin is missing"))
    for model, match in cases:
        line = assert_refused(["score", str(photos[0]), "--model", str(model), "--no-progress"], capsys, tmp_path, match)
        assert str(model) in line
    # what reaches the terminal, C++ libraries included: one line (OpenVINO's TensorFlow frontend, tried on a file the
    # IR one cannot parse, would print its own errors to stderr)
    for model in (corrupt, junk):
        r = subprocess.run([sys.executable, "-m", "edgeiqa", "score", str(photos[0]), "--model", str(model),
                            "--no-progress"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(model) in r.stderr, r.stderr
