"""torch student -> Core ML ML program (`.mlpackage` folder), float16 or int8 weights, and the runner the runtime and
the export's parity check share.

- Conversion: `torch.export.export` of the student at batch 1 (decomposed to core ATen ops) -> `coremltools.convert`
  as an ML program, minimum deployment target iOS 16, float16 compute precision. The inputs are the views the
  runtime computes in numpy (float32 NCHW, one input per view, named as the views), the output is `score`, so the
  preprocessing is the same as for every other format. Not `torch.jit.trace`: with numpy >= 2.4 coremltools 9.0's
  TorchScript frontend fails on the students' dynamic "same" padding (`int()` of a one-element array), while the
  torch.export frontend converts them (docs/export-coreml.md).
- int8 (`coreml-int8`): `coremltools.optimize.coreml.linear_quantize_weights`, symmetric int8 per output channel, on
  the float16 program: weights stored as int8 with a float16 scale, compute stays float16 (weight-only; no
  calibration images needed). Weights smaller than coremltools' `weight_threshold` (2048 elements: biases, norms,
  small depthwise kernels) stay float16; the metadata lists them.
- Metadata: the same JSON document as ONNX, in the model's `user_defined_metadata` under `edgeiqa` (Core ML's
  metadata strings, inside the package), and in the `.json` sidecar every artefact gets.
- A `.mlpackage` is a folder: it is written in a scratch folder beside the target and swapped in whole
  (`save_package`), so a failed export never leaves a half-written package.
- Prediction needs Apple's Core ML framework (macOS): on any other system the runner reads and checks the package
  (manifest, spec inputs/outputs, metadata) and then refuses to run it with one line; the export's parity check
  says "not runnable", never passed. The check reads the spec's protobuf itself (`read_description`): coremltools
  imports torch whenever torch is installed, and a refusal should not cost that.

Only numpy at module level: the runtime imports `PackageRunner` without torch or coremltools.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeiqa.errors import EdgeIQAError

METADATA_KEY = "edgeiqa"
OUTPUT_NAME = "score"
MIN_DEPLOYMENT_TARGET = "iOS16"
MANIFEST = "Manifest.json"
RUNS_ON = "Core ML models run only on macOS"


def is_macos() -> bool:
    return sys.platform == "darwin"


def not_runnable_reason() -> str:
    return f"not runnable on {platform.system() or sys.platform}: {RUNS_ON} (Apple's Core ML framework)"


# ----------------------------------------------------------------------------------------------- importing


@contextlib.contextmanager
def _quiet_coremltools():
    """coremltools logs at import (an untested torch or scikit-learn version, and on Linux every missing
    libcoremlpython proxy) and draws progress bars while converting; `edgeiqa export --json` owns stdout and a
    refusal is one line. Its logger is raised to ERROR and tqdm's bars go to a null stream meanwhile."""
    log = logging.getLogger("coremltools")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
            yield
    finally:
        log.setLevel(old)


def import_coremltools():
    with _quiet_coremltools():
        import coremltools

    return coremltools


def torch_support() -> dict:
    """What this coremltools says about the installed torch (its own tested range), for the metadata and docs."""
    ct = import_coremltools()
    from coremltools import _deps

    tested = getattr(_deps, "_TORCH_MAX_VERSION", None)
    try:
        import torch

        installed = torch.__version__
    except ImportError:  # pragma: no cover - the export needs torch
        installed = None
    from packaging.version import Version

    above = None
    if tested and installed:
        above = Version(installed.split("+")[0]) > Version(tested)
    return {"coremltools": ct.__version__, "torch": installed, "torch_max_tested_by_coremltools": tested,
            "torch_above_tested": above}


# ----------------------------------------------------------------------------------------------- saving


def save_package(mlmodel, out: str | Path) -> None:
    """Write `mlmodel` to the folder `out` whole or not at all: saved in a scratch folder beside it, then the old
    package (validated by the caller as edgeiqa's, or --force) is moved aside and the new one renamed into place."""
    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".mlpackage-") as tmp:
        new = Path(tmp) / out.name
        with _quiet_coremltools():
            mlmodel.save(str(new))
        old = Path(tmp) / "old"
        if out.is_dir() and not out.is_symlink():
            out.rename(old)
        elif out.exists() or out.is_symlink():
            out.unlink()
        new.rename(out)


def _layer_of(program, exc: BaseException) -> str | None:
    """The student layer of the graph node a torch.export-frontend error names ("Unsupported fx node <name>")."""
    import re

    found = re.search(r"fx node (\S+?),", str(exc))
    if not found:
        return None
    for node in program.graph.nodes:
        if node.name == found.group(1):
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            path = stack[-1][0] if stack else ""
            path = re.sub(r"L\['self'\]\.?|\._modules\['([^']+)'\]", lambda m: f".{m.group(1)}" if m.group(1) else "", path)
            return f"op {node.target} in layer '{path.strip('.') or '(the top module)'}'"
    return None


