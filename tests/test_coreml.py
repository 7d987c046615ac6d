"""The coreml and coreml-int8 rows (issue 24 item 1): a Core ML ML program (.mlpackage folder) converted from the torch
student by coremltools, float16 or int8 weights. Prediction needs macOS, so here the tests check what Linux can: the
converted spec (input/output names and shapes), the metadata round trip through coremltools, the weights really
int8, the folder artefact's size, sha256 and atomic replacement, and that parity / score / bench say "not runnable"
plainly. One EfficientNet-Lite0 student (shipped ImageNet backbone, untrained head) at 64x64, exported once per
format. Without `pip install 'edgeiqa[coreml]'` the export tests skip; the refusals and folder helpers run anyway."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgeiqa.data.views import ViewSpec
from edgeiqa.export.formats import FORMATS, missing_extra
from helpers import assert_refused, format_fixtures, write_photo_csv

pytestmark = pytest.mark.usefixtures("one_thread")

MISSING = missing_extra(FORMATS["coreml"], runtime=True)
needs_coremltools = pytest.mark.skipif(bool(MISSING), reason=str(MISSING))
MACOS = sys.platform == "darwin"
needs_macos = pytest.mark.skipif(not MACOS, reason="not runnable on Linux: Core ML models run only on macOS")
off_macos = pytest.mark.skipif(MACOS, reason="checks the refusal Core ML gives off macOS")
EXTRA = r"pip install 'edgeiqa\[coreml\]'"
SIZE = (64, 64)


photos, run_dir, fp16, int8 = format_fixtures("coreml", "coreml-int8", float_name="fp16")


def _tree(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _fake_package(folder, model_bytes: bytes):
    """A folder laid out as a .mlpackage (Manifest.json naming Data/com.apple.CoreML/model.mlmodel) with the given
    spec bytes: enough for the checks that read the manifest and the spec."""
    data = folder / "Data" / "com.apple.CoreML"
    data.mkdir(parents=True)
    (data / "model.mlmodel").write_bytes(model_bytes)
    (folder / "Manifest.json").write_text(json.dumps({
        "fileFormatVersion": "1.0.0", "rootModelIdentifier": "A",
        "itemInfoEntries": {"A": {"path": "com.apple.CoreML/model.mlmodel", "author": "x", "name": "model.mlmodel"}}}))
    return folder


# ------------------------------------------------------------------------------------------ the table rows


def test_rows_of_the_formats_table(tmp_path):
    from edgeiqa.export.formats import FORMATS, artefact_bytes, artefact_files, backend_for_path

    for name in ("coreml", "coreml-int8"):
        f = FORMATS[name]
        assert f.suffix == ".mlpackage" and f.backend == "coreml" and f.folder and f.extra == "coreml"
        assert f.requires == ("coremltools",) and f.parity_min_srcc == 0.99 and "dynamic_batch" not in f.flags
    assert FORMATS["coreml"].filename != FORMATS["coreml-int8"].filename
    # their .json sidecars differ from every other row's (student.onnx's sidecar is student.json)
    sidecars = [f.filename.rsplit(".", 1)[0] for f in FORMATS.values()]
    assert len(sidecars) == len(set(sidecars))
    # a folder named *.mlpackage is a Core ML model; any other folder is still a run folder
    package = tmp_path / "m.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Data" / "a.bin").write_bytes(b"x" * 1000)
    (package / "Manifest.json").write_bytes(b"{}")
    assert backend_for_path(package) == "coreml" and backend_for_path(tmp_path) == "torch"
    assert artefact_files(package) == [package]
    assert artefact_bytes(package) == 1002  # size on disk: every file inside the folder


def test_sha256_of_a_folder_artefact(tmp_path):
    from edgeiqa.provenance import sha256_file, sha256_tree

    a = tmp_path / "a.mlpackage"
    (a / "Data").mkdir(parents=True)
    (a / "Data" / "w.bin").write_bytes(b"weights")
    (a / "Manifest.json").write_text("{}")
    first = sha256_file(a)
    assert first == sha256_tree(a) and len(first) == 64
    b = tmp_path / "copy" / "a.mlpackage"
    shutil.copytree(a, b)
    assert sha256_file(b) == first  # where the folder lies does not count
    (b / "Data" / "w.bin").write_bytes(b"weightz")
    assert sha256_file(b) != first  # an edited file does
    (b / "Data" / "w.bin").write_bytes(b"weights")
    (b / "Data" / "w.bin").rename(b / "Data" / "v.bin")
    assert sha256_file(b) != first  # and a renamed one


def test_int8_and_other_flags_are_refused(run_dir, capsys):
    assert_refused(["export", str(run_dir), "--format", "coreml", "--int8"], capsys, run_dir, "use --format coreml-int8")
    assert_refused(["export", str(run_dir), "--format", "coreml-int8", "--opset", "17"], capsys, run_dir,
                   "does not take --opset")
    assert_refused(["export", str(run_dir), "--format", "coreml", "--dynamic-batch"], capsys, run_dir,
                   "does not take --dynamic-batch")
    assert_refused(["export", str(run_dir), "--format", "coreml", "--out", str(run_dir / "m.onnx")], capsys, run_dir,
                   r"writes \.mlpackage")


def test_out_refusals_for_a_folder_artefact(run_dir, tmp_path, capsys):
    """A folder at --out that edgeiqa did not write is kept (also with its files' names looking like a package), an
    edgeiqa folder of another kind is never replaced, and a file where the package goes is not one of ours."""
    from edgeiqa.outsafe import mark_dir

    foreign = tmp_path / "theirs.mlpackage"
    foreign.mkdir()
    (foreign / "Manifest.json").write_text("{}")
    assert_refused(["export", str(run_dir), "--format", "coreml", "--out", str(foreign)], capsys, tmp_path,
                   "exists and edgeiqa did not write it")
    a_file = tmp_path / "file.mlpackage"
    a_file.write_bytes(b"not a folder")
    assert_refused(["export", str(run_dir), "--format", "coreml", "--out", str(a_file)], capsys, tmp_path,
                   "exists and edgeiqa did not write it")
    other = mark_dir(tmp_path / "data.mlpackage", "labelset")
    assert_refused(["export", str(run_dir), "--format", "coreml", "--out", str(other), "--force"], capsys, tmp_path,
                   "is an edgeiqa labelset folder")


def test_save_package_never_leaves_a_half_written_package(tmp_path):
    """The package is saved beside the target and swapped in whole: a save that fails midway leaves the old package
    as it was and no scratch folder behind."""
    from edgeiqa.export.coreml_export import save_package
    from edgeiqa.provenance import sha256_tree

    out = tmp_path / "m.mlpackage"
    _fake_package(out, b"old spec")
    before = sha256_tree(out)

    class FailsHalfway:
        def save(self, path):
            _fake_package(__import__("pathlib").Path(path), b"half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_package(FailsHalfway(), out)
    assert sha256_tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]

    class Saves:
        def save(self, path):
            _fake_package(__import__("pathlib").Path(path), b"new spec")

    save_package(Saves(), out)
    assert (out / "Data" / "com.apple.CoreML" / "model.mlmodel").read_bytes() == b"new spec"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]


# ------------------------------------------------------------------------------------------ refusals


def test_missing_extra_export_is_one_line_exit_2(run_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)
    for fmt in ("coreml", "coreml-int8"):
        line = assert_refused(["export", str(run_dir), "--format", fmt], capsys, run_dir, EXTRA)
        assert "needs coremltools" in line


def test_missing_extra_bench_row(run_dir, photos, tmp_path, monkeypatch):
    from edgeiqa.bench import BenchOptions, run_bench

    monkeypatch.setitem(sys.modules, "coremltools", None)
    data = write_photo_csv(tmp_path / "d.csv", photos[:3], scenes=1)
    report = run_bench(run_dir, BenchOptions(formats=["coreml-int8"], data=f"csv:{data}", runs=1, warmup=0, threads=1))
    (row,) = report["rows"]
    assert row["status"] == "unavailable" and "pip install 'edgeiqa[coreml]'" in row["reason"]


def test_corrupt_or_foreign_package_is_one_line_naming_it(photos, tmp_path, capsys):
    """Checked without coremltools (the spec's protobuf is read directly), on any machine, before anything runs."""
    empty = tmp_path / "empty.mlpackage"
    empty.mkdir()
    a_file = tmp_path / "file.mlpackage"
    a_file.write_bytes(b"PK\x03\x04 not a folder")
    bad_manifest = tmp_path / "manifest.mlpackage"
    bad_manifest.mkdir()
    (bad_manifest / "Manifest.json").write_text("{not json")
    no_model = _fake_package(tmp_path / "nomodel.mlpackage", b"")
    (no_model / "Data" / "com.apple.CoreML" / "model.mlmodel").unlink()
    junk = _fake_package(tmp_path / "junk.mlpackage", bytes(range(256)) * 4)
    # a well-formed spec (description with an input and an output) that carries no edgeiqa metadata
    feature = lambda name: b"\x0a" + bytes([len(name)]) + name.encode()  # noqa: E731 - FeatureDescription.name
    desc = b"".join(b"\x0a" + bytes([len(feature("x"))]) + feature("x") for _ in range(1))
    desc += b"\x52" + bytes([len(feature("y"))]) + feature("y")  # field 10 (output)
    foreign = _fake_package(tmp_path / "foreign.mlpackage", b"\x08\x07\x12" + bytes([len(desc)]) + desc)
    cases = ((empty, "not a Core ML package"), (a_file, "not a Core ML package"), (bad_manifest, "Manifest.json"),
             (no_model, "root model .* is missing"), (junk, "model spec .* unreadable"),
             (foreign, "without edgeiqa metadata"))
    for model, match in cases:
        line = assert_refused(["score", str(photos[0]), "--model", str(model), "--no-progress"], capsys, tmp_path, match)
        assert str(model) in line
    # the package and its sidecar are inputs of `score`: --out never writes over or into them
    for out, match in ((junk.with_suffix(".json"), "also an input"), (junk / "scores.csv", "lies inside")):
        assert_refused(["score", str(photos[0]), "--model", str(junk), "--out", str(out), "--no-progress"], capsys,
                       tmp_path, match)


# ------------------------------------------------------------------------------------------ export (coremltools)


@pytest.mark.slow  # coremltools import + torch.export + conversion (~1-2 min on a busy 2-core machine)
@needs_coremltools
def test_fp16_package_spec_metadata_and_size(fp16, run_dir):
    from edgeiqa.export.coreml_export import import_coremltools, program_of, read_description
    from edgeiqa.provenance import sha256_tree

    ct = import_coremltools()
    pkg = fp16.path
    assert pkg.name == "student-coreml.mlpackage" and pkg.is_dir() and (pkg / "Manifest.json").is_file()
    # the spec as coremltools reads it: one input per view (float32 NCHW, batch 1), output `score`, ML program
    mlmodel = ct.models.MLModel(str(pkg), skip_model_load=True)
    spec = mlmodel.get_spec()
    assert spec.WhichOneof("Type") == "mlProgram" and spec.specificationVersion >= 7  # 7 = iOS 16
    (inp,) = spec.description.input
    assert inp.name == "resize" and list(inp.type.multiArrayType.shape) == [1, 3, *SIZE]
    # renamed in the ML program too (torch.export names its inputs after forward's argument), or Core ML would not load it
    assert [i.name for i in spec.mlProgram.functions["main"].inputs] == ["resize"]
    assert inp.type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert [o.name for o in spec.description.output] == ["score"]
    # the same document in the package's user_defined_metadata and in the sidecar, as for ONNX
    inside = json.loads(mlmodel.user_defined_metadata["edgeiqa"])
    side = json.loads(fp16.sidecar.read_text())
    for key in ("views", "normalization", "logistic", "gmacs", "parity", "input_order", "source", "coreml"):
        assert inside[key] == side[key], key
    assert inside["format"] == "coreml" and inside["precision"] == "fp16"
    # edgeiqa's own protobuf reader (what the runtime uses, without coremltools) agrees with coremltools
    desc = read_description(pkg / "Data" / "com.apple.CoreML" / "model.mlmodel")
    assert desc["inputs"] == {"resize": [1, 3, *SIZE]} and desc["outputs"] == ["score"]
    assert desc["user_defined_metadata"] == dict(mlmodel.user_defined_metadata)
    # the folder artefact: sha256 over its files, size on disk = all of them, listed as one artefact
    assert side["artifact_sha256"] == sha256_tree(pkg) and side["artifact"] == pkg.name
    summary = fp16.summary()
    assert summary["files"] == [str(pkg)]
    assert summary["size_bytes"] == sum(p.stat().st_size for p in _tree(pkg))
    # weights stored as float16; GMACs recounted on the ONNX graph traced from the same student
    weights = program_of(pkg)
    from edgeiqa.export.coreml_export import weight_summary

    w = weight_summary(weights)
    assert w["int8_tensors"] == 0 and w["float_dtypes"] == ["float16"] and w["float_elements"] > 3e6
    assert fp16.metadata["gmacs"]["match"] is True
    assert fp16.metadata["size"]["ratio_to_fp32"] < 0.6  # float16 weights: about half the float32 ONNX


@pytest.mark.slow
@needs_coremltools
@off_macos
def test_parity_says_not_runnable_never_passes(fp16, capsys, run_dir, tmp_path):
    par = fp16.parity
    assert par["ok"] is None and "not runnable on Linux" in par["skipped"] and "macOS" in par["skipped"]
    assert par["n_images"] == 0 and "srcc" not in par
    from edgeiqa.cli.export_cmd import _fmt_parity

    assert _fmt_parity(par).startswith("parity: skipped (not runnable on Linux")


@pytest.mark.slow
@needs_coremltools
@off_macos
def test_export_cli_reports_the_converter_and_a_skipped_parity(run_dir, photos, tmp_path, capsys):
    """exit 0 (exported, GMACs checked) with parity reported as skipped, not passed; the converter named."""
    from edgeiqa.cli.main import main

    out = tmp_path / "cli.mlpackage"
    capsys.readouterr()
    assert main(["export", str(run_dir), "--format", "coreml", "--out", str(out), "--imgs", "4"]) == 0
    text = capsys.readouterr().out
    assert "converter: torch.export -> coremltools.convert" in text and "target iOS16" in text, text
    assert "parity: skipped (not runnable on Linux" in text and "exporter: dynamo" not in text, text
    assert out.is_dir() and out.with_suffix(".json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.json", "cli.mlpackage"]  # no scratch folder left


@pytest.mark.slow
@needs_coremltools
def test_int8_package_has_int8_weights(int8, fp16):
    from edgeiqa.export.coreml_export import import_coremltools, program_of, weight_summary

    ct = import_coremltools()
    w = weight_summary(program_of(int8.path))
    threshold = int8.metadata["quantization"]["weight_threshold"]
    # every weight of at least `weight_threshold` elements is int8 (dequantised by a constexpr op); what stays
    # float16 is small (biases, norms, the stem's and small depthwise kernels)
    assert w["int8_tensors"] >= 40 and w["int8_elements"] > 3e6, w
    assert w["largest_float_tensor"] < threshold and w["float_elements"] < 0.05 * w["int8_elements"], w
    assert w["dequantize_ops"] and all(op.startswith("constexpr_") for op in w["dequantize_ops"])
    assert int8.metadata["coreml"]["weights"] == w and int8.metadata["precision"] == "int8"
    assert int8.metadata["size"]["bytes"] < 0.6 * fp16.metadata["size"]["bytes"]  # int8 vs float16 weights
    meta = json.loads(ct.models.MLModel(str(int8.path), skip_model_load=True).user_defined_metadata["edgeiqa"])
    assert meta["format"] == "coreml-int8" and meta["quantization"]["weights"].startswith("int8")


@pytest.mark.slow
@needs_coremltools
def test_rerun_replaces_its_own_package_only(fp16, run_dir, tmp_path):
    from edgeiqa.export import metadata as md
    from edgeiqa.export.exporter import check_output
    from edgeiqa.export.formats import get_format
    from edgeiqa.outsafe import OutputRefused

    f, ckpt = get_format("coreml"), run_dir / "student.pt"
    assert md.is_own_artefact(fp16.path)
    assert check_output(f, run_dir, ckpt, fp16.path) == fp16.path  # a rerun replaces its own export
    copy = tmp_path / "edited.mlpackage"
    shutil.copytree(fp16.path, copy)
    shutil.copy(fp16.sidecar, copy.with_suffix(".json"))
    (copy / "extra.txt").write_text("a user's file inside the package")
    assert not md.is_own_artefact(copy)  # the sidecar's sha256 no longer matches the folder
    with pytest.raises(OutputRefused, match="exists and edgeiqa did not write it"):
        check_output(f, run_dir, ckpt, copy)


@pytest.mark.slow
@needs_coremltools
def test_an_op_core_ml_cannot_express_is_named_with_its_layer(tmp_path):
    """A student layer coremltools has no conversion for: one error naming the op and the layer, nothing written."""
    import torch

    from edgeiqa.errors import EdgeIQAError
    from edgeiqa.export.coreml_export import convert

    class Histogram(torch.nn.Module):
        def forward(self, y):
            return torch.histc(y, bins=4)[:1]

    class Student(torch.nn.Module):
        view_names = ["resize"]

        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 4, 3)
            self.head = torch.nn.Sequential(torch.nn.Identity(), Histogram())

        def forward(self, x):
            return self.head(self.stem(x))

    out = tmp_path / "m.mlpackage"
    with pytest.raises(EdgeIQAError, match=r"cannot convert the student: .*histc.* in layer 'head\.1'"):
        convert(Student().eval(), [ViewSpec("resize", (16, 16))], out, int8=False)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ runtime


@pytest.mark.slow
@needs_coremltools
@off_macos
def test_score_and_eval_say_macos_only(fp16, photos, tmp_path, capsys):
    line = assert_refused(["score", str(photos[0]), "--model", str(fp16.path), "--no-progress"], capsys, tmp_path,
                          "Core ML models run only on macOS")
    assert str(fp16.path) in line
    data = write_photo_csv(tmp_path / "d.csv", photos[:3], scenes=1)
    assert_refused(["eval", "--model", str(fp16.path), "--data", f"csv:{data}"], capsys, tmp_path,
                   "Core ML models run only on macOS")
    # what reaches the terminal from a fresh process: one line, nothing of coremltools or torch imported
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgeiqa", "score", str(photos[0]), "--model",
                        str(fp16.path), "--no-progress"], capture_output=True, text=True, timeout=300)
    err = [ln for ln in r.stderr.splitlines() if not ln.startswith("import time:")]
    imported = r.stderr
    assert r.returncode == 2 and len(err) == 1 and "run only on macOS" in err[0], r.stderr[-2000:]
    assert "coremltools" not in imported and " torch" not in imported


