"""Export: formats table, ONNX graph contract, parity vs torch on real photos, GMAC recount, int8, fp16,
TensorRT gating. One EfficientNet-Lite0 student (shipped ImageNet backbone, untrained head) at 64x64,
exported once per format per module."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
import torch

from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from helpers import make_run, skimage_photos

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = (64, 64)


@pytest.fixture(scope="module")
def photos():
    return skimage_photos(16)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"), [ViewSpec("resize", SIZE)])


@pytest.fixture(scope="module")
def onnx_export(run_dir, photos):
    from edgeiqa.export import export_model

    return export_model(run_dir, "onnx", calib=photos, imgs=16, dynamic_batch=True)


@pytest.fixture(scope="module")
def int8_export(run_dir, photos):
    from edgeiqa.export import export_model

    return export_model(run_dir, "onnx-int8", calib=photos, imgs=16)


# ------------------------------------------------------------------------------------------ formats table


def test_formats_table_rows():
    from edgeiqa.export.formats import FORMATS, backend_for_path

    assert list(FORMATS) == ["torch", "onnx", "onnx-fp16", "onnx-int8", "openvino", "openvino-int8", "coreml",
                             "coreml-int8", "litert", "litert-fp16", "litert-int8", "executorch", "executorch-int8",
                             "tensorrt"]
    assert FORMATS["tensorrt"].suffix == ".engine" and FORMATS["tensorrt"].device == "GPU"
    assert backend_for_path("m.onnx") == "onnxruntime"
    assert backend_for_path("m.engine") == "tensorrt"
    assert backend_for_path("m.xml") == "openvino"
    assert backend_for_path("m.mlpackage") == "coreml"
    assert backend_for_path("m.tflite") == "litert"
    assert backend_for_path("m.pte") == "executorch"
    assert backend_for_path("m.pt") == "torch"
    with pytest.raises(EdgeIQAError, match="suffix"):
        backend_for_path("m.mlmodel")


def test_every_format_has_one_export_function():
    import subprocess

    from edgeiqa.export import EXPORTERS, FORMATS
    from edgeiqa.export.exporter import exports

    assert set(EXPORTERS) == set(FORMATS) and all(callable(e.fn) for e in EXPORTERS.values())
    with pytest.raises(ValueError, match="export function 'onnx' registered twice"):
        exports("onnx")(lambda job: None)
    with pytest.raises(KeyError, match="not a row of the formats table"):
        exports("tflite")
    # the package stays import-light: the runtime reads the formats table without the training stack
    code = "import sys, edgeiqa.export; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize("typo, near", [("onxx", "onnx"), ("onnx-int9", "onnx-int8"), ("tensorrtt", "tensorrt"),
                                        ("ONNX-FP16", None)])
def test_misspelt_format_suggests_closest(typo, near):
    from edgeiqa.export.formats import get_format

    if near is None:  # case does not matter
        assert get_format(typo).name == "onnx-fp16"
        return
    with pytest.raises(EdgeIQAError, match=f"did you mean '{near}'"):
        get_format(typo)


def test_flag_a_format_does_not_take(run_dir):
    from edgeiqa.export import export_model

    with pytest.raises(EdgeIQAError, match="does not take --int8.*onnx-int8"):
        export_model(run_dir, "onnx", int8=True)
    with pytest.raises(EdgeIQAError, match="'torch' does not take --dynamic-batch"):
        export_model(run_dir, "torch", dynamic_batch=True)
    with pytest.raises(EdgeIQAError, match="does not take --workspace.*tensorrt"):
        export_model(run_dir, "onnx-int8", workspace=2)


def test_cli_flag_error_and_misspelt_format(run_dir, capsys):
    from edgeiqa.cli.main import main

    assert main(["export", str(run_dir), "--format", "onnx", "--max-batch", "4"]) == 2
    assert "does not take --max-batch" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--format", "onnxx"]) == 2
    assert "did you mean 'onnx'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ ONNX


def test_onnx_parity_on_16_real_photos(onnx_export, run_dir, photos):
    par = onnx_export.parity
    assert par["n_images"] == 16 and par["ok"]
    assert par["max_abs_diff"] <= 1e-4
    assert par["srcc"] is not None and par["srcc"] > 0.999
    # end to end through the runtime: onnxruntime vs the torch backend on the same 16 photos
    from edgeiqa.runtime import Scorer

    a = Scorer.load(onnx_export.path).score(photos, batch_size=8)
    b = Scorer.load(run_dir).score(photos, batch_size=8)
    sa, sb = np.array([r.score for r in a]), np.array([r.score for r in b])
    assert np.all(np.isfinite(sa)) and np.abs(sa - sb).max() <= 1e-4
    assert np.ptp(sb) > 1e-3  # the scores differ between photos: the check is not vacuous


def test_onnx_graph_contract(onnx_export):
    model = onnx.load(str(onnx_export.path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["resize"]
    assert [o.name for o in model.graph.output] == ["score"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value")  # dynamic batch
    assert [d.dim_value for d in dims[1:]] == [3, *SIZE]
    assert not any("projection" in init.name for init in model.graph.initializer)
    meta = onnx_export.metadata
    assert meta["export"]["exporter"] in ("dynamo", "torchscript")
    assert meta["export"]["checker"].startswith("passed")
    assert meta["size"]["ratio_to_fp32"] == 1.0


def test_metadata_in_model_and_sidecar(onnx_export):
    from edgeiqa.export.metadata import read_metadata

    model = onnx.load(str(onnx_export.path))
    props = {p.key: p.value for p in model.metadata_props}
    inside = json.loads(props["edgeiqa"])
    side = json.loads(onnx_export.sidecar.read_text())
    assert onnx_export.sidecar == onnx_export.path.with_suffix(".json")
    for key in ("profile", "views", "input_size", "normalization", "logistic", "gmacs", "parity", "source", "versions"):
        assert key in inside, key
        assert inside[key] == side[key], key
    assert inside["profile"] == "test"
    assert inside["input_size"] == {"resize": [64, 64]}
    assert inside["normalization"]["mean"] == [0.485, 0.456, 0.406]
    assert len(inside["source"]["sha256"]) == 64
    assert {"torch", "onnx", "onnxruntime", "edgeiqa"} <= set(inside["versions"])
    assert side["artifact_sha256"] and read_metadata(onnx_export.path)["format"] == "onnx"


def test_gmacs_recount_matches_card(onnx_export):
    g = onnx_export.metadata["gmacs"]
    assert g["match"] is True, g
    assert g["rel_diff"] <= 0.01 and not g["uncounted_nodes"]
    assert g["onnx_graph_macs"] > 0.9 * g["card"]  # the convolutions are most of it


def test_count_onnx_gmacs_by_hand():
    """Conv 3->8, 3x3, stride 1, pad 1 on 16x16 + Gemm 8->4 after global pooling: exact MACs."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeiqa.export.metadata import count_onnx_gmacs

    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    fc = numpy_helper.from_array(np.zeros((4, 8), np.float32), "fc")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("GlobalAveragePool", ["c"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, fc])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    c = count_onnx_gmacs(m, {"x": [2, 3, 16, 16]})
    conv = 2 * 8 * 16 * 16 * 3 * 3 * 3
    assert c["by_op"]["Conv"] * 1e9 == pytest.approx(conv)
    assert c["by_op"]["Gemm"] * 1e9 == pytest.approx(2 * 8 * 4)
    assert c["by_op"]["GlobalAveragePool"] * 1e9 == pytest.approx(2 * 8 * 16 * 16)
    assert c["mac_gmacs"] * 1e9 == pytest.approx(conv + 64)