class _Located(logging.Handler):
    """Keeps the converter's last "converting '<op>' op (located at: '<layer>')" error line: the exception it raises
    then names neither."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.where = None

    def emit(self, record):
        msg = record.getMessage().strip()
        if "located at" in msg:
            self.where = msg.removeprefix("ERROR - ").rstrip(":")


def convert(model, views, out: str | Path, *, int8: bool) -> dict:
    """The student as a Core ML ML program at `out` (float16, or int8 weights). Returns facts for the metadata."""
    import torch

    ct = import_coremltools()
    names = list(getattr(model, "view_names", [v.name for v in views]))
    if names != [v.name for v in views]:
        raise EdgeIQAError(f"student view order {names} differs from the checkpoint's views {[v.name for v in views]}")
    args = tuple(torch.zeros(1, 3, *v.size) for v in views)
    with torch.no_grad():
        try:
            program = torch.export.export(model, args).run_decompositions({})
        except Exception as exc:  # noqa: BLE001 - torch.export raises many types on an unsupported student
            raise EdgeIQAError(f"torch.export cannot capture the student for Core ML: {_first_line(exc)}") from None
    # torch.export names the graph inputs after forward's argument; Core ML names them after the views
    placeholders = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    inputs = [ct.TensorType(name=p, shape=(1, 3, *v.size), dtype=np.float32) for p, v in zip(placeholders, views)]
    located = _Located()
    logging.getLogger("coremltools").addHandler(located)
    try:
        with _quiet_coremltools():
            mlmodel = ct.convert(program, inputs=inputs, outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
                                 convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
                                 minimum_deployment_target=getattr(ct.target, MIN_DEPLOYMENT_TARGET))
    except Exception as exc:  # noqa: BLE001 - the converter's error names the op, its log or the graph the layer
        where = located.where or _layer_of(program, exc)
        where = f" ({where})" if where else ""
        raise EdgeIQAError(f"coremltools {ct.__version__} cannot convert the student: {_first_line(exc)}{where}") from None
    finally:
        logging.getLogger("coremltools").removeHandler(located)
    spec = mlmodel.get_spec()
    for p, v in zip(placeholders, views):
        ct.utils.rename_feature(spec, p, v.name)
    mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
    facts = {"converter": "torch.export -> coremltools.convert (ML program)", **torch_support(),
             "minimum_deployment_target": MIN_DEPLOYMENT_TARGET, "compute_precision": "float16",
             "inputs": [{"name": v.name, "shape": [1, 3, *v.size], "dtype": "float32"} for v in views],
             "output": OUTPUT_NAME}
    if int8:
        mlmodel, quant = quantize_weights(mlmodel)
        facts["quantization"] = quant
    save_package(mlmodel, out)
    facts["weights"] = weight_summary(program_of(out))
    if int8:
        w = facts["weights"]
        facts["quantization"]["float_layers"] = {
            "below_weight_threshold": {
                "tensors": w["float_tensors"], "elements": w["float_elements"], "largest": w["largest_float_tensor"],
                "why": f"coremltools quantises weights of at least {facts['quantization']['weight_threshold']} elements; "
                       "the smaller ones (biases, LayerNorm, the stem's and small depthwise kernels) stay float16: "
                       f"{w['float_elements'] / max(1, w['float_elements'] + w['int8_elements']):.1%} of the weights"},
            "kept_for_accuracy": {"names": [], "why": "none: a ladder keeping layers float until SRCC >= 0.99 needs Core "
                                  "ML prediction, which needs macOS; not measured on this machine"},
        }
    return facts


def quantize_weights(mlmodel):
    """int8 weights (symmetric, per output channel) for every weight of at least `weight_threshold` elements."""
    ct = import_coremltools()
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    op_config = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
    # an all-zero output channel (an untrained head) gets scale 0: numpy warns on 0/0, the channel stays zero
    with _quiet_coremltools(), np.errstate(divide="ignore", invalid="ignore"):
        quantized = linear_quantize_weights(mlmodel, config=OptimizationConfig(global_config=op_config))
    return quantized, {"scheme": "coremltools.optimize.coreml.linear_quantize_weights", "coremltools": ct.__version__,
                       "weights": "int8 symmetric per output channel (float16 scale)", "activations": "float16",
                       "weight_threshold": op_config.weight_threshold,
                       "calibration": "none (weight-only quantisation)"}


def embed_metadata(out: str | Path, metadata: dict) -> None:
    """Store the metadata JSON in the package's user_defined_metadata under `edgeiqa` (weights unchanged)."""
    ct = import_coremltools()
    with _quiet_coremltools():
        mlmodel = ct.models.MLModel(str(out), skip_model_load=True)
    mlmodel.user_defined_metadata[METADATA_KEY] = json.dumps(metadata, sort_keys=True, default=str)
    mlmodel.short_description = "edgeiqa image-quality student: raw score of the views (see user metadata 'edgeiqa')"
    save_package(mlmodel, out)


