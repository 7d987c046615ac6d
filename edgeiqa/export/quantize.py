"""Reduced-precision ONNX models from the float32 export.

onnx-int8: onnxruntime static quantisation in QDQ format. Weights int8 per output channel (depthwise
convolutions lose too much with one scale per tensor), activations uint8 with min/max ranges calibrated
on real images passed through the same views as training and the runtime (`ViewCalibrationReader`).
The graph is first optimised by `quant_pre_process` (BatchNorm folded, so activations are quantised after
the ReLU/clip, not before). The backbone (every node with a 4-D output) is quantised; the pooled mean/std
statistics and the MLP head (nodes with outputs of rank < 4) stay in float, as a variance computed in
int8 would flatten the very texture energy the score depends on (docs/benchmarks.md, "Why the defaults").
Folding BatchNorm writes one folded weight per Conv node, i.e. one copy per view of the shared backbone;
identical initializers are shared again before quantising, so each weight is stored once in int8 (scores
bit-identical to the unshared model).

onnx-fp16: weights and compute in float16 with inputs and output kept float32 (so the runtime feeds the
same arrays), via onnxconverter-common when installed, else the same converter shipped in onnxruntime.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from edgeiqa.errors import EdgeIQAError



def head_nodes(model_path: str | Path) -> list[str]:
    """Nodes after the backbone: outputs of rank < 4 (pooled statistics, MLP head). Kept in float."""
    import onnx

    model = onnx.load(str(model_path))
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - without ranks nothing is excluded
        return []
    g = model.graph
    rank = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in list(g.value_info) + list(g.output) + list(g.input)
            if vi.type.tensor_type.HasField("shape")}
    return [n.name for n in g.node if n.output and n.name and rank.get(n.output[0], 4) < 4]


def _calibration_reader_class():
    from onnxruntime.quantization import CalibrationDataReader

    class ViewCalibrationReader(CalibrationDataReader):
        """Feeds pre-built view batches ({input name: float32 NCHW}) to the calibrator, once each."""

        def __init__(self, batches: list[dict[str, np.ndarray]]):
            self.batches = list(batches)
            self._it = iter(self.batches)

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter(self.batches)

        def __len__(self):
            return len(self.batches)

    return ViewCalibrationReader


def make_calibration_reader(batches: Iterable[dict[str, np.ndarray]]):
    return _calibration_reader_class()(list(batches))


def quantize_int8(fp32_path: str | Path, out_path: str | Path, batches: list[dict[str, np.ndarray]], *,
                  per_channel: bool = True, method: str = "minmax", share_weights: bool = True) -> dict:
    """Static QDQ int8 quantisation of `fp32_path` calibrated on `batches`. Returns facts for metadata.

    share_weights: store each backbone weight once however many views use it (False only to compare).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not batches:
        raise EdgeIQAError("int8 calibration needs at least one image")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise EdgeIQAError(f"unknown calibration method {method!r} (known: {', '.join(methods)})")
    out_path = Path(out_path)
    info = {"scheme": "static QDQ", "weights": "int8 per-channel" if per_channel else "int8 per-tensor",
            "activations": "uint8", "calibration": method,
            "calibration_batches": len(batches), "preprocess": None}
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        source = Path(tmp) / "pre.onnx"
        # onnxruntime's symbolic shape inference writes sym_shape_infer_temp.onnx and a .data file into
        # the working directory when it fails: run it from the scratch folder
        with contextlib.chdir(tmp):
            info["preprocess"] = _pre_process(Path(fp32_path), source)
        if not source.exists():
            shutil.copyfile(fp32_path, source)
        info["shared_initializers"] = _share_weights(source) if share_weights else 0
        keep_float = head_nodes(source)
        info["float_nodes"] = len(keep_float)
        reader = make_calibration_reader(batches)
        tmp_out = Path(tmp) / "int8.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(
                str(source), str(tmp_out), reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                nodes_to_exclude=keep_float,
                calibrate_method=methods[method],
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        tmp_out.replace(out_path)
    info["quantized_nodes"] = count_quant_nodes(out_path)
    if not info["quantized_nodes"]:
        raise EdgeIQAError(f"int8 quantisation produced no quantised nodes in {out_path}")
    return info