def test_exporter_fallback_is_recorded(run_dir, tmp_path, monkeypatch):
    from edgeiqa.export import onnx_export
    from edgeiqa.students import load_student

    def broken(*a, **k):
        raise RuntimeError("simulated dynamo failure")

    monkeypatch.setattr(onnx_export, "_export_dynamo", broken)
    model, payload = load_student(run_dir)
    views = [ViewSpec.from_dict(v) for v in payload["views"]]
    info = onnx_export.export_onnx(model, views, tmp_path / "m.onnx")
    assert info["exporter"] == "torchscript"
    assert "simulated dynamo failure" in info["exporter_fallback_reason"]
    with pytest.raises(EdgeIQAError, match="dynamo ONNX export failed"):
        onnx_export.export_onnx(model, views, tmp_path / "m2.onnx", exporter="dynamo")


def test_full_view_has_dynamic_height_width(tmp_path):
    """`full` views keep native resolution: the graph takes any H, W up to the cap and matches torch."""
    import onnxruntime as ort

    from edgeiqa.export.onnx_export import export_onnx
    from edgeiqa.students import create_student

    views = [ViewSpec("full", (64, 64))]
    model = create_student("efficientnet_lite0", views, offline_pretrained=False).eval()
    info = export_onnx(model, views, tmp_path / "full.onnx", exporter="torchscript")
    shape = info["inputs"][0]["shape"]
    assert shape[0] == 1 and isinstance(shape[2], str) and isinstance(shape[3], str)
    sess = ort.InferenceSession(str(tmp_path / "full.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 48, 40)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(sess.run(None, {"full": x})[0] - ref).max() <= 1e-4


# ------------------------------------------------------------------------------------------ int8 / fp16


def test_int8_is_quantised_runs_and_stays_correlated(int8_export, photos):
    from edgeiqa.runtime import Scorer

    model = onnx.load(str(int8_export.path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops or "QLinearConv" in ops
    q = int8_export.metadata["quantization"]
    assert q["quantized_nodes"] > 10 and q["calibration_batches"] == 16
    assert q["float_nodes"] > 0  # the pooled statistics and the head stay in float
    par = int8_export.parity
    assert par["n_images"] == 16 and par["srcc"] is not None and par["srcc"] > 0.9, par
    res = Scorer.load(int8_export.path).score(photos[:4], batch_size=2)
    assert all(r.ok and np.isfinite(r.score) for r in res)
    assert int8_export.metadata["gmacs"]["match"] is True
    size = int8_export.metadata["size"]  # against the float32 graph it was quantised from
    assert size["bytes"] < size["fp32_onnx_bytes"] and size["ratio_to_fp32"] == pytest.approx(
        size["bytes"] / size["fp32_onnx_bytes"], abs=1e-4)
    assert size["ratio_to_fp32"] < 0.5


@pytest.mark.slow
def test_parity_asks_64_images_for_an_srcc_bar_and_16_for_a_max_diff_bar(run_dir, tmp_path):
    """Without --imgs, a row judged by SRCC (fp16, int8) asks its parity check for 64 images (on 16, each swapped
    pair of near-tied photos moves the SRCC by 0.003); a row judged by max |diff| asks for 16."""
    from edgeiqa.export import export_model
    from edgeiqa.export.parity import default_parity_images

    assert default_parity_images(0.99) == 64 and default_parity_images(None) == 16
    photos = skimage_photos(20)
    fp16 = export_model(run_dir, "onnx-fp16", calib=photos, out=tmp_path / "m-fp16.onnx")
    fp32 = export_model(run_dir, "onnx", calib=photos, out=tmp_path / "m.onnx")
    assert fp16.parity["images"]["requested"] == 64 and fp16.parity["n_images"] == 20  # all 20 given, fewer than 64
    assert fp32.parity["images"]["requested"] == 16 and fp32.parity["n_images"] == 16


def test_int8_writes_nothing_into_the_working_directory(photos, tmp_path, monkeypatch):
    """onnxruntime's symbolic shape inference fails on the TorchScript fragments graph and used to leave
    sym_shape_infer_temp.onnx and a 14 MB .data file in the user's current directory."""
    from edgeiqa.export import parity as par
    from edgeiqa.export.onnx_export import export_onnx
    from edgeiqa.export.quantize import quantize_int8
    from edgeiqa.students import create_student

    views = [ViewSpec("fragments", (56, 56), 7)]
    model = create_student("efficientnet_lite0", views, offline_pretrained=False, hidden=8).drop_training_heads().eval()
    export_onnx(model, views, tmp_path / "f.onnx", exporter="torchscript")
    images, _ = par.load_images(photos[:2], None, 2, par.CALIB_SPLITS)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    info = quantize_int8(tmp_path / "f.onnx", tmp_path / "q.onnx", par.view_batches(images, views))
    assert list(cwd.iterdir()) == []
    assert info["preprocess"].startswith("quant_pre_process")  # BatchNorm still folded without symbolic shapes
    assert info["quantized_nodes"] > 10


def test_fp16_keeps_float32_io(run_dir, photos, tmp_path):
    from edgeiqa.export import export_model

    res = export_model(run_dir, "onnx-fp16", calib=photos[:8], imgs=8, out=tmp_path / "half.onnx", exporter="torchscript")
    model = onnx.load(str(res.path))
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in list(model.graph.input) + list(model.graph.output))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert res.parity["srcc"] > 0.99 and res.parity["max_abs_diff"] < 1e-2


def test_torch_format_is_the_checkpoint_with_sidecar(run_dir, tmp_path, capsys):
    from edgeiqa.cli.main import main
    from edgeiqa.export import export_model
    from edgeiqa.runtime import Scorer

    res = export_model(run_dir, "torch", out=tmp_path / "s.pt")
    assert res.path.read_bytes() == (run_dir / "student.pt").read_bytes()
    assert json.loads(res.sidecar.read_text())["format"] == "torch"
    assert res.metadata["size"] is None  # no ONNX graph to compare with
    assert Scorer.load(res.path).backend.name == "torch"
    assert main(["export", str(run_dir), "--format", "torch", "--out", str(tmp_path / "t.pt"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "torch" and doc["ok"] is True and doc["sidecar"].endswith("t.json")


def test_foreign_out_is_kept_unless_force_and_own_exports_are_replaced(run_dir, tmp_path, capsys):
    """issue 21 item 3: an existing file (or the .json beside it) is replaced only when edgeiqa wrote it."""
    from edgeiqa.cli.main import main

    out, side = tmp_path / "existing.pt", tmp_path / "existing.json"
    out.write_bytes(b"the user's file")
    side.write_text('{"mine": true}')
    argv = ["export", str(run_dir), "--format", "torch", "--out", str(out)]
    assert main(argv) == 2
    assert "did not write it; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"the user's file" and side.read_text() == '{"mine": true}'
    assert main([*argv, "--force"]) == 0
    assert out.read_bytes() == (run_dir / "student.pt").read_bytes() and json.loads(side.read_text())["format"] == "torch"
    assert main(argv) == 0  # edgeiqa's own export now: replaced without --force
    with open(out, "ab") as f:  # changed after export: no longer what edgeiqa wrote
        f.write(b"edit")
    assert main(argv) == 2
    assert "did not write it" in capsys.readouterr().err


def test_only_onnx_models_with_edgeiqa_metadata_are_own(onnx_export, run_dir, tmp_path):
    from onnx import TensorProto, helper

    from edgeiqa.export.exporter import check_output
    from edgeiqa.export.formats import get_format
    from edgeiqa.export.metadata import is_own_artefact, is_own_sidecar
    from edgeiqa.outsafe import OutputRefused, folder_kind

    assert is_own_artefact(onnx_export.path) and is_own_sidecar(onnx_export.sidecar)
    assert folder_kind(run_dir / "export") == "export"  # the default folder is marked as edgeiqa's
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", io[:1], io[1:])),
              str(foreign))
    (tmp_path / "junk.onnx").write_bytes(b"\x00not protobuf")
    assert not is_own_artefact(foreign) and not is_own_artefact(tmp_path / "junk.onnx")
    assert not is_own_sidecar(tmp_path / "junk.onnx")
    f, ckpt = get_format("onnx"), run_dir / "student.pt"
    assert check_output(f, run_dir, ckpt, onnx_export.path) == onnx_export.path  # a rerun replaces its own export
    with pytest.raises(OutputRefused, match="did not write it"):
        check_output(f, run_dir, ckpt, foreign)
    assert check_output(f, run_dir, ckpt, foreign, force=True) == foreign


def test_simplifier_used_only_when_installed(monkeypatch):
    import types

    from edgeiqa.export.onnx_export import _simplify

    monkeypatch.setitem(sys.modules, "onnxslim", None)  # None in sys.modules = not importable
    monkeypatch.setitem(sys.modules, "onnxsim", None)
    model = object()
    assert _simplify(model)[:2] == (model, None)
    fake = types.SimpleNamespace(__version__="9.9", slim=lambda m: ("slimmed", m))
    monkeypatch.setitem(sys.modules, "onnxslim", fake)
    out, name, note = _simplify(model)
    assert out == ("slimmed", model) and name == "onnxslim 9.9" and note is None


def test_cli_export_prints_parity_and_gmacs(run_dir, photos, tmp_path, capsys):
    from edgeiqa.cli.main import main

    folder = tmp_path / "calib"
    folder.mkdir()
    for p in photos[:6]:
        (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "cli.onnx"
    rc = main(["export", str(run_dir), "--format", "onnx", "--exporter", "torchscript", "--calib", f"folder:{folder}",
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "parity vs torch on 6 images" in text and "OK" in text
    assert "GMACs: exported graph" in text and "-> OK" in text
    assert out.exists() and out.with_suffix(".json").exists()


# ------------------------------------------------------------------------------------------ TensorRT

from edgeiqa.export.tensorrt_export import tensorrt_missing  # noqa: E402

_TRT_MISSING = tensorrt_missing()


@pytest.mark.skipif(not _TRT_MISSING, reason="TensorRT and a GPU are present: the gate is not exercised")
def test_tensorrt_gate_names_what_is_missing(run_dir):
    from edgeiqa.export import export_model
    from edgeiqa.runtime import Scorer

    with pytest.raises(EdgeIQAError) as exc:
        export_model(run_dir, "tensorrt", fp16=True)
    assert "TensorRT export needs" in str(exc.value)
    for what in _TRT_MISSING:
        assert what in str(exc.value)
    fake = run_dir / "fake.engine"
    fake.write_bytes(b"not an engine")
    with pytest.raises(EdgeIQAError, match="cannot run TensorRT engine"):
        Scorer.load(fake)


@pytest.mark.skipif(bool(_TRT_MISSING), reason="TensorRT export needs " + " and ".join(_TRT_MISSING))
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_parity(run_dir, photos, tmp_path, precision):
    from edgeiqa.export import export_model
    from edgeiqa.runtime import Scorer

    flags = {"fp16": precision == "fp16", "int8": precision == "int8"}
    res = export_model(run_dir, "tensorrt", calib=photos, imgs=16, dynamic_batch=True, max_batch=4,
                       out=tmp_path / f"m-{precision}.engine", **flags)
    assert res.path.read_bytes()[:4] != b"{\"ed"  # a plain engine, metadata only in the sidecar
    assert res.sidecar.exists() and res.metadata["precision"] == precision
    assert res.parity["ok"], res.parity
    scores = Scorer.load(res.path, device="cuda").score(photos[:5], batch_size=4)
    assert all(r.ok for r in scores)


def test_a_failed_check_leaves_no_artefact_without_its_sidecar(tmp_path, photos, monkeypatch):
    """An export that wrote its artefact and then failed (here: the parity check cannot run it) removes what it wrote;
    one that failed before writing leaves an earlier artefact at --out as it was."""
    from edgeiqa.export import exporter, export_model

    run = make_run(tmp_path / "run", [ViewSpec("resize", (64, 64))])
    out = tmp_path / "m.onnx"

    def cannot_run(*a, **k):
        raise EdgeIQAError(f"{out}: not a model this runtime can load")

    monkeypatch.setattr(exporter, "_parity", cannot_run)
    with pytest.raises(EdgeIQAError, match="this runtime can load"):
        export_model(run, "onnx", calib=photos[:2], imgs=2, out=out, exporter="torchscript")
    assert not out.exists() and not out.with_suffix(".json").exists()
    monkeypatch.undo()

    first = export_model(run, "onnx", calib=photos[:2], imgs=2, out=out, exporter="torchscript")
    kept = out.read_bytes()

    def fails_before_writing(job, path):
        raise EdgeIQAError("the student has an operator ONNX cannot express")

    monkeypatch.setattr(exporter, "_fp32_onnx", fails_before_writing)
    with pytest.raises(EdgeIQAError, match="cannot express"):
        export_model(run, "onnx", calib=photos[:2], imgs=2, out=out, exporter="torchscript", force=True)
    assert out.read_bytes() == kept and first.sidecar.exists()