# ----------------------------------------------------------------------------------------------- inspecting


def program_of(path: str | Path):
    """The MIL program stored in a package (its ops and weights, read from the spec and weight files)."""
    ct = import_coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil

    with _quiet_coremltools():
        mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
        spec = mlmodel.get_spec()
        return load_mil(spec, specification_version=spec.specificationVersion, file_weights_dir=mlmodel.weights_dir)


def _weight_ops(prog):
    """(op, storage dtype) for each weight tensor of the program: const float tensors, and the constexpr ops that
    dequantise stored integer data (their `quantized_data` / `data` input)."""
    for fn in prog.functions.values():
        for op in fn.operations:
            if op.op_type.startswith("constexpr_"):
                stored = [np.asarray(v.val).dtype for v in op.inputs.values()
                          if getattr(v, "val", None) is not None and np.ndim(v.val) >= 1]
                ints = [str(d) for d in stored if np.issubdtype(d, np.integer)]
                yield op, (ints[0] if ints else op.op_type)
            elif op.op_type == "const" and op.outputs[0].val is not None and np.ndim(op.outputs[0].val) >= 1:
                kind = str(np.asarray(op.outputs[0].val).dtype)
                users = op.outputs[0].child_ops
                feeds_dequantize = bool(users) and all(u.op_type.startswith("constexpr_") for u in users)
                # integer consts are shapes, pads or quantised data; a float one read only by a constexpr op is a scale
                if kind.startswith("float") and not feeds_dequantize:
                    yield op, kind


def _elements(op) -> int:
    return int(np.prod(op.outputs[0].shape)) if op.outputs[0].shape else 1


def weight_summary(prog) -> dict:
    """How the weights of a program are stored: integer tensors (int8 in coreml-int8) against float ones, with the
    largest float one (for coreml-int8: the float ones are those below the quantiser's size threshold)."""
    ints, floats = [], []
    for op, kind in _weight_ops(prog):
        if kind in ("int8", "uint8"):
            ints.append((op.name, _elements(op), kind))
        elif kind.startswith("float") and _elements(op) > 1:
            floats.append((op.name, _elements(op), kind))
    return {"int8_tensors": sum(k == "int8" for _, _, k in ints), "int8_elements": sum(n for _, n, k in ints if k == "int8"),
            "float_tensors": len(floats), "float_elements": sum(n for _, n, _ in floats),
            "float_dtypes": sorted({k for _, _, k in floats}), "largest_float_tensor": max((n for _, n, _ in floats), default=0),
            "dequantize_ops": sorted({op.op_type for op, k in _weight_ops(prog) if k in ("int8", "uint8")})}


# ----------------------------------------------------------------------------------------------- running


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


# Field numbers of Core ML's Model.proto (the parts edgeiqa reads): Model.description = 2; ModelDescription.input = 1,
# .output = 10, .metadata = 100; Metadata.userDefined = 100 (map<string, string>: key = 1, value = 2);
# FeatureDescription.name = 1, .type = 3; FeatureType.multiArrayType = 5; ArrayFeatureType.shape = 1.
_DESCRIPTION, _INPUT, _OUTPUT, _METADATA, _USER_DEFINED = 2, 1, 10, 100, 100


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return out, i


