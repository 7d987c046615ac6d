"""Metadata that travels with every exported artefact, and the GMAC recount on the exported ONNX graph.

Every artefact carries one JSON document (profile, views, input sizes, normalisation, logistic mapping,
GMACs, parity, source checkpoint hash, versions):
- inside ONNX models as `metadata_props` under the key `edgeiqa`;
- inside OpenVINO IR (.xml) in its `rt_info` under the key `edgeiqa` (edgeiqa/export/openvino_export.py);
- always as a `.json` sidecar beside the artefact (the only place for TensorRT engines and .pt files:
  an engine file stays a plain engine, never with a header). Files that belong to the artefact (OpenVINO's
  .bin weights) are listed there with their sha256 (`companions`).

GMAC recount. `count_onnx_gmacs` walks the exported graph after ONNX shape inference at the deploy input
sizes (batch 1) and counts, like fvcore, one fused multiply-add as one MAC:
- Conv: numel(output) x (C_in / groups) x prod(kernel); ConvTranspose: N x prod(input spatial) x
  numel(weight); Gemm: M x K x N; MatMul: numel(output) x K. Biases are not counted (fvcore neither).
- the elementwise ops fvcore also counts, with fvcore's weights: BatchNormalization 2 x numel(input)
  (inference, affine), Layer/Instance/GroupNormalization 5 x numel(input), Resize numel(output)
  (nearest) or 4 x numel(output) (linear), GlobalAveragePool numel(input).
fvcore counts BatchNorm layers that the exporters fold into the preceding convolution, so they are
no longer in the graph; `folded_batchnorm` (fvcore's batch_norm count of the torch model minus the
BatchNormalization nodes still present) is added back before comparing with the card, and every
part is reported separately.

No torch import at module level: the runtime may read metadata without the training stack.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path, write_json_atomic

METADATA_KEY = "edgeiqa"
METADATA_VERSION = 1
GMACS_TOLERANCE = 0.01  # relative difference allowed between the ONNX recount and the card


# ----------------------------------------------------------------------------------------------------
# GMACs on the ONNX graph


def _prod(values) -> int:
    return int(math.prod(int(v) for v in values))


def _shape_map(model) -> dict[str, list[int] | None]:
    shapes: dict[str, list[int] | None] = {}
    g = model.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            shapes[vi.name] = None
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        shapes[vi.name] = None if any(d is None for d in dims) else dims
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    for node in g.node:  # Constant nodes (weights kept as constants by some exporters)
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = list(attr.t.dims)
    return shapes


def _attr(node, name, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _node_macs(node, shapes) -> tuple[int | None, str]:
    """(MACs, kind) of one node in fvcore's convention; (None, kind) when a needed shape is unknown."""
    op = node.op_type

    def s(i, out=False):
        names = node.output if out else node.input
        return shapes.get(names[i]) if i < len(names) and names[i] else None

    if op == "Conv":
        out, w = s(0, True), s(1)
        return (None if out is None or w is None else _prod(out) * _prod(w[1:])), "mac"
    if op == "ConvTranspose":
        x, w = s(0), s(1)
        return (None if x is None or w is None else x[0] * _prod(x[2:]) * _prod(w)), "mac"
    if op == "Gemm":
        a, out = s(0), s(0, True)
        if a is None or out is None:
            return None, "mac"
        k = a[0] if _attr(node, "transA", 0) else a[1]
        return _prod(out) * k, "mac"
    if op == "MatMul":
        a, out = s(0), s(0, True)
        return (None if a is None or out is None else _prod(out) * a[-1]), "mac"
    if op == "BatchNormalization":
        x = s(0)
        return (None if x is None else 2 * _prod(x)), "norm"
    if op in ("LayerNormalization", "InstanceNormalization", "GroupNormalization"):
        x = s(0)
        return (None if x is None else 5 * _prod(x)), "norm"
    if op == "Resize":
        out = s(0, True)
        mode = _attr(node, "mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        return (None if out is None else (1 if mode == "nearest" else 4) * _prod(out)), "norm"
    if op == "GlobalAveragePool":
        x = s(0)
        return (None if x is None else _prod(x)), "norm"
    return 0, "other"


def _subgraph_nodes(graph):
    for node in graph.node:
        yield node
        for a in node.attribute:  # If/Loop bodies
            if a.type == a.GRAPH:
                yield from _subgraph_nodes(a.g)


def count_onnx_gmacs(model_or_path, input_shapes: dict[str, list[int]]) -> dict:
    """MACs of an ONNX model at concrete input shapes (name -> [N, C, H, W]), by op type.

    Returns {"mac_gmacs", "norm_gmacs", "by_op": {op: gmacs}, "uncounted": [node names], "input_shapes"}.
    """
    import onnx

    model = onnx.load(str(model_or_path), load_external_data=True) if isinstance(model_or_path, (str, Path)) else model_or_path
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            shape = input_shapes[inp.name]
            if len(dims) != len(shape):
                raise EdgeIQAError(f"input {inp.name!r} has rank {len(dims)}, asked to count at {shape}")
            for d, v in zip(dims, shape):
                d.Clear()
                d.dim_value = int(v)
    del m.graph.value_info[:]
    for out in m.graph.output:  # let inference fill the output too
        for d in out.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - inference failures only leave shapes unknown
        warnings.warn(f"ONNX shape inference failed ({exc}); GMACs may be incomplete")
    shapes = _shape_map(m)
    missing = _missing_shape_names(m, shapes)
    if missing:  # e.g. TorchScript exports whose pads are computed at run time: ask onnxruntime instead
        shapes.update(_shapes_by_running(m, input_shapes, missing))
    by_op: dict[str, int] = {}
    mac = norm = 0
    uncounted = []
    for node in _subgraph_nodes(m.graph):
        macs, kind = _node_macs(node, shapes)
        if macs is None:
            uncounted.append(node.name or node.op_type)
            continue
        if kind == "other" or macs == 0:
            continue
        by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
        if kind == "mac":
            mac += macs
        else:
            norm += macs
    return {
        "mac_gmacs": mac / 1e9,
        "norm_gmacs": norm / 1e9,
        "by_op": {k: v / 1e9 for k, v in sorted(by_op.items())},
        "uncounted": uncounted,
        "input_shapes": {k: list(v) for k, v in input_shapes.items()},
    }


def _missing_shape_names(model, shapes) -> list[str]:
    need = set()
    for node in _subgraph_nodes(model.graph):
        macs, _ = _node_macs(node, shapes)
        if macs is None:
            need.update(n for n in list(node.input) + list(node.output) if n and shapes.get(n) is None)
    return sorted(need)


def _shapes_by_running(model, input_shapes: dict[str, list[int]], names: list[str]) -> dict[str, list[int]]:
    """Shapes of `names` found by running the model once on zeros at the given input shapes."""
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort

        m = onnx.ModelProto()
        m.CopyFrom(model)
        present = {o.name for o in m.graph.output}
        for n in names:
            if n not in present:
                m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {i.name: np.zeros(input_shapes[i.name], np.float32) for i in sess.get_inputs() if i.name in input_shapes}
        outs = sess.run(names, feeds)
        return {n: list(o.shape) for n, o in zip(names, outs)}
    except Exception as exc:  # noqa: BLE001 - the nodes stay uncounted and are reported
        warnings.warn(f"could not infer shapes by running the model ({type(exc).__name__}: {exc})")
        return {}


def fvcore_batchnorm_gmacs(model, inputs) -> float | None:
    """fvcore's batch_norm share of the torch model (what the exported graph folds into convs)."""
    try:
        from fvcore.nn import FlopCountAnalysis

        fa = FlopCountAnalysis(model, tuple(inputs))
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            by_op = fa.by_operator()
        return float(by_op.get("batch_norm", 0)) / 1e9
    except Exception as exc:  # noqa: BLE001 - the comparison then reports the plain graph count
        warnings.warn(f"fvcore could not count the torch model's BatchNorm ({exc})")
        return None


def gmacs_check(card_gmacs: float | None, onnx_count: dict, batchnorm_gmacs: float | None) -> dict:
    """Compare the recount on the exported graph with the card's fvcore GMACs."""
    visible_bn = onnx_count["by_op"].get("BatchNormalization", 0.0)
    folded = max(0.0, batchnorm_gmacs - visible_bn) if batchnorm_gmacs is not None else None
    fv_conv = onnx_count["mac_gmacs"] + onnx_count["norm_gmacs"] + (folded or 0.0)
    out = {
        "card": card_gmacs,
        "onnx_graph_macs": round(onnx_count["mac_gmacs"], 6),
        "onnx_graph_norm_ops": round(onnx_count["norm_gmacs"], 6),
        "folded_batchnorm": None if folded is None else round(folded, 6),
        "onnx_fvcore_convention": round(fv_conv, 6),
        "by_op": {k: round(v, 6) for k, v in onnx_count["by_op"].items()},
        "uncounted_nodes": onnx_count["uncounted"],
        "input_shapes": onnx_count["input_shapes"],
        "convention": "1 MAC = 1 fused multiply-add (fvcore); graph count + BatchNorm folded by the exporter",
        "rel_diff": None,
        "match": None,
    }
    if card_gmacs:
        rel = abs(fv_conv - card_gmacs) / card_gmacs
        out["rel_diff"] = round(rel, 6)
        out["match"] = bool(rel <= GMACS_TOLERANCE and not onnx_count["uncounted"])
    return out


# ----------------------------------------------------------------------------------------------------
# Reading and writing


def sidecar_path(artifact: str | Path) -> Path:
    return Path(artifact).with_suffix(".json")


def write_sidecar(artifact: str | Path, metadata: dict) -> Path:
    return write_json_atomic(sidecar_path(artifact), metadata, sort_keys=True)


def embed_onnx_metadata(onnx_path: str | Path, metadata: dict) -> None:
    """Store the metadata JSON in the model's metadata_props under `edgeiqa` (replacing an old entry)."""
    import onnx

    model = onnx.load(str(onnx_path))
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata, sort_keys=True, default=str))
    with atomic_path(onnx_path) as tmp:
        onnx.save(model, str(tmp))