def _pre_process(source: Path, out: Path) -> str:
    """Shape inference + graph optimisation (BatchNorm folding) recommended before static quantisation.

    Symbolic shape inference gives up on some graphs (the fragments view exported by TorchScript); the
    optimisation is still worth having without it. Returns what ran, for the metadata."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    first = None
    for symbolic in (True, False):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quant_pre_process(str(source), str(out), skip_symbolic_shape=not symbolic)
            return "quant_pre_process" if symbolic else f"quant_pre_process without symbolic shapes ({first})"
        except Exception as exc:  # noqa: BLE001 - try without symbolic shapes, else quantise the plain export
            first = first or f"{type(exc).__name__}: {str(exc)[:200]}"
            out.unlink(missing_ok=True)
    return f"skipped ({first})"


def _share_weights(path: Path) -> int:
    """BatchNorm folding in pre-processing writes one folded weight per Conv node, i.e. one per view for
    the shared backbone; share them again so the quantiser stores each weight once."""
    import onnx

    from edgeiqa.export.onnx_export import share_identical_initializers

    model = onnx.load(str(path))
    removed = share_identical_initializers(model)
    if removed:
        onnx.save(model, str(path))
    return removed


def count_quant_nodes(path: str | Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sum(1 for n in model.graph.node if n.op_type in ("QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger"))


def _fp16_converter():
    try:
        mod = importlib.import_module("onnxconverter_common.float16")
        return mod.convert_float_to_float16, "onnxconverter-common"
    except ImportError:
        pass
    try:
        mod = importlib.import_module("onnxruntime.transformers.float16")
        return mod.convert_float_to_float16, "onnxruntime.transformers.float16"
    except ImportError:
        raise EdgeIQAError(
            "onnx-fp16 needs a float16 converter: install onnxconverter-common (pip install onnxconverter-common)"
        ) from None


def convert_fp16(fp32_path: str | Path, out_path: str | Path) -> dict:
    """float16 weights and compute; inputs and output stay float32 (keep_io_types)."""
    import onnx

    convert, source = _fp16_converter()
    model = onnx.load(str(fp32_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert(model, keep_io_types=True)
    toposort(half.graph)  # the converters append the input/output Casts at the end of the node list
    onnx.checker.check_model(half)
    for vi in list(half.graph.input) + list(half.graph.output):
        if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise EdgeIQAError(f"fp16 conversion changed the type of {vi.name!r}; inputs/outputs must stay float32")
    onnx.save(half, str(out_path))
    return {"converter": source, "keep_io_types": True}


def toposort(graph) -> None:
    """Reorder `graph.node` topologically in place, keeping the original order wherever it is valid."""
    import heapq

    nodes = list(graph.node)
    ready_names = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    producers = {out: idx for idx, n in enumerate(nodes) for out in n.output}
    waiting = {}
    for idx, n in enumerate(nodes):
        deps = {producers[i] for i in n.input if i not in ready_names and i in producers and producers[i] != idx}
        waiting[idx] = deps
    users: dict[int, list[int]] = {}
    for idx, deps in waiting.items():
        for d in deps:
            users.setdefault(d, []).append(idx)
    heap = [idx for idx, deps in waiting.items() if not deps]
    heapq.heapify(heap)
    order = []
    while heap:
        idx = heapq.heappop(heap)
        order.append(idx)
        for u in users.get(idx, []):
            waiting[u].discard(idx)
            if not waiting[u]:
                heapq.heappush(heap, u)
    if len(order) != len(nodes):
        raise EdgeIQAError("fp16 graph has a cycle; cannot order its nodes")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)