def _fields(buf: bytes):
    """(field number, value) of one protobuf message: ints for varints, bytes for length-delimited fields."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            value, i = buf[i:i + n], i + n
        elif wire in (1, 5):
            value, i = buf[i:i + (8 if wire == 1 else 4)], i + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"wire type {wire}")
        if number == 0:
            raise ValueError("field number 0")
        yield number, value


def _sub(buf: bytes, number: int) -> list[bytes]:
    return [v for n, v in _fields(buf) if n == number and isinstance(v, bytes)]


def _feature(buf: bytes) -> tuple[str, list[int]]:
    name = next((v.decode() for v in _sub(buf, 1)), "")
    shape: list[int] = []
    for ftype in _sub(buf, 3):
        for array in _sub(ftype, 5):
            for n, v in _fields(array):
                if n == 1 and isinstance(v, bytes):  # packed repeated int64
                    j = 0
                    while j < len(v):
                        d, j = _varint(v, j)
                        shape.append(d)
                elif n == 1:
                    shape.append(v)
    return name, shape


def read_description(model_file: str | Path) -> dict:
    """Inputs (name -> shape), outputs and user-defined metadata of a Core ML spec file, read from its protobuf
    wire format without coremltools (so a package is checked on any machine in milliseconds, without torch)."""
    buf = Path(model_file).read_bytes()
    desc = _sub(buf, _DESCRIPTION)
    if not desc:
        raise ValueError("no model description")
    d = desc[0]
    user: dict[str, str] = {}
    for meta in _sub(d, _METADATA):
        for entry in _sub(meta, _USER_DEFINED):
            kv = dict((n, v) for n, v in _fields(entry))
            user[kv.get(1, b"").decode()] = kv.get(2, b"").decode()
    inputs = dict(_feature(f) for f in _sub(d, _INPUT))
    outputs = [_feature(f)[0] for f in _sub(d, _OUTPUT)]
    if not inputs or not outputs:
        raise ValueError("no inputs or outputs")
    return {"inputs": inputs, "outputs": outputs, "user_defined_metadata": user}


def check_package(path: Path) -> dict:
    """The package's manifest, read without coremltools: a folder with a Manifest.json naming its root model."""
    manifest = path / MANIFEST
    if not path.is_dir() or not manifest.is_file():
        raise EdgeIQAError(f"{path}: not a Core ML package (a .mlpackage is a folder holding {MANIFEST})")
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        root = doc["itemInfoEntries"][doc["rootModelIdentifier"]]["path"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgeIQAError(f"{path}: not a Core ML package ({MANIFEST} unreadable: {exc})") from None
    model = path / "Data" / root
    if not model.is_file():
        raise EdgeIQAError(f"{path}: not a Core ML package (its root model {root} is missing)")
    try:
        return read_description(model)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise EdgeIQAError(f"{path}: not a Core ML package (its model spec {root} is unreadable: {exc})") from None


class PackageRunner:
    """Reads a `.mlpackage` and checks it (manifest, spec, inputs, edgeiqa metadata) without coremltools; on macOS
    it then loads it with Core ML and runs `run({input name: float32 NCHW}) -> (N,) float32`. Elsewhere the check is
    all it can do: it raises one line saying Core ML models run only on macOS (`score`, `eval` and `bench` say so)."""

    def __init__(self, path: str | Path, compute_units: str = "ALL", check_metadata: bool = True):
        self.path = Path(path)
        if not self.path.exists():
            raise EdgeIQAError(f"model not found: {self.path}")
        desc = check_package(self.path)
        raw = desc["user_defined_metadata"].get(METADATA_KEY)
        if raw is None and check_metadata:
            raise EdgeIQAError(f"{self.path}: a Core ML model without edgeiqa metadata (not exported by edgeiqa)")
        try:
            self.metadata = json.loads(raw) if raw is not None else None
        except json.JSONDecodeError as exc:
            raise EdgeIQAError(f"{self.path}: the embedded edgeiqa metadata is not valid JSON ({exc})") from None
        self.input_names = list(desc["inputs"])
        self.input_shapes = {k: list(v) for k, v in desc["inputs"].items()}
        self.output_name = desc["outputs"][0]
        batch_dims = {s[0] if s else None for s in self.input_shapes.values()}
        only = next(iter(batch_dims), None)
        self.fixed_batch = only if len(batch_dims) == 1 and isinstance(only, int) else None
        if not is_macos():
            raise EdgeIQAError(f"{self.path}: {RUNS_ON} (Apple's Core ML framework), and this is {platform.system()}; "
                               "score it on a Mac, or export --format onnx or openvino to score here")
        from edgeiqa.export.formats import get_format, require_modules  # pragma: no cover - macOS only

        require_modules(get_format("coreml"), runtime=True, what=f"{self.path} is a Core ML model, which")  # pragma: no cover
        ct = import_coremltools()  # pragma: no cover
        self.version = ct.__version__  # pragma: no cover
        self.compute_units = compute_units  # pragma: no cover
        try:  # pragma: no cover
            self.model = ct.models.MLModel(str(self.path), compute_units=getattr(ct.ComputeUnit, compute_units))
        except Exception as exc:  # noqa: BLE001  # pragma: no cover
            raise EdgeIQAError(f"{self.path}: Core ML cannot load it ({_first_line(exc)})") from None

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover - macOS only
        inputs = {n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.input_names}
        n = len(next(iter(inputs.values())))
        outs = []
        for i in range(n):  # the package takes a batch of one: the runtime splits, this covers direct callers
            out = self.model.predict({k: v[i:i + 1] for k, v in inputs.items()})
            outs.append(np.asarray(out[self.output_name], dtype=np.float32).reshape(-1))
        return np.concatenate(outs)
