"""Inference backends behind one small interface: `run({input name: float32 NCHW}) -> (N,) float32`.

- `OnnxBackend`  onnxruntime with an explicit provider list; after the session is created the provider
                 actually running must be the one asked for, else EdgeIQAError (onnxruntime otherwise
                 falls back to CPU silently).
- `TorchBackend` a student checkpoint (`student.pt`, a run folder, or an exported `.pt`).
- `OpenVINOBackend` an OpenVINO IR (`.xml` + `.bin`) on OpenVINO's CPU plugin (needs the `openvino` extra).
- `CoreMLBackend` a Core ML package (`.mlpackage` folder); runs on macOS only (needs the `coreml` extra): elsewhere
                 it checks the package and refuses with one line.
- `LiteRTBackend` a LiteRT `.tflite` on ai-edge-litert's interpreter (needs `ai-edge-litert`, in the `litert` extra).
- `ExecuTorchBackend` an ExecuTorch program (`.pte`, XNNPACK delegate) with its `.json` sidecar, on ExecuTorch's
                 runtime (needs the `executorch` extra; torch-based, as the format is).
- `TensorRTBackend` a TensorRT 10 engine with its `.json` sidecar (needs `tensorrt` and a CUDA GPU).

Only `TorchBackend`, the ExecuTorch one (its runtime takes torch tensors) and the TensorRT one (device buffers)
import torch, and only when constructed:
scoring with an ONNX, OpenVINO or LiteRT model never loads torch, timm or the training code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeiqa.bounds import usable_cores
from edgeiqa.errors import EdgeIQAError, did_you_mean

METADATA_KEY = "edgeiqa"
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
}


def _sidecar(path: Path) -> dict | None:
    side = path.with_suffix(".json")
    if side.exists():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise EdgeIQAError(f"{side}: metadata sidecar is not valid JSON: {exc}") from None
    return None


def resolve_providers(providers, device: str | None) -> list:
    """Explicit onnxruntime provider list from `providers` (names or aliases) or a device name."""
    if providers is None:
        dev = (device or "cpu").lower()
        if dev == "auto":  # as everywhere in edgeiqa: CUDA when this onnxruntime build has it, else the CPU
            import onnxruntime as ort

            dev = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
        if dev.startswith("cuda") or dev == "gpu":
            opts = {"device_id": int(dev.split(":")[1])} if ":" in dev else {}
            return [("CUDAExecutionProvider", opts) if opts else "CUDAExecutionProvider", "CPUExecutionProvider"]
        if dev != "cpu":
            raise EdgeIQAError(f"unknown device {device!r} for onnxruntime (use auto, cpu, cuda or cuda:N, or give providers)")
        return ["CPUExecutionProvider"]
    if isinstance(providers, (str, tuple)):
        providers = [providers]
    out = []
    for p in providers:
        if isinstance(p, tuple):
            out.append((PROVIDER_ALIASES.get(p[0].lower(), p[0]), p[1]))
        else:
            out.append(PROVIDER_ALIASES.get(str(p).lower(), str(p)))
    if not out:
        raise EdgeIQAError("empty provider list")
    return out


def check_threads(threads: int | None) -> int | None:
    if threads is not None and int(threads) < 1:
        raise EdgeIQAError(f"threads must be >= 1, got {threads}")
    return None if threads is None else int(threads)


def _provider_name(p) -> str:
    return p[0] if isinstance(p, tuple) else p


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, path: str | Path, providers=None, device: str | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise EdgeIQAError(f"model not found: {self.path}")
        threads = check_threads(threads)
        wanted = resolve_providers(providers, device)
        available = ort.get_available_providers()
        known = ort.get_all_providers()
        for p in wanted:
            name = _provider_name(p)
            if name not in available:
                hint = did_you_mean(name, [k for k in list(PROVIDER_ALIASES) + known if k != name])
                extra = " (install onnxruntime-gpu for CUDA)" if name == "CUDAExecutionProvider" else ""
                raise EdgeIQAError(
                    f"onnxruntime provider {name!r} is not available in this onnxruntime build{extra}{hint}; "
                    f"available: {', '.join(available)}"
                )
        opts = ort.SessionOptions()
        # An explicit count (all usable cores by default) so the number reported is the one used. Spinning on
        # (onnxruntime's default): without it every op wakes a sleeping thread, slow in a VM (docs/benchmarks.md).
        self.threads = threads or usable_cores()
        opts.intra_op_num_threads = self.threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=wanted)
        except Exception as exc:  # noqa: BLE001 - a corrupt model or an unsupported op
            raise EdgeIQAError(f"onnxruntime cannot load {self.path}: {exc}") from None
        running = self.session.get_providers()
        self.provider = running[0]
        if running[0] != _provider_name(wanted[0]):
            raise EdgeIQAError(
                f"asked onnxruntime for {_provider_name(wanted[0])} but the session runs on {running[0]} "
                f"(providers in use: {', '.join(running)}); refusing to run silently on the wrong device"
            )
        self.device = "cpu" if self.provider == "CPUExecutionProvider" else self.provider.replace("ExecutionProvider", "").lower()
        inputs = self.session.get_inputs()
        self.input_names = [i.name for i in inputs]
        self.input_shapes = {i.name: list(i.shape) for i in inputs}  # ints where static, else names/None
        batch_dims = {i.shape[0] for i in inputs}
        self.fixed_batch = next(iter(batch_dims)) if len(batch_dims) == 1 and isinstance(next(iter(batch_dims)), int) else None
        self.output_name = self.session.get_outputs()[0].name
        meta = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        try:
            self.metadata = json.loads(meta) if meta else _sidecar(self.path)
        except json.JSONDecodeError as exc:
            raise EdgeIQAError(f"{self.path}: the embedded edgeiqa metadata is not valid JSON ({exc})") from None

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        out = self.session.run([self.output_name], {n: feeds[n] for n in self.input_names})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


class TorchBackend:
    name = "torch"

    def __init__(self, path: str | Path, device: str | None = None, threads: int | None = None,
                 precision: str = "fp32"):
        import torch

        from edgeiqa.accel import resolve_accel
        from edgeiqa.students import load_student

        self.path = Path(path)
        # The same device/precision rules as training (auto, cuda:N, bf16/fp16 autocast on a GPU only).
        self.accel = resolve_accel(device or "cpu", precision)
        dev = str(self.accel.device)
        self.precision = self.accel.precision
        # One intra-op thread unless asked: torch's default (every core) was 4x slower on a loaded 2-core
        # machine (issue 9, defect 11), and with one thread a score does not depend on the batch it is in.
        self.threads = check_threads(threads) or 1
        torch.set_num_threads(self.threads)
        model, payload = load_student(self.path)
        if hasattr(model, "drop_training_heads"):
            model.drop_training_heads()
        self.torch = torch
        self.model = model.eval().to(dev)
        self.device = dev
        self.provider = f"torch-{dev}"
        self.input_names = list(model.view_names)
        self.input_shapes = {}  # a torch module takes any size; nothing to check against the metadata
        self.fixed_batch = None
        meta = dict(payload.get("meta") or {})
        from edgeiqa.export.metadata import METADATA_VERSION

        self.metadata = {
            "edgeiqa_metadata": METADATA_VERSION,
            "views": payload["views"],
            "logistic": meta.get("logistic"),
            "profile": meta.get("profile"),
            "student": payload.get("student"),
            "score_range": meta.get("score_range"),
            "format": "torch",
        }

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode(), self.accel.autocast():
            args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.input_names]
            out = self.model(*args)
        return out.float().cpu().numpy().reshape(-1)


def _cpu_only(path: Path, device: str | None, runs_on: str, kind: str) -> None:
    """One line when a device other than the CPU is asked of a CPU-only format."""
    if (device or "cpu").lower() not in ("cpu", "auto"):
        raise EdgeIQAError(f"{path.name} runs on {runs_on}; --device {device} is not supported for {kind} "
                           "(use --device cpu)")


class _RunnerBackend:
    """A backend whose runner (shared with the export's parity check) holds the inputs and runs the model."""

    def _adopt(self, runner) -> None:
        self.runner = runner
        self.input_names = runner.input_names
        self.input_shapes = runner.input_shapes
        self.fixed_batch = runner.fixed_batch

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner.run(feeds)


class OpenVINOBackend(_RunnerBackend):
    """An OpenVINO IR on the CPU plugin, fed the float32 NCHW views the runtime builds for every backend. The runner
    (shared with the export's parity check) lives with the OpenVINO export code and imports only openvino."""

    name = "openvino"

    def __init__(self, path: str | Path, device: str | None = None, threads: int | None = None):
        from edgeiqa.export.formats import get_format, require_modules

        self.path = Path(path)
        _cpu_only(self.path, device, "OpenVINO's CPU plugin", "OpenVINO models")
        require_modules(get_format("openvino"), runtime=True, what=f"{self.path} is an OpenVINO model, which")
        from edgeiqa.export.openvino_export import IRRunner

        self._adopt(IRRunner(self.path, threads=check_threads(threads) or usable_cores()))
        self.metadata = self.runner.metadata if self.runner.metadata is not None else _sidecar(self.path)
        self.device = "cpu"
        self.provider = f"OpenVINO {self.runner.version} CPU"
        self.threads = self.runner.threads


class CoreMLBackend(_RunnerBackend):
    """A Core ML ML program (`.mlpackage`), fed the float32 NCHW views the runtime builds for every backend. The
    runner (shared with the export's parity check) lives with the Core ML export code; off macOS it raises one line
    after checking the package (a corrupt or foreign package is named as such first)."""

    name = "coreml"

    def __init__(self, path: str | Path, device: str | None = None, threads: int | None = None):
        self.path = Path(path)
        if (device or "cpu").lower() not in ("cpu", "auto"):
            raise EdgeIQAError(f"{self.path.name} runs on Core ML, which picks its own compute units; --device {device} "
                               "is not supported for Core ML models")
        check_threads(threads)  # Core ML has no thread setting: a valid count is accepted, and threads reads None
        from edgeiqa.export.coreml_export import PackageRunner

        self._adopt(PackageRunner(self.path))  # pragma: no cover - below runs on macOS only
        self.metadata = self.runner.metadata  # pragma: no cover
        self.device = "coreml"  # pragma: no cover
        self.provider = f"Core ML (coremltools {self.runner.version}, {self.runner.compute_units})"  # pragma: no cover
        self.threads = None  # pragma: no cover


class LiteRTBackend(_RunnerBackend):
    """A LiteRT .tflite on the CPU interpreter (XNNPACK), explicit thread count, fed the float32 NCHW views the runtime
    builds for every backend (the graph's inputs are NCHW; int8 inputs are quantised inside the runner). The runner
    (shared with the export's parity check) lives with the LiteRT export code and imports only ai-edge-litert."""

    name = "litert"

    def __init__(self, path: str | Path, device: str | None = None, threads: int | None = None):
        from edgeiqa.export.formats import get_format, require_modules

        self.path = Path(path)
        _cpu_only(self.path, device, "LiteRT's CPU interpreter", "LiteRT models")
        require_modules(get_format("litert"), runtime=True, what=f"{self.path} is a LiteRT model, which")
        from edgeiqa.export.litert_export import TFLiteRunner

        runner = TFLiteRunner(self.path, threads=check_threads(threads) or usable_cores())
        self.metadata = runner.metadata if runner.metadata is not None else _sidecar(self.path)
        if runner.metadata is None and self.metadata:  # names from the sidecar when the file carries none
            runner = TFLiteRunner(self.path, threads=runner.threads, input_order=self.metadata.get("input_order"))
        self._adopt(runner)
        self.device = "cpu"
        self.provider = f"LiteRT {self.runner.version} CPU (XNNPACK)"
        self.threads = self.runner.threads


class ExecuTorchBackend(_RunnerBackend):
    """An ExecuTorch program run by ExecuTorch's runtime on the CPU. Inputs of a `.pte` are positional: their names
    come from the metadata (the sidecar, else the program's `edgeiqa_metadata` method). The runner is shared with
    the export's parity check."""

    name = "executorch"

    def __init__(self, path: str | Path, device: str | None = None, threads: int | None = None):
        from edgeiqa.export.formats import get_format, require_modules

        self.path = Path(path)
        _cpu_only(self.path, device, "ExecuTorch's CPU runtime (XNNPACK)", "ExecuTorch programs")
        require_modules(get_format("executorch"), runtime=True, what=f"{self.path} is an ExecuTorch program, which")
        from edgeiqa.export.executorch_export import PTERunner

        side = _sidecar(self.path)
        runner = PTERunner(self.path, threads=check_threads(threads) or usable_cores(),
                           input_order=(side or {}).get("input_order"))
        self.metadata = side if side is not None else runner.embedded_metadata()
        if side is None and self.metadata is not None:  # the names come from the embedded document
            runner.name_inputs(self.metadata.get("input_order"))
        self._adopt(runner)
        self.device = "cpu"
        self.provider = f"ExecuTorch {self.runner.version} XNNPACK"

    @property
    def threads(self) -> int:
        return self.runner.threads  # XNNPACK's pool is one per process: the count a later load asked for


class TensorRTBackend:
    """A TensorRT engine + its `.json` sidecar; the engine runner lives with the TensorRT export code."""

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str | None = None):
        from edgeiqa.export.tensorrt_export import EngineRunner

        self.path = Path(path)
        self.metadata = _sidecar(self.path)
        order = (self.metadata or {}).get("input_order")
        self.runner = EngineRunner(self.path, device=device, input_order=order)
        self.device = self.runner.device
        self.provider = "TensorRT"
        self.input_names = self.runner.input_names
        self.input_shapes = {}
        self.fixed_batch = self.runner.fixed_batch
        self.threads = None

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner.run(feeds)


