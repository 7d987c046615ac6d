"""The executorch and executorch-int8 rows (issue 24 item 1): an ExecuTorch program (`.pte`, XNNPACK delegate) lowered
from torch.export, float32 parity vs torch, PT2E int8 with the layers kept in float recorded, the runtime backend chosen
by `.pte` (score, eval, bench), the missing extra, a flag the format does not take and a corrupt or foreign `.pte`. One
EfficientNet-Lite0 student (shipped ImageNet backbone, untrained head) at 64x64 on the 16 scikit-image photos the ONNX
parity tests use, exported once per format. The `executorch` extra (~300 MB with torchao, coremltools and pandas) is
not in `dev`: without `pip install 'edgeiqa[executorch]'` the export and runtime tests skip; the refusals run anyway.
Lowering to XNNPACK takes minutes on a loaded 2-core machine, hence the slow marks and the longer timeouts."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeiqa.export.formats import FORMATS, missing_extra
from helpers import assert_refused, bench_reused_exports, format_fixtures, score_folder_with, write_photo_csv

pytestmark = pytest.mark.usefixtures("one_thread")

MISSING = missing_extra(FORMATS["executorch-int8"], runtime=True)
needs_executorch = pytest.mark.skipif(bool(MISSING), reason=str(MISSING))
EXTRA = r"pip install 'edgeiqa\[executorch\]'"
LONG = pytest.mark.timeout(1800)  # an export lowers the student to XNNPACK: minutes on a loaded machine


photos, run_dir, fp32, int8 = format_fixtures("executorch", "executorch-int8")


# ------------------------------------------------------------------------------------------ the table rows


def test_rows_of_the_formats_table():
    from edgeiqa.export.formats import FORMATS, artefact_files, backend_for_path

    for name in ("executorch", "executorch-int8"):
        f = FORMATS[name]
        assert f.suffix == ".pte" and f.backend == "executorch" and f.extra == "executorch" and f.companions == ()
        assert f.flags == ("calib", "imgs") and f.runtime_requires == ("executorch",)
    assert FORMATS["executorch"].parity_max_abs == 1e-4 and FORMATS["executorch-int8"].parity_min_srcc == 0.99
    # every artefact has its own sidecar name (a .pte beside the .onnx of the same stem would share one)
    stems = [f.filename.rsplit(".", 1)[0] for f in FORMATS.values()]
    assert len(stems) == len(set(stems)), stems
    assert backend_for_path("m.pte") == "executorch"
    assert [p.name for p in artefact_files("d/m.pte")] == ["m.pte"]


@pytest.mark.parametrize("flag, match", [(["--dynamic-batch"], "does not take --dynamic-batch"),
                                         (["--opset", "17"], "does not take --opset"),
                                         (["--int8"], "use --format executorch-int8"),
                                         (["--exporter", "dynamo"], "does not take --exporter")])
def test_a_flag_the_format_does_not_take_is_refused(run_dir, capsys, flag, match):
    line = assert_refused(["export", str(run_dir), "--format", "executorch", *flag], capsys, run_dir, match)
    assert "executorch takes: --calib SPEC --imgs N" in line


@pytest.mark.parametrize("fmt, hide, name", [("executorch", "executorch", "executorch"),
                                              ("executorch-int8", "torchao", "torchao")])
def test_missing_extra_export_is_one_line_exit_2(run_dir, capsys, monkeypatch, fmt, hide, name):
    """None in sys.modules = not importable (as the other optional modules are simulated): one line naming the
    command, exit 2, nothing written, refused before the run is read."""
    monkeypatch.setitem(sys.modules, hide, None)
    line = assert_refused(["export", str(run_dir), "--format", fmt], capsys, run_dir, EXTRA)
    assert " needs " in line and name in line.split(" needs ", 1)[1].split(", not installed")[0]  # named among the missing


def test_missing_extra_score_and_bench(run_dir, photos, tmp_path, capsys, monkeypatch):
    from edgeiqa.bench import BenchOptions, run_bench

    monkeypatch.setitem(sys.modules, "executorch", None)
    model = tmp_path / "m.pte"
    model.write_bytes(b"\0\0\0\0ET12" + b"\0" * 64)
    line = assert_refused(["score", str(photos[0]), "--model", str(model), "--no-progress"], capsys, tmp_path, EXTRA)
    assert str(model) in line and "ExecuTorch program" in line
    data = write_photo_csv(tmp_path / "d.csv", photos[:3], scenes=1)
    report = run_bench(run_dir, BenchOptions(formats=["executorch"], data=f"csv:{data}", runs=1, warmup=0, threads=1))
    (row,) = report["rows"]
    assert row["status"] == "unavailable" and "pip install 'edgeiqa[executorch]'" in row["reason"]


@needs_executorch
def test_junk_pte_is_refused_naming_the_file_before_executorch_loads(photos, tmp_path, capsys):
    junk = tmp_path / "junk.pte"
    junk.write_bytes(bytes(range(256)))
    line = assert_refused(["score", str(photos[0]), "--model", str(junk), "--no-progress"], capsys, tmp_path,
                          "not an ExecuTorch program")
    assert str(junk) in line


# ------------------------------------------------------------------------------------------ export


@pytest.mark.slow
@LONG
@needs_executorch
def test_fp32_program_parity_and_metadata(fp32, run_dir, photos):
    from edgeiqa.export.executorch_export import METADATA_METHOD, PTERunner
    from edgeiqa.runtime import Scorer

    pte = fp32.path
    assert pte.name == "student-executorch.pte" and pte.read_bytes()[4:6] == b"ET"
    par = fp32.parity
    assert par["ok"] and par["n_images"] == 16 and par["max_abs_diff"] <= 1e-4, par
    assert "XNNPACK" in par["compared"]
    facts = fp32.metadata["executorch"]
    assert facts["xnnpack_delegates"] >= 1 and facts["partitioner"] == "XnnpackPartitioner" and facts["batch"] == 1
    # the program carries the runtime's part of the metadata in a constant method; the sidecar has all of it
    runner = PTERunner(pte, threads=1)
    inside = runner.embedded_metadata()
    side = json.loads(fp32.sidecar.read_text())
    assert METADATA_METHOD in runner.program.method_names
    for key in ("views", "normalization", "logistic", "input_order", "edgeiqa_metadata", "format", "precision"):
        assert inside[key] == side[key], key
    assert "parity" not in inside and side["parity"]["max_abs_diff"] == par["max_abs_diff"]
    assert fp32.metadata["gmacs"]["match"] is True  # recounted on the float32 ONNX graph of the same student
    assert runner.fixed_batch == 1 and runner.input_shapes == {"input_0": [1, 3, 64, 64]}
    # end to end through the runtime: the .pte vs the torch backend on the same 16 photos
    scorer = Scorer.load(pte)
    assert scorer.backend.name == "executorch" and scorer.backend.fixed_batch == 1
    a = np.array([r.score for r in scorer.score(photos, batch_size=8)])
    b = np.array([r.score for r in Scorer.load(run_dir).score(photos, batch_size=8)])
    assert np.abs(a - b).max() <= 1e-4 and np.ptp(b) > 1e-3
    one = np.array([r.score for r in scorer.score(photos[:5], batch_size=1)])
    assert np.abs(one - a[:5]).max() <= 1e-6  # a score does not depend on its batch


@pytest.mark.slow
@LONG
@needs_executorch
def test_int8_program_meets_the_bar_and_records_its_float_layers(int8, photos, tmp_path):
    par = int8.parity
    assert par["n_images"] == 16 and par["srcc"] >= 0.99 and par["ok"], par
    q = int8.metadata["quantization"]
    assert q["calibration_batches"] == 16 and q["int8_convolutions"] > 10
    kept = q["float_layers"]
    assert kept["head"]["nodes"] > 0 and "texture" in kept["head"]["why"]
    tries = q["ladder"]["tries"]
    assert tries[-1]["passed"] and [t["float_backbone_layers"] for t in tries] == [0, 1, 2, 4, 8][:len(tries)]
    assert len(kept["backbone"]["names"]) == tries[-1]["float_backbone_layers"] < kept["backbone"]["of"] / 2
    assert int8.metadata["size"]["ratio_to_fp32"] < 0.5 and int8.metadata["precision"] == "int8"
    from edgeiqa.cli.main import main

    out = tmp_path / "int8.csv"
    assert main(["score", *map(str, photos[:3]), "--model", str(int8.path), "--out", str(out), "--no-progress"]) == 0
    assert out.read_text().count(",ok,") == 3


@pytest.mark.slow
@LONG
@needs_executorch
def test_int8_of_a_two_view_student_loads_and_scores(photos, tmp_path):
    """Two views through one backbone: the int8 program holds one backbone per view (XNNPACK's int8 delegate refused
    to load convolutions sharing a quantised weight, `Init failed ... 0x1`), loads and scores like torch, and its
    ladder counts backbone layers across the views (each kept-float layer is kept in both)."""
    from edgeiqa.data.views import ViewSpec
    from edgeiqa.export import export_model
    from helpers import make_run

    run = make_run(tmp_path / "two", [ViewSpec("resize", (64, 64)), ViewSpec("fragments", (56, 56), grid=7)])
    made = export_model(run, "executorch-int8", calib=photos, imgs=16)
    # loaded and run: a parity figure exists (an untrained head's 16 near-tied scores keep it just under 0.99 here)
    assert made.parity["n_images"] == 16 and made.parity["srcc"] >= 0.95, made.parity
    q = made.metadata["quantization"]
    backbone = q["float_layers"]["backbone"]
    assert q["int8_convolutions"] > 10 and backbone["of"] * 2 == q["int8_convolutions"] + len(backbone["nodes"])
    assert len(backbone["nodes"]) == 2 * len(backbone["names"])  # every kept layer, in both views


# ------------------------------------------------------------------------------------------ runtime


@pytest.mark.slow
@LONG
@needs_executorch
def test_score_cli_with_the_pte_and_threads(fp32, photos, tmp_path, capsys):
    from edgeiqa.cli.main import main

    folder, out = score_folder_with(fp32.path, photos, tmp_path, capsys, "executorch")
    again = tmp_path / "again.csv"  # the same bytes for another --batch / --workers / --threads
    assert main(["score", str(folder), "--model", str(fp32.path), "--out", str(again), "--batch", "1", "--workers", "2",
                 "--threads", "2", "--no-progress"]) == 0
    assert again.read_text() == out.read_text()


@pytest.mark.slow
@LONG
@needs_executorch
def test_runtime_imports_nothing_of_training_for_a_pte(fp32, photos):
    """torch is the format's own runtime dependency; timm, onnx and the training code stay out, and the C++ runtime's
    CPU probing does not reach the terminal."""
    code = (
        "import sys\n"
        "from edgeiqa.runtime import Scorer\n"
        f"r = Scorer.load({str(fp32.path)!r}, threads=1).score({[str(p) for p in photos[:2]]!r})\n"
        "assert all(x.ok for x in r), r\n"
        "bad = [m for m in ('timm', 'onnx', 'fvcore', 'edgeiqa.students', 'edgeiqa.training',\n"
        "                   'edgeiqa.export.parity', 'edgeiqa.export.onnx_export') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr
    assert "cpuinfo" not in out.stderr, out.stderr


@pytest.mark.slow
@LONG
@needs_executorch
def test_corrupt_or_foreign_pte_is_one_line_naming_the_file(photos, tmp_path, capsys):
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    program = to_edge_transform_and_lower(torch.export.export(conv, (torch.zeros(1, 3, 8, 8),)),
                                          partitioner=[XnnpackPartitioner()]).to_executorch()
    foreign = tmp_path / "foreign.pte"
    foreign.write_bytes(program.buffer)  # a valid program that is not an edgeiqa student
    truncated = tmp_path / "truncated.pte"
    truncated.write_bytes(program.buffer[:len(program.buffer) // 2])  # a real header, the rest cut off
    cases = ((truncated, "not an ExecuTorch program that ExecuTorch"), (foreign, "no edgeiqa metadata"))
    for model, match in cases:
        line = assert_refused(["score", str(photos[0]), "--model", str(model), "--no-progress"], capsys, tmp_path,
                              match, seconds=120)
        assert str(model) in line
    # what reaches the terminal, C++ logs included: one line
    r = subprocess.run([sys.executable, "-m", "edgeiqa", "score", str(photos[0]), "--model", str(truncated),
                        "--no-progress"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(truncated) in r.stderr, r.stderr


@pytest.mark.slow
@LONG
@needs_executorch
def test_bench_rows_and_eval(fp32, int8, run_dir, photos, tmp_path, capsys):
    """bench reuses both exports (same code path as every format) and eval takes the .pte."""
    doc, rows = bench_reused_exports(run_dir, fp32, photos, tmp_path, capsys, "executorch", "executorch-int8", "ExecuTorch")
    assert rows["executorch"]["size_mb"] == pytest.approx(fp32.path.stat().st_size / 1e6, abs=1e-3)
    assert doc["device"]["versions"]["executorch"]