def _embedded_metadata(onnx_path: Path) -> dict | None:
    """The edgeiqa metadata stored inside an ONNX model, or None."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return None


def read_metadata(path: str | Path) -> dict:
    """The metadata of an artefact: from the ONNX model itself when present, else from the sidecar."""
    p = Path(path)
    if p.suffix == ".onnx" and p.exists():
        found = _embedded_metadata(p)
        if found is not None:
            return found
    side = sidecar_path(p)
    if side.exists():
        return json.loads(side.read_text())
    raise EdgeIQAError(f"{p}: no edgeiqa metadata (neither in the model nor in {side.name})")


# ----------------------------------------------------------------------------------------------------
# Which existing files edgeiqa wrote (export replaces only those without --force)


def _own_json(path: Path) -> dict | None:
    """The metadata document in a JSON file edgeiqa wrote as a sidecar, or None for any other file."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return doc if isinstance(doc, dict) and "edgeiqa_metadata" in doc else None


def _sha256(path: Path) -> str:
    from edgeiqa.provenance import sha256_file

    return sha256_file(path)  # a folder artefact (Core ML .mlpackage) by its tree hash


def is_own_sidecar(path: str | Path) -> bool:
    """Whether `path` is a metadata sidecar edgeiqa wrote."""
    try:
        return _own_json(Path(path)) is not None
    except Exception:  # noqa: BLE001 - a file that is not our JSON is not ours, whatever the parser says
        return False


def is_own_companion(path: str | Path) -> bool:
    """Whether `path` is a file that belongs to an artefact edgeiqa wrote (OpenVINO's .bin): the sidecar of the same
    name lists it with its current sha256."""
    p = Path(path)
    try:
        side = _own_json(sidecar_path(p))
        return side is not None and (side.get("companions") or {}).get(p.name) == _sha256(p)
    except Exception:  # noqa: BLE001 - unreadable: not ours
        return False


def is_own_artefact(path: str | Path) -> bool:
    """Whether edgeiqa wrote the artefact at `path`: an ONNX model carrying edgeiqa metadata, or a file whose
    edgeiqa sidecar names it and its current sha256 (an engine or .pt holds no metadata of its own)."""
    p = Path(path)
    try:
        if p.suffix == ".onnx":
            return _embedded_metadata(p) is not None
        side = _own_json(sidecar_path(p))
        return side is not None and side.get("artifact") == p.name and side.get("artifact_sha256") == _sha256(p)
    except Exception:  # noqa: BLE001 - unreadable or not a model: not ours (onnx raises its own DecodeError)
        return False
