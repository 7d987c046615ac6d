"""The litert, litert-fp16 and litert-int8 rows (issue 24 item 1): .tflite converted by litert-torch, float32 parity vs
torch, fp16 / int8 SRCC vs torch with the layers kept in float recorded, the runtime backend chosen by `.tflite`
(score, eval, bench), the missing extra, a flag the rows do not take, a student they cannot express, and a corrupt or
foreign `.tflite`. One EfficientNet-Lite0 student (shipped ImageNet backbone, untrained head) at 64x64 on the 16
scikit-image photos the ONNX parity tests use, exported once per format. litert-torch's conversion takes minutes on
2 cores whatever the input size (its passes walk every op), so every export test is slow. Without
`pip install 'edgeiqa[litert]'` the export and runtime tests skip; the refusals run anyway."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeiqa.data.views import ViewSpec
from edgeiqa.export.formats import FORMATS, missing_extra
from helpers import assert_refused, bench_reused_exports, format_fixtures, make_run, score_folder_with, write_photo_csv

pytestmark = pytest.mark.usefixtures("one_thread")

MISSING = missing_extra(FORMATS["litert-int8"], runtime=True)
needs_litert = pytest.mark.skipif(bool(MISSING), reason=str(MISSING))
RUNTIME_MISSING = missing_extra(FORMATS["litert"], export=False, runtime=True)
needs_runtime = pytest.mark.skipif(bool(RUNTIME_MISSING), reason=str(RUNTIME_MISSING))
EXTRA = r"pip install 'edgeiqa\[litert\]'"


photos, run_dir, fp32, int8 = format_fixtures("litert", "litert-int8")


# ------------------------------------------------------------------------------------------ the table rows


def test_rows_of_the_formats_table():
    from edgeiqa.export.formats import FORMATS, artefact_files, backend_for_path

    for name in ("litert", "litert-fp16", "litert-int8"):
        f = FORMATS[name]
        assert f.suffix == ".tflite" and f.backend == "litert" and f.extra == "litert" and f.device == "CPU"
        assert f.flags == ("calib", "imgs") and f.runtime_requires == ("ai_edge_litert",)
    names = {FORMATS[n].filename for n in ("litert", "litert-fp16", "litert-int8")}  # sidecars never shared with ONNX
    assert not {n.rsplit(".", 1)[0] for n in names} & {f.filename.rsplit(".", 1)[0] for f in FORMATS.values() if f.suffix != ".tflite"}
    assert FORMATS["litert"].parity_max_abs == 1e-4
    assert FORMATS["litert-fp16"].parity_min_srcc == 0.99 and FORMATS["litert-int8"].parity_min_srcc == 0.99
    assert FORMATS["litert-int8"].requires == ("litert_torch", "ai_edge_quantizer")
    assert backend_for_path("m.tflite") == "litert"
    assert [p.name for p in artefact_files("d/m.tflite")] == ["m.tflite"]


@pytest.mark.parametrize("flag, match", [
    (["--int8"], r"does not take --int8 \(use --format litert-int8"),
    (["--fp16"], r"does not take --fp16 \(use --format litert-fp16"),
    (["--dynamic-batch"], r"does not take --dynamic-batch"),
    (["--opset", "17"], r"does not take --opset"),
])
def test_flags_the_rows_do_not_take(run_dir, capsys, flag, match):
    assert_refused(["export", str(run_dir), "--format", "litert", *flag], capsys, run_dir, match)


def test_out_with_another_suffix(run_dir, capsys):
    assert_refused(["export", str(run_dir), "--format", "litert-int8", "--out", str(run_dir / "m.onnx")], capsys,
                   run_dir, r"writes \.tflite files|edgeiqa\[litert\]")


# ------------------------------------------------------------------------------------------ export


@pytest.mark.slow  # litert-torch's conversion: minutes on 2 cores
@pytest.mark.timeout(1800)
@needs_litert
def test_fp32_tflite_parity_and_metadata(fp32, run_dir, photos):
    from edgeiqa.export.litert_export import read_metadata
    from edgeiqa.runtime import Scorer

    path = fp32.path
    assert path.name == "student-litert.tflite" and path.read_bytes()[4:8] == b"TFL3"
    par = fp32.parity
    assert par["ok"] and par["n_images"] == 16 and par["max_abs_diff"] <= 1e-4, par
    assert "LiteRT" in par["compared"] and "float32 I/O" in par["compared"]
    # the same document in the flatbuffer's metadata table and in the sidecar, as for ONNX
    inside = read_metadata(path.read_bytes())
    side = json.loads(fp32.sidecar.read_text())
    for key in ("views", "normalization", "logistic", "gmacs", "parity", "input_order", "source"):
        assert inside[key] == side[key], key
    assert inside["format"] == "litert" and inside["litert"]["converter"] == "litert_torch.convert"
    assert side["artifact_sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert fp32.metadata["gmacs"]["match"] is True  # recounted on the ONNX graph of the same student
    # end to end through the runtime: the .tflite vs the torch backend on the same 16 photos
    scorer = Scorer.load(path)
    assert scorer.backend.name == "litert" and scorer.backend.fixed_batch == 1
    assert scorer.backend.input_names == ["resize"]
    a = np.array([r.score for r in scorer.score(photos, batch_size=8)])
    b = np.array([r.score for r in Scorer.load(run_dir).score(photos, batch_size=8)])
    assert np.abs(a - b).max() <= 1e-4 and np.ptp(b) > 1e-3


@pytest.mark.slow  # a conversion and the quantisation ladder
@pytest.mark.timeout(2400)
@needs_litert
def test_int8_meets_the_bar_and_records_its_float_layers(int8, photos, tmp_path):
    from edgeiqa.export.litert_export import TFLiteRunner

    par = int8.parity
    assert par["n_images"] == 16 and par["srcc"] >= 0.99 and par["ok"], par
    q = int8.metadata["quantization"]
    assert q["calibration_batches"] == 16
    kept = q["float_layers"]
    assert kept["head"]["ops"] > 0 and "texture" in kept["head"]["why"] and "MEAN" in kept["head"]["types"]
    tries = q["ladder"]["tries"]
    assert tries[-1]["passed"] and [t["float_backbone_layers"] for t in tries] == [0, 1, 2, 4, 8, 16][:len(tries)]
    assert len(kept["backbone"]["names"]) == tries[-1]["float_backbone_layers"] < kept["backbone"]["of"] / 2
    # the metadata was embedded without dropping the weights ai-edge-quantizer stores after the flatbuffer
    assert int8.path.stat().st_size >= 0.95 * tries[-1]["bytes"]
    runner = TFLiteRunner(int8.path)
    # full-integer with int8 inputs (the runner quantises the views) unless float layers needed float inputs
    assert runner.precision == ("int8 I/O" if tries[-1]["float_backbone_layers"] == 0 else "float32 I/O")
    assert int8.metadata["size"]["ratio_to_fp32"] < 0.5 and int8.metadata["precision"] == "int8"
    from edgeiqa.cli.main import main

    out = tmp_path / "int8.csv"
    assert main(["score", *map(str, photos[:3]), "--model", str(int8.path), "--out", str(out), "--no-progress"]) == 0
    assert out.read_text().count(",ok,") == 3


@pytest.mark.slow  # a conversion and the float16 pass
@pytest.mark.timeout(1800)
@needs_litert
def test_fp16_meets_the_bar(run_dir, photos, tmp_path):
    from edgeiqa.export import export_model

    res = export_model(run_dir, "litert-fp16", calib=photos, imgs=16, out=tmp_path / "m.tflite")
    assert res.parity["ok"] and res.parity["srcc"] >= 0.99, res.parity
    assert res.metadata["precision"] == "fp16" and 0.4 < res.metadata["size"]["ratio_to_fp32"] < 0.6


# ------------------------------------------------------------------------------------------ runtime


@pytest.mark.slow
@pytest.mark.timeout(2400)
@needs_litert
def test_score_cli_threads_and_no_torch(fp32, photos, tmp_path, capsys):
    from edgeiqa.runtime import Scorer

    folder, out = score_folder_with(fp32.path, photos, tmp_path, capsys, "litert")
    assert Scorer.load(fp32.path, threads=2).backend.threads == 2
    code = (
        "import sys\n"
        "from edgeiqa.runtime import Scorer\n"
        f"r = Scorer.load({str(fp32.path)!r}, threads=1).score({[str(p) for p in photos[:2]]!r})\n"
        "assert all(x.ok for x in r), r\n"
        "bad = [m for m in ('torch', 'timm', 'onnx', 'litert_torch', 'ai_edge_quantizer', 'jax', 'tensorflow',\n"
        "                   'edgeiqa.students', 'edgeiqa.training', 'edgeiqa.export.parity') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "clean" in r.stdout, r.stderr


@pytest.mark.slow
@pytest.mark.timeout(2400)
@needs_litert
def test_bench_rows_and_eval(fp32, int8, run_dir, photos, tmp_path, capsys):
    """bench reuses both exports (same code path as every format) and eval takes the .tflite."""
    doc, rows = bench_reused_exports(run_dir, fp32, photos, tmp_path, capsys, "litert", "litert-int8", "LiteRT")
    assert rows["litert"]["size_mb"] == pytest.approx(fp32.path.stat().st_size / 1e6, abs=1e-3)


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("fmt, hide", [("litert", "litert_torch"), ("litert-int8", "ai_edge_quantizer")])
def test_missing_extra_export_is_one_line_exit_2(run_dir, capsys, monkeypatch, fmt, hide):
    """As the other optional modules are simulated (None in sys.modules = not importable): one line naming the
    command, exit 2, nothing written, refused before the run is read."""
    monkeypatch.setitem(sys.modules, hide, None)
    line = assert_refused(["export", str(run_dir), "--format", fmt], capsys, run_dir, EXTRA)
    assert " needs " in line and hide in line.split(" needs ", 1)[1].split(", not installed")[0]  # named among the missing


def test_missing_extra_score_and_bench(run_dir, photos, tmp_path, capsys, monkeypatch):
    from edgeiqa.bench import BenchOptions, run_bench

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "litert_torch", None)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\0\0\0\0TFL3")
    line = assert_refused(["score", str(photos[0]), "--model", str(model), "--no-progress"], capsys, tmp_path, EXTRA)
    assert str(model) in line and "LiteRT model" in line
    data = write_photo_csv(tmp_path / "d.csv", photos[:3], scenes=1)
    report = run_bench(run_dir, BenchOptions(formats=["litert"], data=f"csv:{data}", runs=1, warmup=0, threads=1))
    (row,) = report["rows"]
    assert row["status"] == "unavailable" and "pip install 'edgeiqa[litert]'" in row["reason"]


@needs_litert
def test_a_full_view_student_is_refused_by_name(tmp_path, photos):
    """A `full` view has a dynamic height and width, which a static-shape .tflite cannot take: refused naming the
    view, nothing written (the conversion is never started)."""
    from edgeiqa.errors import EdgeIQAError
    from edgeiqa.export import export_model

    run = make_run(tmp_path / "full", [ViewSpec("full", (64, 64))])
    before = sorted(p.name for p in run.rglob("*"))
    with pytest.raises(EdgeIQAError, match=r"view\(s\) full of kind 'full'"):
        export_model(run, "litert", calib=photos[:2], imgs=2)
    written = [p.name for p in run.rglob("*") if p.name not in before]
    assert not [n for n in written if n.endswith(".tflite") or n.startswith("student")], written


@needs_runtime
def test_corrupt_or_foreign_tflite_is_one_line_naming_the_file(photos, tmp_path, capsys):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(bytes(range(256)))
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(b"\x1c\0\0\0TFL3" + b"\xff" * 40)
    onnx_like = tmp_path / "model.tflite"
    onnx_like.write_bytes(b"\x08\x07\x12\x07pytorch" + b"\0" * 64)  # an ONNX protobuf renamed
    cases = ((junk, "not a LiteRT"), (onnx_like, "not a LiteRT"), (truncated, "LiteRT"))
    for model, match in cases:
        line = assert_refused(["score", str(photos[0]), "--model", str(model), "--no-progress"], capsys, tmp_path, match)
        assert str(model) in line
    # what reaches the terminal, C++ libraries included: one line
    for model in (junk, truncated):
        r = subprocess.run([sys.executable, "-m", "edgeiqa", "score", str(photos[0]), "--model", str(model),
                            "--no-progress"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(model) in r.stderr, r.stderr


@needs_runtime
def test_a_tflite_without_edgeiqa_metadata_is_refused(photos, tmp_path, capsys):
    """A valid .tflite edgeiqa did not write (no metadata entry, no sidecar): one line naming the file. Built from a
    real flatbuffer with the schema LiteRT ships: one ADD of the input with itself."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT()
    model.version = 3
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.ADD
    model.operatorCodes = [code]
    model.buffers = [s.BufferT(), s.BufferT(), s.BufferT()]
    tensors = []
    for i, name in enumerate(("x", "y")):
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.name = [1, 3, 64, 64], s.TensorType.FLOAT32, i + 1, name
        tensors.append(t)
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 0], [1]
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.AddOptions, s.AddOptionsT()
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [1], [op]
    model.subgraphs = [graph]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(b.Output())
    from edgeiqa.export.litert_export import TFLiteRunner

    runner = TFLiteRunner(foreign, threads=1)  # a real model LiteRT runs: x + x
    x = np.full((1, 3, 64, 64), 0.25, np.float32)
    assert runner.metadata is None and np.allclose(runner.run({"x": x})[:3], 0.5)
    line = assert_refused(["score", str(photos[0]), "--model", str(foreign), "--no-progress"], capsys, tmp_path,
                          "no edgeiqa metadata")
    assert str(foreign) in line
