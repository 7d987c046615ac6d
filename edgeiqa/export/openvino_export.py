"""ONNX -> OpenVINO IR (`.xml` graph + `.bin` weights), float32 or int8, and the runner the runtime and the
export's parity check share.

- Conversion: `openvino.convert_model` on the float32 ONNX graph that the `onnx` row exports (the path the OpenVINO
  docs recommend for an ONNX model), then `openvino.save_model(..., compress_to_fp16=False)`: save_model stores
  float16 weights by default, which would miss the float32 parity bar.
- int8: NNCF post-training quantisation (`nncf.quantize`) on the onnx-int8 calibration images, run through the
  training views (one image per batch). Preset MIXED (symmetric weights per output channel, asymmetric
  activations: the uint8 activations onnx-int8 uses) and min/max activation ranges over all images (NNCF's
  default averages each image's min/max, which clips the tails a bright or noisy photo reaches).
  What stays in float, and why:
  * the head: every op after the spatial pooling (the pooled mean/std statistics, LayerNorm, the MLP), as in
    onnx-int8 and TensorRT: a variance computed in int8 flattens the texture energy the score depends on;
  * the first backbone layers, only as many as the parity bar needs: quantisation noise in the high-resolution
    early feature maps reads as texture (it raises the std the head pools). Starting from none, the first
    1, 2, 4, 8 ... backbone layers (in graph order from the input) are kept in float until the SRCC of the int8
    model against the float32 IR on the *calibration* images reaches the row's bar (the parity images judge the
    result afterwards, so they do not pick it), at most half of the backbone's layers. Every trial is recorded.
- Metadata: the same JSON document as ONNX, in the IR's `rt_info` under `edgeiqa` (travels inside the .xml, as
  ONNX's metadata_props do), and in the `.json` sidecar every artefact gets.
- OpenVINO's and NNCF's telemetry (on unless a consent file in the user's home says no; `import openvino` alone
  sends an event) is switched off wherever edgeiqa imports openvino (`import_openvino`): edgeiqa runs offline and
  writes nothing outside the paths it is given.

Only numpy at module level: the runtime imports `IRRunner` without torch, onnx or NNCF.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

from edgeiqa.errors import EdgeIQAError
from edgeiqa.export.float_ladder import climb, float_layers_report

METADATA_KEY = "edgeiqa"
DEVICE = "CPU"
# Ops whose weights NNCF quantises; the ladder keeps the first of them (from the input) in float.
WEIGHTED_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")


# ----------------------------------------------------------------------------------------------- saving


def import_openvino():
    """`import openvino` without its telemetry. `import openvino` itself (through its converter package), the
    converter and NNCF each report to a remote service and keep a client id and counters under ~/intel unless a
    consent file there says no; all three fall back to a no-op when `openvino_telemetry` cannot be imported, so it is
    marked not importable, unless the process imported it already (an application that uses it keeps it)."""
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    import openvino

    return openvino


def save_ir(model, xml: str | Path) -> None:
    """Write `model` as XML + BIN beside `xml` without leaving a half-written pair: both files are saved in a
    scratch folder next to it and moved into place, weights first (the .xml names no file; its .bin is found by
    name)."""
    ov = import_openvino()

    xml = Path(xml)
    with tempfile.TemporaryDirectory(dir=xml.parent, prefix=".ir-") as tmp:
        tmp_xml = Path(tmp) / "model.xml"
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp_xml, xml)


def convert(onnx_path: str | Path, out_xml: str | Path) -> dict:
    """Float32 IR from the float32 ONNX graph. Returns facts for the metadata."""
    ov = import_openvino()
    model = ov.convert_model(str(onnx_path))
    save_ir(model, out_xml)
    return {"converter": "openvino.convert_model", "openvino": ov.__version__, "weights": "float32",
            "compress_to_fp16": False}


def read_ir(xml: str | Path):
    """The model of an IR file, read by OpenVINO's IR frontend only: `Core.read_model` tries every frontend on a file
    the IR one cannot parse, and TensorFlow's then writes parse errors of its own straight to stderr."""
    import_openvino()
    from openvino.frontend import FrontEndManager

    frontend = FrontEndManager().load_by_framework("ir")
    return frontend.convert(frontend.load(str(xml)))


