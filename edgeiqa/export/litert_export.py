"""torch -> LiteRT (`.tflite`), float32, float16 weights or int8, and the runner the runtime and the export's parity
check share.

- Conversion: `litert_torch.convert` (Google's maintained torch -> LiteRT converter, PyPI `litert-torch`) on the
  student itself (training heads dropped), at the deploy input sizes, batch 1. It keeps the graph's NCHW inputs
  (it inserts the NHWC transposes inside the graph), so the runner feeds the same float32 NCHW views as every other
  backend. Why litert-torch and not onnx2tf, measured: docs/export-litert.md.
- float16 (`litert-fp16`): ai-edge-quantizer's FLOAT_CASTING on every weight (float16 weights, a Dequantize op in
  front of each use; compute, inputs and output stay float32).
- int8 (`litert-int8`): ai-edge-quantizer static quantisation (int8 weights per output channel, int8 activations,
  min/max calibrated on the onnx-int8 calibration images through the training views). Full-integer: its inputs
  are int8 too, so the runner quantises the float32 views with the input's own scale and zero point (and
  dequantises an integer output); nothing changes outside the runner. What stays in float, and why:
  * the head: every op from the spatial pooling on (the pooled mean/std statistics, LayerNorm, the MLP), as in
    onnx-int8 and openvino-int8: a variance computed in int8 flattens the texture energy the score depends on;
  * the first backbone layers, only as many as the parity bar needs: starting from none, the first 1, 2, 4, 8 ...
    backbone layers (weights shared by every view, in execution order from the input) are kept in float until the
    SRCC of the int8 model against the float32 one on the *calibration* images reaches the row's bar, at most half
    of the layers. Every try is recorded in the metadata. A try with float layers also keeps the inputs and every op
    between them and those layers float (`with_ancestors`): measured on the real 1-GMAC student, keeping the first
    layers float while the views still entered as int8 changed nothing (SRCC 0.953 -> 0.953 on the parity images),
    the int8 rounding of the normalised views being the error; with float inputs two layers reached 0.991. Such a
    model has float32 inputs, so the runner feeds it the views unchanged.
- Metadata: the same JSON document as ONNX, in the flatbuffer's own metadata table (`Model.metadata`, a named
  buffer: the mechanism LiteRT has for it) under `edgeiqa`, and in the `.json` sidecar every artefact gets.
  TFLite's richer "TFLite Metadata" schema (tflite-support) is for the Task Library's input/output descriptions,
  needs another package and carries nothing we need beyond one JSON string.
- Batch 1 and static input sizes: the graph is traced at fixed shapes, so `--dynamic-batch` is refused and a
  student with a `full` view (dynamic height and width) is refused by name.

Only numpy at module level: the runtime imports `TFLiteRunner` without torch, litert-torch or the quantizer
(it needs `ai-edge-litert`, whose `flatbuffers` dependency reads the metadata).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from edgeiqa.errors import EdgeIQAError
from edgeiqa.export.float_ladder import climb, float_layers_report

METADATA_KEY = "edgeiqa"
TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier at bytes 4..8 of every .tflite
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
SIGNATURE = "serving_default"


# ----------------------------------------------------------------------------------------------- converting


@contextlib.contextmanager
def _quiet():
    """litert-torch prints a progress tree and the quantizer a report and progress bars on stdout/stderr;
    `edgeiqa export --json` owns stdout."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def unexpressible_views(views) -> list[str]:
    """Views a static-shape .tflite cannot take: `full` views have a dynamic height and width."""
    return [v.name for v in views if v.kind == "full"]


def _reason(exc: BaseException) -> str:
    """One line from a converter error: the line naming an operator when there is one, else the first."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    named = [ln for ln in lines if re.search(r"\b(op|operator|aten\.|tfl\.)", ln, re.I)]
    return ((named or lines or [type(exc).__name__])[0])[:300]


def convert(model, views, out: str | Path) -> dict:
    """Float32 .tflite of the student at the views' sizes, batch 1. Returns facts for the metadata."""
    import litert_torch
    import torch

    bad = unexpressible_views(views)
    if bad:
        raise EdgeIQAError(f"the litert formats export static input shapes; view(s) {', '.join(bad)} of kind 'full' "
                           "have a dynamic height and width (use the onnx or openvino formats for this student)")
    args = tuple(torch.zeros(1, 3, *v.size) for v in views)
    t0 = time.perf_counter()
    try:
        with _quiet(), _quiet_native():  # its C++ passes log to fd 2 as well
            edge = litert_torch.convert(model, args)
    except Exception as exc:  # noqa: BLE001 - torch.export and the MLIR lowering raise many types
        raise EdgeIQAError(f"litert-torch cannot convert this student: {_reason(exc)}") from None
    took = time.perf_counter() - t0
    out = Path(out)
    with _quiet(), _quiet_native():
        edge.export(str(out))
    return {"converter": "litert_torch.convert", "litert_torch": litert_torch.__version__, "layout": "NCHW inputs",
            "convert_s": round(took, 1)}


