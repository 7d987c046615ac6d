"""torch -> ONNX for a deployable student (training heads dropped).

Graph contract (what the runtime and TensorRT rely on):
- one float32 input per view, named after the view (`resize`, `fragments`, `face`, ...), in the student's
  view order, NCHW, normalised as `edgeiqa.data.views.to_batch` does;
- one output `score` of shape (N,): the raw student score (the logistic mapping, if any, is applied by
  the runtime from the metadata);
- batch fixed at 1 unless `dynamic_batch`; `full` views have dynamic height and width (up to their cap).

The dynamo exporter (torch.export) is tried first; when it fails the TorchScript exporter
(`dynamo=False`) is used and the metadata records which one ran and why.
"""

from __future__ import annotations

import importlib
import io
import tempfile
import warnings
from contextlib import redirect_stdout
from pathlib import Path

from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path

OUTPUT_NAME = "score"
MAX_DYNAMIC_BATCH = 1024


def dummy_inputs(views: list[ViewSpec], batch: int):
    import torch

    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(batch, 3, *v.size, generator=g) for v in views)


def _dynamo_shapes(views: list[ViewSpec], dynamic_batch: bool):
    from torch.export import Dim

    batch = Dim("batch", min=1, max=MAX_DYNAMIC_BATCH) if dynamic_batch else None
    per_view = []
    for v in views:
        dims = {}
        if batch is not None:
            dims[0] = batch
        if v.kind == "full":
            dims[2] = Dim(f"{v.name}_height", min=16, max=v.size[0])
            dims[3] = Dim(f"{v.name}_width", min=16, max=v.size[1])
        per_view.append(dims or None)
    # forward(*views): torch.export sees one var-positional argument holding a tuple of tensors.
    return (tuple(per_view),)


def _legacy_axes(views: list[ViewSpec], dynamic_batch: bool) -> dict:
    axes = {}
    for v in views:
        dims = {}
        if dynamic_batch:
            dims[0] = "batch"
        if v.kind == "full":
            dims[2], dims[3] = f"{v.name}_height", f"{v.name}_width"
        if dims:
            axes[v.name] = dims
    if dynamic_batch:
        axes[OUTPUT_NAME] = {0: "batch"}
    return axes


def _export_dynamo(model, args, path, names, views, dynamic_batch, opset):
    import torch

    kwargs = dict(input_names=names, output_names=[OUTPUT_NAME], dynamo=True, external_data=False,
                  dynamic_shapes=_dynamo_shapes(views, dynamic_batch), verbose=False, optimize=True)
    if opset:
        kwargs["opset_version"] = opset
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), **kwargs)


def _export_torchscript(model, args, path, names, views, dynamic_batch, opset):
    import torch

    kwargs = dict(input_names=names, output_names=[OUTPUT_NAME], dynamo=False,
                  dynamic_axes=_legacy_axes(views, dynamic_batch) or None, do_constant_folding=True)
    if opset:
        kwargs["opset_version"] = opset
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), **kwargs)


def _simplify(model):
    """Run an installed simplifier (onnxslim, else onnxsim); (model, name or None, note)."""
    for mod, label in (("onnxslim", "onnxslim"), ("onnxsim", "onnxsim")):
        try:
            lib = importlib.import_module(mod)
        except ImportError:
            continue
        version = getattr(lib, "__version__", "?")
        try:
            if mod == "onnxslim":
                return lib.slim(model), f"{label} {version}", None
            simplified, ok = lib.simplify(model)
            if ok:
                return simplified, f"{label} {version}", None
            return model, None, f"{label} could not validate its result; kept the unsimplified graph"
        except Exception as exc:  # noqa: BLE001 - simplification is optional
            return model, None, f"{label} failed ({type(exc).__name__}: {exc}); kept the unsimplified graph"
    return model, None, "no simplifier installed (onnxslim or onnxsim); graph left as exported"


def export_onnx(model, views: list[ViewSpec], path: str | Path, *, dynamic_batch: bool = False,
                opset: int | None = None, exporter: str = "auto") -> dict:
    """Export `model` (eval mode, training heads dropped) to `path`. Returns facts for the metadata.

    exporter: "auto" (dynamo, falling back to TorchScript), "dynamo" or "torchscript".
    """
    import onnx
    import torch

    if exporter not in ("auto", "dynamo", "torchscript"):
        raise EdgeIQAError(f"unknown exporter {exporter!r} (auto, dynamo, torchscript)")
    names = list(getattr(model, "view_names", [v.name for v in views]))
    if names != [v.name for v in views]:
        raise EdgeIQAError(f"student view order {names} differs from the checkpoint's views {[v.name for v in views]}")
    if hasattr(model, "drop_training_heads"):
        model.drop_training_heads()
    model.eval()
    args = dummy_inputs(views, 2 if dynamic_batch else 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"exporter": None, "exporter_fallback_reason": None, "dynamic_batch": bool(dynamic_batch)}
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad():
            if exporter in ("auto", "dynamo"):
                try:
                    _export_dynamo(model, args, raw, names, views, dynamic_batch, opset)
                    info["exporter"] = "dynamo"
                except Exception as exc:  # noqa: BLE001 - any exporter failure → TorchScript fallback
                    if exporter == "dynamo":
                        raise EdgeIQAError(f"dynamo ONNX export failed: {type(exc).__name__}: {exc}") from None
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    info["exporter_fallback_reason"] = f"{type(exc).__name__}: {first[:300]}"
            if info["exporter"] is None:
                try:
                    _export_torchscript(model, args, raw, names, views, dynamic_batch, opset)
                except Exception as exc:  # noqa: BLE001
                    raise EdgeIQAError(f"ONNX export failed with both exporters: {type(exc).__name__}: {exc}") from None
                info["exporter"] = "torchscript"
        onnx_model = onnx.load(str(raw), load_external_data=True)
    onnx_model, info["simplifier"], info["simplifier_note"] = _simplify(onnx_model)
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise EdgeIQAError(f"exported ONNX model fails onnx.checker: {exc}") from None
    got_inputs = [i.name for i in onnx_model.graph.input]
    got_outputs = [o.name for o in onnx_model.graph.output]
    if got_inputs != names or got_outputs != [OUTPUT_NAME]:
        raise EdgeIQAError(f"exported graph has inputs {got_inputs} and outputs {got_outputs}; expected {names} -> {OUTPUT_NAME}")
    info["shared_initializers"] = share_identical_initializers(onnx_model)
    with atomic_path(path) as tmp_out:
        onnx.save(onnx_model, str(tmp_out))
    info["opset"] = next((o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")), None)
    info["checker"] = "passed (full_check)"
    info["inputs"] = describe_inputs(onnx_model)
    return info


def share_identical_initializers(onnx_model) -> int:
    """Keep one initializer per distinct tensor (type, shape, bytes); every user reads that one.

    Each view runs the same backbone, so graph passes that rewrite weights per node (BatchNorm folding in
    the exporter or in quantisation pre-processing) leave one copy of each weight per view; sharing them
    again keeps the file at one backbone. Returns how many initializers were removed.
    """
    from onnx import numpy_helper

    g = onnx_model.graph
    overridable = {i.name for i in g.input}  # an initializer that is also a graph input may be fed: leave it
    first: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    kept = []
    for init in g.initializer:
        if init.name in overridable or init.data_location == init.EXTERNAL:
            kept.append(init)
            continue
        key = (init.data_type, tuple(init.dims), numpy_helper.to_array(init).tobytes())
        if key in first:
            rename[init.name] = first[key]
        else:
            first[key] = init.name
            kept.append(init)
    if not rename:
        return 0
    for node in _all_nodes(g):
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for i, out in enumerate(g.output):
        if out.name in rename:  # a graph output that is a weight: keep its name through an Identity
            raise EdgeIQAError(f"graph output {out.name!r} is an initializer; cannot share it")
    del g.initializer[:]
    g.initializer.extend(kept)
    stale = [vi for vi in g.value_info if vi.name in rename]
    for vi in stale:
        g.value_info.remove(vi)
    return len(rename)


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for a in node.attribute:  # If/Loop bodies read outer-scope names too
            if a.type == a.GRAPH:
                yield from _all_nodes(a.g)
            elif a.type == a.GRAPHS:
                for sub in a.graphs:
                    yield from _all_nodes(sub)


def describe_inputs(onnx_model) -> list[dict]:
    out = []
    for inp in onnx_model.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in inp.type.tensor_type.shape.dim]
        out.append({"name": inp.name, "shape": dims})
    return out