def embed_metadata(xml: str | Path, metadata: dict) -> None:
    """Store the metadata JSON in the IR's rt_info under `edgeiqa` (the weights file is written unchanged)."""
    model = read_ir(xml)
    model.set_rt_info(json.dumps(metadata, sort_keys=True, default=str), [METADATA_KEY])
    save_ir(model, xml)


def embedded_metadata(model) -> dict | None:
    """The edgeiqa metadata inside a read OpenVINO model, or None."""
    if not model.has_rt_info([METADATA_KEY]):
        return None
    return json.loads(model.get_rt_info([METADATA_KEY]).astype(str))


# ----------------------------------------------------------------------------------------------- int8


def _rank(output) -> int | None:
    ps = output.get_partial_shape()
    return ps.rank.get_length() if ps.rank.is_static else None


def _is_float(output) -> bool:
    return output.get_element_type().is_real()


def head_ops(model) -> list[str]:
    """Names of the ops after the spatial pooling: an op that turns a 4-D float map into a lower-rank float
    tensor (the pooled mean/std) and every op downstream of it (LayerNorm, the MLP, the score)."""
    ops = model.get_ordered_ops()
    head: set[str] = set()
    for op in ops:  # topological order: a consumer comes after its producers
        if op.get_type_name() in ("Constant", "Parameter", "Result") or not op.get_output_size():
            continue
        out = op.output(0)
        if not _is_float(out):
            continue
        inputs = [op.input_value(i) for i in range(op.get_input_size())]
        fed = any(v.get_node().get_friendly_name() in head for v in inputs)
        pools = _rank(out) is not None and _rank(out) < 4 and any(
            _rank(v) == 4 and _is_float(v) and v.get_node().get_type_name() != "Constant" for v in inputs)
        if fed or pools:
            head.add(op.get_friendly_name())
    return [op.get_friendly_name() for op in ops if op.get_friendly_name() in head]


def backbone_layers(model, head: list[str]) -> list[str]:
    """The weighted ops before the head, in graph order from the input."""
    skip = set(head)
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() in WEIGHTED_OPS and op.get_friendly_name() not in skip]