def _quantizer():
    from ai_edge_quantizer import quantizer, qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    return quantizer, qtyping, AlgorithmName


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def to_fp16(fp32: str | Path, out: str | Path) -> dict:
    """float16 weights (FLOAT_CASTING); compute, inputs and output stay float32."""
    quantizer, qtyping, algos = _quantizer()
    q = quantizer.Quantizer(str(fp32))
    q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                             algorithm_key=algos.FLOAT_CASTING)
    with _quiet():
        q.quantize(enable_progress_report=False).export_model(str(out), overwrite=True)
    return {"scheme": "ai-edge-quantizer FLOAT_CASTING: float16 weights, float32 compute and I/O",
            "ai_edge_quantizer": _version("ai-edge-quantizer")}


# ----------------------------------------------------------------------------------------------- int8


def _graph(path: str | Path):
    """(ops in execution order, {tensor index: details}) of a .tflite, read without XNNPACK (which would fold the
    ops into DELEGATE nodes)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it._get_ops_details(), {t["index"]: t for t in it.get_tensor_details()}


def head_ops(ops, tensors) -> list[dict]:
    """The ops from the spatial pooling on: a MEAN (or SUM) of a feature map, flattened to (N, C, H*W) by the
    converter, down to (N, C) (the pooled statistics), and every op downstream of it (LayerNorm, the MLP, the
    score)."""
    head: set[int] = set()
    out = []
    for op in ops:
        ins = [tensors[i] for i in op["inputs"] if i >= 0]
        first = tensors[op["outputs"][0]]
        pools = op["op_name"] in ("MEAN", "SUM") and len(first["shape"]) <= 2 and any(len(t["shape"]) >= 3 for t in ins)
        if pools or any(t["index"] in head for t in ins):
            head.update(op["outputs"])
            out.append(op)
    return out


def backbone_layers(ops, head: list[dict]) -> list[int]:
    """Weight tensors of the weighted ops before the head, in execution order from the input; the views share the
    backbone, so one layer (one weight tensor) is used by one op per view."""
    skip = {id(o) for o in head}
    layers: list[int] = []
    for op in ops:
        if op["op_name"] in WEIGHTED_OPS and id(op) not in skip and op["inputs"][1] not in layers:
            layers.append(op["inputs"][1])
    return layers


def _layer_name(ops, tensors, weight: int) -> str:
    """A layer's name: the output tensor of its first op (litert-torch names it after the torch module path)."""
    op = next(o for o in ops if o["op_name"] in WEIGHTED_OPS and o["inputs"][1] == weight)
    return f'{op["op_name"]} {tensors[op["outputs"][0]]["name"]}'


def with_ancestors(ops, chosen: list[dict]) -> list[dict]:
    """`chosen` and every op between the graph's inputs and them (the NCHW -> NHWC transpose, pads, earlier layers):
    a float layer fed by an int8 tensor would still see the input's quantisation noise."""
    producer = {t: op for op in ops for t in op["outputs"]}
    keep: dict[int, dict] = {}
    stack = list(chosen)
    while stack:
        op = stack.pop()
        if id(op) in keep:
            continue
        keep[id(op)] = op
        stack.extend(producer[t] for t in op["inputs"] if t in producer)
    return [op for op in ops if id(op) in keep]


def _names_regex(ops, tensors) -> str:
    """A regex matching exactly these ops (the quantizer matches an op's scope: its output tensor names, each followed
    by ';')."""
    return "^(" + "|".join(re.escape(tensors[o["outputs"][0]]["name"]) for o in ops) + ");$"


def _scores(path: str | Path, batches, input_order: list[str]) -> np.ndarray:
    runner = TFLiteRunner(path, threads=None, input_order=input_order)
    return np.concatenate([runner.run(b).astype(np.float64) for b in batches])