def open_backend(path: str | Path, providers=None, device: str | None = None, threads: int | None = None,
                 precision: str | None = None):
    """The backend for `path`, chosen by suffix from the formats table. `precision` (fp32, bf16, fp16 autocast)
    applies to torch models only: an ONNX graph or a TensorRT engine runs at the precision it was exported at."""
    from edgeiqa.export.formats import backend_for_path

    p = Path(path)
    if not p.exists():
        raise EdgeIQAError(f"model not found: {p}")
    backend = backend_for_path(p)
    if backend != "torch" and (precision or "fp32").lower() != "fp32":
        raise EdgeIQAError(f"--precision {precision} applies to torch models (.pt, run folder); {p.name} runs at the "
                           f"precision it was exported at")
    if backend == "onnxruntime":
        return OnnxBackend(p, providers=providers, device=device, threads=threads)
    if providers is not None:
        raise EdgeIQAError(f"providers are an onnxruntime option; {p.name} runs on the {backend} backend")
    if backend == "tensorrt":
        return TensorRTBackend(p, device=None if (device or "auto").lower() == "auto" else device)
    if backend == "openvino":
        return OpenVINOBackend(p, device=device, threads=threads)
    if backend == "coreml":
        return CoreMLBackend(p, device=device, threads=threads)
    if backend == "litert":
        return LiteRTBackend(p, device=device, threads=threads)
    if backend == "executorch":
        return ExecuTorchBackend(p, device=device, threads=threads)
    return TorchBackend(p, device=device, threads=threads, precision=precision or "fp32")