def _scores(model, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    ov = import_openvino()

    compiled = ov.Core().compile_model(model, DEVICE, _compile_config(None))
    request = compiled.create_infer_request()
    return np.concatenate([np.asarray(request.infer(b)[0], dtype=np.float64).reshape(-1) for b in batches])


@contextlib.contextmanager
def _quiet_nncf():
    """NNCF logs and draws progress bars on stdout; `edgeiqa export --json` owns stdout."""
    import logging

    import nncf
    from nncf.common.logging import nncf_logger

    old = nncf_logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield nncf
    finally:
        nncf.set_log_level(old)


def _quantize(model, batches, ignored: list[str]):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    with _quiet_nncf() as nncf:
        return nncf.quantize(
            model.clone(), nncf.Dataset(batches), preset=nncf.QuantizationPreset.MIXED, subset_size=len(batches),
            ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
            advanced_parameters=AdvancedQuantizationParameters(
                activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX),
        )


def count_fake_quantize(model) -> int:
    return sum(1 for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize")


def quantize_int8(onnx_path: str | Path, out_xml: str | Path, batches: list[dict[str, np.ndarray]], *,
                  min_srcc: float) -> dict:
    """int8 IR of the float32 ONNX graph, calibrated on `batches` (see the module docstring for what stays in
    float). Returns facts for the metadata, every try of the ladder included."""
    if not batches:
        raise EdgeIQAError("int8 calibration needs at least one image")
    ov = import_openvino()
    import nncf

    model = ov.convert_model(str(onnx_path))
    head = head_ops(model)
    layers = backbone_layers(model, head)
    reference = _scores(model, batches)
    quantized, chosen, trials = climb(len(layers), lambda k: _quantize(model, batches, head + layers[:k]),
                                      lambda q: _scores(q, batches), reference, min_srcc, "openvino-int8",
                                      facts=lambda q: {"fake_quantize_nodes": count_fake_quantize(q)})
    if not chosen["fake_quantize_nodes"]:
        raise EdgeIQAError(f"int8 quantisation produced no quantised nodes in {out_xml}")
    k = chosen["float_backbone_layers"]
    save_ir(quantized, out_xml)
    return {
        "scheme": "NNCF post-training quantisation (FakeQuantize), preset MIXED",
        "weights": "int8 symmetric per output channel", "activations": "int8 asymmetric (uint8 range)",
        "calibration": "min/max over all calibration images", "calibration_batches": len(batches),
        "nncf": nncf.__version__, "openvino": ov.__version__,
        "quantized_nodes": chosen["fake_quantize_nodes"],
        "float_nodes": len(head) + k,
        **float_layers_report({"ops": len(head)}, {"names": layers[:k], "of": len(layers)}, k, trials, min_srcc),
    }


# ----------------------------------------------------------------------------------------------- running


def _compile_config(threads: int | None) -> dict:
    """CPU plugin settings: an explicit thread count, one stream (latency, one request at a time) and float32
    inference precision (the plugin's default on CPUs with bf16 units is bf16, which would miss fp32 parity)."""
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def _first_line(exc: BaseException) -> str:
    """A one-line reason from OpenVINO's multi-line exception text (the last informative line)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '")) and "src/" not in ln]
    text = (useful or lines or [type(exc).__name__])[-1]
    return text[:300]


class IRRunner:
    """Reads an OpenVINO IR and runs it on the CPU plugin: `run({input name: float32 NCHW}) -> (N,) float32`."""

    def __init__(self, path: str | Path, threads: int | None = None):
        ov = import_openvino()

        self.path = Path(path)
        if not self.path.is_file():
            raise EdgeIQAError(f"model not found: {self.path}")
        weights = self.path.with_suffix(".bin")
        if not weights.is_file():
            raise EdgeIQAError(f"{self.path}: its weights file {weights.name} is missing (an OpenVINO IR is the .xml "
                               "and the .bin beside it)")
        core = ov.Core()
        self.version = ov.__version__.split("-")[0]
        try:
            model = read_ir(self.path)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and others on a bad file
            raise EdgeIQAError(f"{self.path}: not an OpenVINO IR that OpenVINO {self.version} can read "
                               f"({_first_line(exc)})") from None
        try:
            self.metadata = embedded_metadata(model)
        except (json.JSONDecodeError, RuntimeError) as exc:
            raise EdgeIQAError(f"{self.path}: the embedded edgeiqa metadata is not valid JSON ({exc})") from None
        self.input_names = [i.get_any_name() for i in model.inputs]
        self.input_shapes = {i.get_any_name(): [d.get_length() if d.is_static else None for d in i.get_partial_shape()]
                             for i in model.inputs}
        batch_dims = {s[0] if s else None for s in self.input_shapes.values()}
        only = next(iter(batch_dims))
        self.fixed_batch = only if len(batch_dims) == 1 and isinstance(only, int) else None
        try:
            self.compiled = core.compile_model(model, DEVICE, _compile_config(threads))
        except Exception as exc:  # noqa: BLE001
            raise EdgeIQAError(f"{self.path}: OpenVINO's CPU plugin cannot compile it ({_first_line(exc)})") from None
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        self.request = self.compiled.create_infer_request()
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        inputs = {n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.input_names}
        with self._lock:
            self.request.infer(inputs, share_inputs=True)
            out = self.request.get_output_tensor(0).data
            return np.array(out, dtype=np.float32).reshape(-1)