def quantize_int8(fp32: str | Path, out: str | Path, batches: list[dict[str, np.ndarray]], input_order: list[str], *,
                  min_srcc: float) -> dict:
    """Full-integer int8 .tflite of the float32 one, calibrated on `batches` (one image each; see the module
    docstring for what stays in float). Returns facts for the metadata, every try of the ladder included."""
    if not batches:
        raise EdgeIQAError("int8 calibration needs at least one image")
    quantizer, qtyping, algos = _quantizer()
    ops, tensors = _graph(fp32)
    head = head_ops(ops, tensors)
    layers = backbone_layers(ops, head)
    keys = _signature_inputs(fp32)
    reference = _scores(fp32, batches, input_order)

    def recipe(k: int):
        q = quantizer.Quantizer(str(fp32))
        q.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=8,
                            weight_num_bits=8)
        keep = head + with_ancestors(ops, [o for o in ops if o["op_name"] in WEIGHTED_OPS and o["inputs"][1] in set(layers[:k])])
        q.update_quantization_recipe(regex=_names_regex(keep, tensors),
                                     operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                     algorithm_key=algos.NO_QUANTIZE)
        if k:  # float inputs: the views reach the float layers unquantised
            q.update_quantization_recipe(regex=".*", operation_name=qtyping.TFLOperationName.INPUT,
                                         algorithm_key=algos.NO_QUANTIZE)
        return q

    t0 = time.perf_counter()
    with _quiet():  # min/max of every tensor, recorded once: the ladder's recipes only choose which ops use them
        calib = recipe(0).calibrate({SIGNATURE: [{key: b[name] for key, name in zip(keys, input_order)}
                                                 for b in batches]}, num_threads=1)
    calib_s = round(time.perf_counter() - t0, 1)
    tmp = Path(out).with_name(f".{Path(out).stem}.try.tflite")

    def quantize(k: int) -> bytes:
        with _quiet():
            recipe(k).quantize(calib, enable_progress_report=False).export_model(str(tmp), overwrite=True)
        return tmp.read_bytes()

    try:  # each try's bytes are scored from `tmp`, which holds them until the next try
        data, chosen, trials = climb(len(layers), quantize, lambda _: _scores(tmp, batches, input_order), reference,
                                     min_srcc, "litert-int8", facts=lambda made: {"bytes": len(made)})
    finally:
        tmp.unlink(missing_ok=True)
    k = chosen["float_backbone_layers"]
    Path(out).write_bytes(data)
    return {
        "scheme": "ai-edge-quantizer static int8 (full-integer: int8 inputs, quantised by the runner)",
        "weights": "int8 symmetric per output channel", "activations": "int8 asymmetric per tensor",
        "calibration": "min/max over all calibration images", "calibration_batches": len(batches),
        "calibration_s": calib_s, "ai_edge_quantizer": _version("ai-edge-quantizer"),
        **float_layers_report(
            {"ops": len(head), "types": sorted({o["op_name"] for o in head})},
            {"names": [_layer_name(ops, tensors, w) for w in layers[:k]], "of": len(layers),
             "with": "the input views and the ops between them and these layers (NCHW -> NHWC transpose)" if k else None},
            k, trials, min_srcc),
    }


# ----------------------------------------------------------------------------------------------- metadata


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def is_tflite(data: bytes) -> bool:
    return len(data) >= 8 and data[4:8] == TFLITE_IDENTIFIER


def read_metadata(data: bytes) -> dict | None:
    """The edgeiqa JSON in a .tflite's metadata table, or None."""
    schema = _schema()
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_KEY.encode():
            buf = model.Buffers(entry.Buffer())
            raw = buf.DataAsNumpy().tobytes() if buf.DataLength() else data[buf.Offset():buf.Offset() + buf.Size()]
            return json.loads(raw.decode("utf-8"))
    return None


def embed_metadata(path: str | Path, metadata: dict) -> None:
    """Store the metadata JSON as the flatbuffer's `edgeiqa` metadata entry (a new buffer; an older entry of that
    name is replaced), written beside the file and moved into place."""
    import flatbuffers

    schema = _schema()
    path = Path(path)
    raw = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    for buf in model.buffers or []:  # ai-edge-quantizer appends weights after the flatbuffer (offset/size): inline
        if (buf.offset or 0) > 1:  # them, or repacking would drop them
            buf.data = np.frombuffer(raw[buf.offset:buf.offset + buf.size], dtype=np.uint8)
            buf.offset = buf.size = 0
    payload = np.frombuffer(json.dumps(metadata, sort_keys=True, default=str).encode("utf-8"), dtype=np.uint8)
    buffer = schema.BufferT()
    buffer.data = payload
    model.buffers = list(model.buffers or []) + [buffer]
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_KEY, METADATA_KEY.encode())]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(path.stat().st_size + payload.size + 4096)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    out = bytes(builder.Output())
    if read_metadata(out) is None or len(out) < len(raw) * 0.9:  # never replace a model with a smaller broken one
        raise EdgeIQAError(f"{path}: embedding the metadata would lose data ({len(raw)} -> {len(out)} bytes)")
    tmp = path.with_name(f".{path.name}.meta")
    tmp.write_bytes(out)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- running


def _signature_inputs(path_or_interpreter) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    it = path_or_interpreter
    if not hasattr(it, "get_signature_list"):
        it = Interpreter(model_path=str(it), num_threads=1)
    sigs = it.get_signature_list()
    return list((sigs.get(SIGNATURE) or next(iter(sigs.values()), {})).get("inputs") or [])


class TFLiteRunner:
    """A .tflite on LiteRT's CPU interpreter (XNNPACK): `run({input name: float32 NCHW}) -> (N,) float32`.

    Input names are the views' (`input_order` from the metadata, by position: litert-torch names the signature's
    inputs args_0, args_1, ...). Integer inputs (litert-int8) are quantised here with their own scale and zero
    point, and an integer output dequantised."""

    def __init__(self, path: str | Path, threads: int | None = None, input_order: list[str] | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise EdgeIQAError(f"model not found: {self.path}")
        data = self.path.read_bytes()
        self.version = _version("ai-edge-litert") or "?"
        if not is_tflite(data):
            raise EdgeIQAError(f"{self.path}: not a LiteRT (.tflite) model (no TFL3 flatbuffer identifier)")
        try:
            self.metadata = read_metadata(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EdgeIQAError(f"{self.path}: the embedded edgeiqa metadata is not valid JSON ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer raises struct/index errors
            raise EdgeIQAError(f"{self.path}: not a LiteRT model that can be read ({type(exc).__name__}: "
                               f"{(str(exc).splitlines() or [''])[0][:200]})") from None
        self.threads = int(threads) if threads is not None else 1
        try:
            with _quiet_native():
                self.interpreter = Interpreter(model_content=data, num_threads=self.threads)
                self.interpreter.allocate_tensors()
        except Exception as exc:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError on a bad model
            raise EdgeIQAError(f"{self.path}: LiteRT {self.version} cannot load it "
                               f"({(str(exc).splitlines() or [type(exc).__name__])[0][:200]})") from None
        details = self.interpreter.get_input_details()
        order = input_order or (self.metadata or {}).get("input_order")
        if order and len(order) == len(details):
            self.input_names = list(order)
        else:
            self.input_names = [d["name"] for d in details]
        self._inputs = list(zip(self.input_names, details))
        self._output = self.interpreter.get_output_details()[0]
        self.input_shapes = {n: [int(x) for x in d["shape"]] for n, d in self._inputs}
        batch_dims = {s[0] if s else None for s in self.input_shapes.values()}
        self.fixed_batch = next(iter(batch_dims)) if len(batch_dims) == 1 else None
        self.precision = "int8 I/O" if any(d["dtype"] != np.float32 for _, d in self._inputs) else "float32 I/O"
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        it = self.interpreter
        with self._lock:
            for name, d in self._inputs:
                x = feeds[name]
                if d["dtype"] == np.float32:
                    x = np.ascontiguousarray(x, dtype=np.float32)
                else:
                    scale, zero = d["quantization"]
                    info = np.iinfo(d["dtype"])
                    x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(d["dtype"])
                it.set_tensor(d["index"], x)
            it.invoke()
            out = it.get_tensor(self._output["index"])
            if self._output["dtype"] != np.float32:
                scale, zero = self._output["quantization"]
                out = (out.astype(np.float32) - zero) * scale
            return np.array(out, dtype=np.float32).reshape(-1)


@contextlib.contextmanager
def _quiet_native():
    """LiteRT's C++ side prints 'INFO: Created TensorFlow Lite XNNPACK delegate' and load errors straight to the
    process's stderr (fd 2); a refusal must be one line."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