@pytest.mark.slow
@needs_coremltools
@off_macos
def test_bench_row_says_not_runnable(fp16, run_dir, photos, tmp_path):
    """bench reuses the export (a folder artefact, matched by its tree sha256) and reports its size, never a time."""
    from edgeiqa.bench import BenchOptions, run_bench

    data = write_photo_csv(tmp_path / "d.csv", photos[:3], scenes=1)
    report = run_bench(run_dir, BenchOptions(formats=["coreml"], data=f"csv:{data}", runs=1, warmup=0, threads=1))
    (row,) = report["rows"]
    assert row["status"] == "unavailable" and "not runnable on Linux" in row["reason"], row
    assert row["reused"] is True and row["p50_ms"] is None and row["srcc"] is None
    assert row["size_mb"] == pytest.approx(sum(p.stat().st_size for p in _tree(fp16.path)) / 1e6, abs=1e-3)


@pytest.mark.slow
@needs_coremltools
@needs_macos
def test_scores_match_torch_on_macos(fp16, int8, run_dir, photos):  # pragma: no cover - macOS only
    from edgeiqa.runtime import Scorer

    ref = np.array([r.score for r in Scorer.load(run_dir).score(photos)])
    for res in (fp16, int8):
        assert res.parity["ok"] is True and res.parity["srcc"] >= 0.99, res.parity
        got = np.array([r.score for r in Scorer.load(res.path).score(photos)])
        from scipy.stats import spearmanr

        assert spearmanr(ref, got)[0] >= 0.99


def test_runtime_module_imports_no_torch():
    """The Core ML runner's module (what `score` imports for a .mlpackage) needs numpy only."""
    code = ("import sys\n"
            "import edgeiqa.export.coreml_export, edgeiqa.runtime.backends\n"
            "bad = [m for m in ('torch', 'coremltools', 'onnx', 'scipy') if m in sys.modules]\n"
            "assert not bad, bad\n"
            "print('clean')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr
