"""torch -> ExecuTorch program (`.pte`) with the XNNPACK delegate, float32 or int8, and the runner the runtime and
the export's parity check share.

- Export: `torch.export.export` of the deployable student at batch 1 (one frame at a time, as a phone scores; a
  dynamic batch would plan its memory for the largest batch), `to_edge_transform_and_lower` with the
  `XnnpackPartitioner` (every op XNNPACK takes runs in its delegate; any other op runs on ExecuTorch's portable
  kernels, counted in the metadata), `to_executorch()`, written atomically.
- int8: PT2E post-training quantisation (`prepare_pt2e` / `convert_pt2e` from torchao) with the `XNNPACKQuantizer`,
  `get_symmetric_quantization_config(is_per_channel=True)` (int8 symmetric weights per output channel, int8
  activations), calibrated on the onnx-int8 calibration images. What stays in float, and why (the same rule as
  openvino-int8):
  * the head: every op after the spatial pooling (the pooled mean/std, LayerNorm, the MLP): a variance computed in
    int8 flattens the texture energy the score depends on;
  * the first backbone convolutions, only as many as the bar needs: starting from none, the first 1, 2, 4, 8 ...
    convolutions from the input (each in every view: `conv_layers`) are kept float until the SRCC of the quantised model against the float
    one on the *calibration* images reaches the row's bar (the parity images judge the result afterwards), at most
    half of them. `XNNPACKQuantizer.set_module_name(name, None)` asserts in this release, so the layers are kept
    float through the quantizer's filter function, by graph node. Every try is recorded.
- Metadata: a `.pte` has no key/value metadata field. The program gets a second method, `edgeiqa_metadata`, a
  constant method returning the metadata JSON (ExecuTorch's own way to ship facts with a program, as its LLM
  exports do for their settings); the `.json` sidecar carries the same document and is what the runtime reads
  first (reading the method costs a program load).

Torch-based like the format: the runtime imports torch (ExecuTorch's runtime takes torch tensors), never timm or
the training code.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import tempfile
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np

from edgeiqa.errors import EdgeIQAError
from edgeiqa.export.float_ladder import climb, float_layers_report

METHOD = "forward"
METADATA_METHOD = "edgeiqa_metadata"
PTE_MAGIC = b"ET"  # flatbuffer file identifier at bytes 4..8: "ET12" etc.


def executorch_version() -> str:
    from executorch.version import __version__

    return __version__


# ----------------------------------------------------------------------------------------------- exporting


def _example(views, batch: dict[str, np.ndarray] | None = None) -> tuple:
    import torch

    if batch is not None:
        return tuple(torch.from_numpy(np.ascontiguousarray(batch[v.name])) for v in views)
    return tuple(torch.zeros(1, 3, *v.size) for v in views)


def _export(model, views):
    import torch

    try:
        return torch.export.export(model, _example(views))
    except Exception as exc:  # noqa: BLE001 - torch.export raises many types for a graph it cannot capture
        raise EdgeIQAError(f"torch.export cannot capture this student for ExecuTorch: {_first_line(exc)}") from None


def _op_name(target) -> str:
    """aten::var.correction from an edge op (whose str is '<EdgeOpOverload: ...>: schema = aten::var.correction(...)')."""
    text = str(target)
    found = re.search(r"schema = ([\w:.]+)", text)
    return found.group(1) if found else getattr(target, "__name__", text)[:80]


def _lower(exported, metadata_doc: str) -> tuple[bytes, dict]:
    """(program bytes, facts) of an ExportedProgram lowered to XNNPACK."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()],
                                           constant_methods={METADATA_METHOD: metadata_doc})
        graph = edge.exported_program().graph_module.graph
        calls = [n for n in graph.nodes if n.op == "call_function" and "getitem" not in str(n.target)]
        delegates = sum(1 for n in calls if "executorch_call_delegate" in str(n.target))
        portable = sorted({_op_name(n.target) for n in calls if "executorch_call_delegate" not in str(n.target)})
        program = edge.to_executorch()
    except EdgeIQAError:
        raise
    except Exception as exc:  # noqa: BLE001 - an op without an ExecuTorch kernel, a lowering failure
        raise EdgeIQAError(f"ExecuTorch cannot lower this student: {_first_line(exc)}") from None
    return program.buffer, {"xnnpack_delegates": delegates, "ops_outside_xnnpack": portable}


def _write(data: bytes, out: Path) -> None:
    from edgeiqa.fileio import atomic_path

    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(data)


def _facts(lowered: dict) -> dict:
    return {"exporter": "torch.export -> executorch.exir.to_edge_transform_and_lower -> to_executorch",
            "executorch": executorch_version(), "partitioner": "XnnpackPartitioner", "batch": 1,
            "metadata_method": METADATA_METHOD, **lowered}


def export_fp32(model, views, out: Path, metadata_doc: str) -> dict:
    """Float32 `.pte` of the student. Returns facts for the metadata."""
    data, lowered = _lower(_export(model, views), metadata_doc)
    _write(data, out)
    return {**_facts(lowered), "weights": "float32"}


# ----------------------------------------------------------------------------------------------- int8


def _rank(node) -> int | None:
    val = node.meta.get("val") if hasattr(node, "meta") else None
    shape = getattr(val, "shape", None)
    return None if shape is None else len(shape)


def head_nodes(graph) -> list[str]:
    """Names of the nodes after the spatial pooling: a node that turns a 4-D feature map into a lower-rank tensor
    (the flatten before the pooled mean/std) and every node downstream of it (LayerNorm, the MLP, the score)."""
    head: set[str] = set()
    for node in graph.nodes:  # topological order
        if node.op != "call_function" or _rank(node) is None:
            continue
        inputs = [a for a in node.all_input_nodes]
        fed = any(a.name in head for a in inputs)
        pools = _rank(node) < 4 and any(_rank(a) == 4 and a.op != "get_attr" for a in inputs)
        if fed or pools:
            head.add(node.name)
    return [n.name for n in graph.nodes if n.name in head]


def conv_nodes(graph, head: list[str]) -> list[str]:
    skip = set(head)
    return [n.name for n in graph.nodes if n.op == "call_function" and "conv" in str(n.target) and n.name not in skip]


def conv_layers(graph, convs: list[str]) -> list[list[str]]:
    """The convolution nodes grouped by the backbone layer they run, in order from the input: one group holds that
    layer's node in every view (each view runs the backbone again), so keeping the first k layers float keeps them
    float for every view, not only for the view the graph happens to run first."""
    paths = _module_paths(graph)
    layers: dict[str, list[str]] = {}
    for name in convs:
        layers.setdefault(_layer_key(paths.get(name, name)), []).append(name)
    return list(layers.values())


def _layer_key(path: str) -> str:
    """A module path with the view's copy of the backbone (`view_backbones.N.`, see untie_views) named `backbone.`."""
    return re.sub(r"^view_backbones\.\d+\.", "backbone.", path)


def _module_paths(graph) -> dict[str, str]:
    """Node name -> the student's module it came from (e.g. backbone.conv_stem), for nodes that record one."""
    paths = {}
    for n in graph.nodes:
        stack = n.meta.get("nn_module_stack") or {}
        if stack:
            paths[n.name] = list(stack.values())[-1][0].replace("L['self'].", "").replace("L__self___", "")
    return paths


def _quantize(graph_module, views, batches, keep_float: set[str]):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    import torch

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    quantizer.set_filter_function(lambda node: node.name not in keep_float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_pt2e(copy.deepcopy(graph_module), quantizer)
        with torch.no_grad():
            for b in batches:
                prepared(*_example(views, b))
        return convert_pt2e(prepared)


def _scores(module, views, batches) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([np.asarray(module(*_example(views, b)), dtype=np.float64).reshape(-1) for b in batches])


def _count_quantized_convs(module) -> int:
    """Convolutions fed by a dequantised weight: the ones that run in int8 once lowered."""
    n = 0
    for node in module.graph.nodes:
        if node.op == "call_function" and "conv" in str(node.target) and len(node.args) > 1:
            w = node.args[1]
            if hasattr(w, "target") and "dequantize" in str(w.target):
                n += 1
    return n


def quantize_int8(model, views, out: Path, batches: list[dict[str, np.ndarray]], *, min_srcc: float,
                  metadata_doc: str) -> dict:
    """int8 `.pte` of the student calibrated on `batches` (see the module docstring for what stays float)."""
    import torch

    if not batches:
        raise EdgeIQAError("int8 calibration needs at least one image")
    model = copy.deepcopy(model).untie_views()  # XNNPACK's int8 delegate will not load weights shared by two views
    graph_module = _export(model, views).module()
    graph = graph_module.graph
    head = head_nodes(graph)
    layers = conv_layers(graph, conv_nodes(graph, head))
    paths = _module_paths(graph)

    def first(k: int) -> list[str]:  # the nodes of the first k layers, in every view
        return [n for layer in layers[:k] for n in layer]

    reference = _scores(model, views, batches)
    quantized, chosen, trials = climb(
        len(layers), lambda k: _quantize(graph_module, views, batches, set(head) | set(first(k))),
        lambda q: _scores(q, views, batches), reference, min_srcc, "executorch-int8",
        facts=lambda q: {"int8_convolutions": _count_quantized_convs(q)}, unit="convolutions")
    if not chosen["int8_convolutions"]:
        raise EdgeIQAError(f"int8 quantisation produced no int8 convolutions for {out}")
    k = chosen["float_backbone_layers"]
    exported = torch.export.export(quantized, _example(views))
    data, lowered = _lower(exported, metadata_doc)
    _write(data, out)
    import torchao

    return {
        **_facts(lowered),
        "scheme": "PT2E post-training quantisation (prepare_pt2e/convert_pt2e), XNNPACKQuantizer",
        "weights": "int8 symmetric per output channel", "activations": "int8 (symmetric config's activations)",
        "calibration": "observers over all calibration images", "calibration_batches": len(batches),
        "torchao": torchao.__version__,
        "int8_convolutions": chosen["int8_convolutions"],
        "float_nodes": len(head) + k,
        **float_layers_report({"nodes": len(head)},
                              {"names": [_layer_key(paths.get(layer[0], layer[0])) for layer in layers[:k]],
                               "nodes": first(k), "of": len(layers)},
                              k, trials, min_srcc, unit="convolutions",
                              judged_on="calibration images (the PT2E reference model in torch; the .pte itself is "
                              "judged by the parity check)"),
    }


# ----------------------------------------------------------------------------------------------- running


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return ((lines or [type(exc).__name__])[0])[:300]


@contextlib.contextmanager
def _captured_stderr():
    """ExecuTorch's C++ runtime logs (cpuinfo probing, load errors) go straight to file descriptor 2; they are caught
    here so a refusal stays one line, and the last of them explains a failed load. Yields a list filled on exit."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            import sys

            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        text = io.StringIO()  # ExecuTorch's Python bindings write some of its log lines to sys.stderr instead
        try:
            with contextlib.redirect_stderr(text):
                yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            both = sink.read().decode("utf-8", "replace") + "\n" + text.getvalue()
            lines.extend(ln.strip() for ln in both.splitlines() if ln.strip())


def _log_reason(lines: list[str], exc: BaseException) -> str:
    useful = [ln for ln in lines if "cpuinfo" not in ln and "midr" not in ln.lower() and "threadpool" not in ln]
    return (useful[-1] if useful else _first_line(exc))[:300]


_POOL_LOCK = threading.Lock()
_LIVE: "weakref.WeakSet[PTERunner]" = weakref.WeakSet()


def _use_threads(threads: int | None) -> None:
    """Size XNNPACK's thread pool (one per process). A program loaded before a resize keeps a pointer to the old pool
    and aborts the process on its next call (measured with executorch 1.5.1), so every live runner reloads its program
    on the new pool: the last count asked for is the one every ExecuTorch model of the process runs with."""
    if threads is None:
        return
    from executorch.extension.pybindings import portable_lib as pl

    with _POOL_LOCK:
        if int(pl._threadpool_get_thread_count()) == int(threads):
            return
        live = list(_LIVE)
        for r in live:
            r._lock.acquire()
        try:
            pl._unsafe_reset_threadpool(int(threads))
            for r in live:
                try:
                    r._load()
                except Exception:  # noqa: BLE001 - its file is gone or changed: that runner refuses its next call
                    r.method = None
                    _LIVE.discard(r)
        finally:
            for r in live:
                r._lock.release()


class PTERunner:
    """Loads an ExecuTorch program and runs its `forward` on the CPU (XNNPACK delegate, portable kernels for the rest):
    `run({input name: float32 NCHW}) -> (N,) float32`. Inputs are positional in a `.pte`; their names and order come
    from the metadata's `input_order`."""

    def __init__(self, path: str | Path, threads: int | None = None, input_order: list[str] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise EdgeIQAError(f"model not found: {self.path}")
        with open(self.path, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8 or head[4:6] != PTE_MAGIC:
            raise EdgeIQAError(f"{self.path}: not an ExecuTorch program (no ExecuTorch file identifier)")
        self.version = executorch_version().split("+")[0]
        self._lock = threading.Lock()
        with _captured_stderr() as log:  # the import probes the CPU and logs it; torchao warns on import
            import torch  # noqa: F401 - ExecuTorch's runtime takes and returns torch tensors

            try:
                _use_threads(threads)  # before this program loads: see _use_threads
                self._load()
            except EdgeIQAError:
                raise
            except Exception as exc:  # noqa: BLE001 - RuntimeError and others on a bad file
                error = exc
            else:
                error = None
        if error is not None:
            raise EdgeIQAError(f"{self.path}: not an ExecuTorch program that ExecuTorch {self.version} can load "
                               f"({_log_reason(log, error)})") from None
        _LIVE.add(self)
        meta = self.method.metadata
        self._shapes = [list(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())]
        batch_dims = {s[0] for s in self._shapes if s}
        self.fixed_batch = next(iter(batch_dims)) if len(batch_dims) == 1 else None
        self.name_inputs(input_order)

    def _load(self) -> None:
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(self.path)
        if METHOD not in program.method_names:
            raise EdgeIQAError(f"{self.path}: an ExecuTorch program without a {METHOD!r} method "
                               f"(methods: {', '.join(sorted(program.method_names))})")
        self.method = program.load_method(METHOD)
        self.program = program

    @property
    def threads(self) -> int:
        """The threads XNNPACK runs this program with (the process's pool)."""
        from executorch.extension.pybindings import portable_lib as pl

        return int(pl._threadpool_get_thread_count())

    def name_inputs(self, input_order: list[str] | None) -> None:
        """Name the positional inputs (the metadata's `input_order`); `input_<i>` without one."""
        names = list(input_order) if input_order else [f"input_{i}" for i in range(len(self._shapes))]
        if len(names) != len(self._shapes):
            raise EdgeIQAError(f"{self.path}: the program takes {len(self._shapes)} inputs but its metadata names "
                               f"{len(names)} ({', '.join(map(str, names))})")
        self.input_names = names
        self.input_shapes = dict(zip(names, self._shapes))

    def embedded_metadata(self) -> dict | None:
        """The metadata JSON held by the program's `edgeiqa_metadata` constant method, or None."""
        if METADATA_METHOD not in self.program.method_names:
            return None
        with _captured_stderr():
            out = self.program.load_method(METADATA_METHOD).execute([])
        doc = out[0] if out else None
        try:
            return json.loads(doc) if isinstance(doc, str) else None
        except json.JSONDecodeError as exc:
            raise EdgeIQAError(f"{self.path}: the embedded edgeiqa metadata is not valid JSON ({exc})") from None

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        inputs = [torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=np.float32)) for n in self.input_names]
        with self._lock:
            if self.method is None:
                raise EdgeIQAError(f"{self.path}: could not be reloaded after ExecuTorch's thread pool was resized")
            out = self.method.execute(inputs)
        return np.array(out[0].numpy(), dtype=np.float32).reshape(-1)
