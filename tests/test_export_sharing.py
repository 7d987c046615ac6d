"""The views of a student share one backbone: every exported graph stores each weight once (issue 9,
defect 10: the int8 artefact stored one int8 copy of the backbone per view)."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeiqa.data.views import ViewSpec
from helpers import skimage_photos

pytestmark = pytest.mark.usefixtures("one_thread")

TWO_VIEWS = [ViewSpec("resize", (64, 64)), ViewSpec("fragments", (56, 56), 7)]


def _weights(path, data_type) -> list:
    """Initializers of `data_type` with rank >= 2: the convolution weights (not scales or zero points)."""
    model = onnx.load(str(path))
    return [i for i in model.graph.initializer if i.data_type == data_type and len(i.dims) >= 2]


def _run(path, batches):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, b)[0] for b in batches])


@pytest.fixture(scope="module")
def two_view_int8(tmp_path_factory):
    """One two-view student exported to float32 ONNX (default exporter), quantised with and without sharing."""
    from edgeiqa.export import parity as par
    from edgeiqa.export.onnx_export import export_onnx
    from edgeiqa.export.quantize import quantize_int8
    from edgeiqa.students import create_student

    root = tmp_path_factory.mktemp("shared")
    torch.manual_seed(0)
    model = create_student("efficientnet_lite0", TWO_VIEWS, hidden=32).drop_training_heads().eval()
    fp32 = root / "fp32.onnx"
    export_onnx(model, TWO_VIEWS, fp32)
    images, _ = par.load_images(skimage_photos(12), None, 12, par.CALIB_SPLITS)
    batches = par.view_batches(images, TWO_VIEWS)
    shared = quantize_int8(fp32, root / "int8.onnx", batches)
    unshared = quantize_int8(fp32, root / "int8-unshared.onnx", batches, share_weights=False)
    return {"root": root, "fp32": fp32, "batches": batches, "shared": shared, "unshared": unshared}


@pytest.mark.slow
def test_int8_stores_each_backbone_weight_once(two_view_int8):
    root = two_view_int8["root"]
    fp32 = _weights(two_view_int8["fp32"], onnx.TensorProto.FLOAT)
    assert len(fp32) == len({(tuple(i.dims), i.raw_data) for i in fp32})  # the float graph shares already
    q = _weights(root / "int8.onnx", onnx.TensorProto.INT8)
    assert len(q) == len({(tuple(i.dims), i.raw_data) for i in q}), "an int8 weight is stored twice"
    convs = [n for n in onnx.load(str(root / "int8.onnx")).graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 * len(q)  # two views, one int8 copy of each weight
    assert two_view_int8["shared"]["shared_initializers"] > 0
    # the comparison is not vacuous: without sharing the same quantiser stores a copy per view
    assert len(_weights(root / "int8-unshared.onnx", onnx.TensorProto.INT8)) == len(convs)


@pytest.mark.slow
def test_shared_int8_is_smaller_with_the_same_scores(two_view_int8):
    root = two_view_int8["root"]
    size = {p: (root / p).stat().st_size for p in ("fp32.onnx", "int8.onnx", "int8-unshared.onnx")}
    assert size["int8.onnx"] < 0.8 * size["int8-unshared.onnx"]
    assert size["int8.onnx"] / size["fp32.onnx"] < 0.45, size
    batches = two_view_int8["batches"]
    shared, unshared, ref = (_run(root / p, batches) for p in ("int8.onnx", "int8-unshared.onnx", "fp32.onnx"))
    assert np.abs(shared - unshared).max() <= 1e-6  # sharing changes the file, not the model
    assert np.all(np.isfinite(shared)) and np.abs(shared - ref).max() < 0.5


def test_identical_initializers_are_shared_on_a_hand_built_graph():
    """Two Convs with equal weights under different names (what BatchNorm folding leaves per view)."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeiqa.export.onnx_export import share_identical_initializers

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    other = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w_view_a"), numpy_helper.from_array(w.copy(), "w_view_b"),
             numpy_helper.from_array(other, "w_other")]
    g = helper.make_graph(
        [helper.make_node("Conv", ["a", "w_view_a"], ["ya"], pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["b", "w_view_b"], ["yb"], pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["b", "w_other"], ["yc"], pads=[1, 1, 1, 1]),
         helper.make_node("Sum", ["ya", "yb", "yc"], ["y"])],
        "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {n: rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for n in ("a", "b")}
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert share_identical_initializers(model) == 1
    assert sorted(i.name for i in model.graph.initializer) == ["w_other", "w_view_a"]
    assert [n.input[1] for n in model.graph.node[:3]] == ["w_view_a", "w_view_a", "w_other"]
    onnx.checker.check_model(model)
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert np.array_equal(before, after)
    assert share_identical_initializers(model) == 0  # nothing left to share
    assert collections.Counter(n.op_type for n in model.graph.node)["Conv"] == 3


def test_untied_views_score_the_same_with_one_backbone_per_view():
    """untie_views() (for ExecuTorch int8, whose XNNPACK delegate will not load a quantised weight shared by two
    views): the same scores to the bit, one backbone module per view, the first view keeping the original."""
    import copy

    from edgeiqa.students import create_student

    torch.manual_seed(0)
    student = create_student("efficientnet_lite0", TWO_VIEWS).drop_training_heads().eval()
    views = (torch.rand(2, 3, 64, 64), torch.rand(2, 3, 56, 56))
    untied = copy.deepcopy(student).untie_views()
    with torch.no_grad():
        assert torch.equal(student(*views), untied(*views))
    first, second = untied.view_backbones
    assert first is untied.backbone and second is not first
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(first.parameters(), second.parameters()))
    one = create_student("efficientnet_lite0", TWO_VIEWS[:1]).untie_views()
    assert one.view_backbones is None  # one view: nothing to untie


def test_executorch_ladder_groups_each_backbone_layer_across_views():
    """The int8 ladder keeps the first k backbone layers float in every view: the exported graph of an untied
    two-view student has each convolution twice, grouped into one layer per backbone convolution, input first."""
    import copy

    from edgeiqa.export.executorch_export import _export, conv_layers, conv_nodes, head_nodes
    from edgeiqa.students import create_student

    student = create_student("efficientnet_lite0", TWO_VIEWS).drop_training_heads().eval()
    graph = _export(copy.deepcopy(student).untie_views(), TWO_VIEWS).module().graph
    convs = conv_nodes(graph, head_nodes(graph))
    layers = conv_layers(graph, convs)
    assert len(layers) * 2 == len(convs) and all(len(layer) == 2 for layer in layers)
    assert sorted(n for layer in layers for n in layer) == sorted(convs)
    one = _export(create_student("efficientnet_lite0", TWO_VIEWS[:1]).drop_training_heads().eval(), TWO_VIEWS[:1])
    assert len(conv_layers(one.module().graph, conv_nodes(one.module().graph, head_nodes(one.module().graph)))) == len(layers)
