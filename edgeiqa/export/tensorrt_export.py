"""ONNX -> TensorRT 10 engine (fp32, fp16 or int8 with entropy calibration and a calibration cache).

Written against the TensorRT 10 Python API and gated: it runs only where `import tensorrt` works (>= 10)
and torch sees a CUDA GPU; anywhere else it raises EdgeIQAError naming exactly what is missing.

Choices (Ultralytics' lessons):
- the builder workspace is a memory-pool limit (`config.set_memory_pool_limit(WORKSPACE, ...)`), set
  apart from the optimisation profile's min/opt/max input shapes;
- int8 uses `IInt8EntropyCalibrator2` over real images through the runtime's views and writes a
  calibration cache beside the engine (re-used by the next build); fewer than 300 calibration images
  gives a warning;
- the head (every layer with an output of rank < 4: pooled statistics and the MLP) is kept in float32;
- the engine file is the plain serialised engine; the metadata goes in a `.json` sidecar.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path

MIN_INT8_CALIBRATION_IMAGES = 300
DEFAULT_WORKSPACE_GB = 4.0


def tensorrt_missing() -> list[str]:
    """What stops TensorRT from running here (empty when it can run)."""
    missing = []
    try:
        import tensorrt as trt

        major = int(str(trt.__version__).split(".")[0])
        if major < 10:
            missing.append(f"TensorRT >= 10 (found {trt.__version__})")
    except ImportError:
        missing.append("the `tensorrt` Python package (TensorRT 10: pip install 'edgeiqa[tensorrt]')")
    try:
        import torch

        if not torch.cuda.is_available():
            missing.append("a CUDA GPU (torch.cuda.is_available() is False)")
    except ImportError:
        missing.append("torch with CUDA (used for TensorRT device buffers)")
    return missing


def require_tensorrt() -> None:
    missing = tensorrt_missing()
    if missing:
        raise EdgeIQAError(f"TensorRT export needs {' and '.join(missing)}; use --format onnx / onnx-int8 here")


def profile_shapes(views: list[ViewSpec], dynamic_batch: bool, max_batch: int) -> dict[str, tuple]:
    """name -> (min, opt, max) shapes. Batch 1..max_batch when dynamic; `full` views 16..cap in H and W."""
    shapes = {}
    for v in views:
        h, w = v.size
        bmax = max_batch if dynamic_batch else 1
        bopt = max(1, bmax // 2) if dynamic_batch else 1
        if v.kind == "full":
            shapes[v.name] = ((1, 3, 16, 16), (bopt, 3, h, w), (bmax, 3, h, w))
        else:
            shapes[v.name] = ((1, 3, h, w), (bopt, 3, h, w), (bmax, 3, h, w))
    return shapes


def _make_calibrator(trt, batches: list[dict[str, np.ndarray]], names: list[str], cache: Path):
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = batches
            self.index = 0
            self.device_buffers = {}

        def get_batch_size(self):
            return int(next(iter(batches[0].values())).shape[0]) if batches else 1

        def get_batch(self, names_in):  # noqa: ARG002 - TensorRT passes the input names
            if self.index >= len(self.batches):
                return None
            b = self.batches[self.index]
            self.index += 1
            ptrs = []
            for name in names:
                t = torch.from_numpy(np.ascontiguousarray(b[name], dtype=np.float32)).cuda()
                self.device_buffers[name] = t  # keep alive until the next batch
                ptrs.append(int(t.data_ptr()))
            return ptrs

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data):
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()


def build_engine(onnx_path: str | Path, engine_path: str | Path, views: list[ViewSpec], *, fp16: bool = False,
                 int8: bool = False, calib_batches: list[dict[str, np.ndarray]] | None = None,
                 dynamic_batch: bool = False, max_batch: int = 8, workspace_gb: float | None = None) -> dict:
    """Build and write a plain TensorRT engine. Returns facts for the sidecar."""
    require_tensorrt()
    import tensorrt as trt

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch; the flag only exists (deprecated) in some 10.x.
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(1 << int(flag) if flag is not None else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeIQAError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    workspace = float(workspace_gb or DEFAULT_WORKSPACE_GB)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace * (1 << 30)))
    shapes = profile_shapes(views, dynamic_batch, max_batch)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in shapes:
            raise EdgeIQAError(f"ONNX input {name!r} is not one of the student's views {list(shapes)}")
        profile.set_shape(name, *shapes[name])
    config.add_optimization_profile(profile)
    info = {"precision": "int8" if int8 else "fp16" if fp16 else "fp32", "workspace_gb": workspace,
            "profile_shapes": {k: [list(s) for s in v] for k, v in shapes.items()},
            "tensorrt": trt.__version__, "calibration_cache": None, "calibration_images": 0}
    if fp16 or int8:
        if not builder.platform_has_fast_fp16:
            warnings.warn("this GPU has no fast fp16; the engine may not be faster than fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        if not calib_batches:
            raise EdgeIQAError("TensorRT int8 needs calibration images (--calib SPEC)")
        if not builder.platform_has_fast_int8:
            warnings.warn("this GPU has no fast int8; the engine may not be faster than fp16")
        n = len(calib_batches)
        if n < MIN_INT8_CALIBRATION_IMAGES:
            warnings.warn(f"int8 calibration on {n} images (< {MIN_INT8_CALIBRATION_IMAGES}): ranges may be poor; "
                          "give more with --calib SPEC --imgs N")
        config.set_flag(trt.BuilderFlag.INT8)
        cache = engine_path.with_suffix(".calib.cache")
        config.int8_calibrator = _make_calibrator(trt, calib_batches, [v.name for v in views], cache)
        config.set_calibration_profile(profile)
        info["calibration_cache"] = str(cache)
        info["calibration_images"] = n
        # keep the head in float: pooled statistics and the MLP (layers with outputs of rank < 4)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        kept = 0
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            out = layer.get_output(0) if layer.num_outputs else None
            if out is not None and out.dtype in (trt.float32, trt.float16) and len(out.shape) < 4:
                layer.precision = trt.float32
                layer.set_output_type(0, trt.float32)
                kept += 1
        info["float_layers"] = kept
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeIQAError("TensorRT failed to build the engine (see the TensorRT log above)")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(serialized)  # plain engine: no header, metadata goes to the sidecar
    return info


class EngineRunner:
    """Runs a serialised TensorRT 10 engine with torch CUDA tensors as device buffers."""

    def __init__(self, path: str | Path, device: str | None = None, input_order: list[str] | None = None):
        missing = tensorrt_missing()
        if missing:
            raise EdgeIQAError(f"cannot run TensorRT engine {path}: missing {' and '.join(missing)}")
        import tensorrt as trt
        import torch

        self.path = Path(path)
        if not self.path.is_file():
            raise EdgeIQAError(f"engine not found: {self.path}")
        self.torch = torch
        self.device = device or "cuda:0"
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise EdgeIQAError(f"{self.path}: TensorRT could not deserialise the engine "
                               "(built by another TensorRT version or for another GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.input_names = [n for n in (input_order or inputs) if n in inputs]
        mins, _, maxs = self.engine.get_tensor_profile_shape(self.input_names[0], 0)
        self.max_batch = int(maxs[0])
        self.fixed_batch = self.max_batch if int(mins[0]) == self.max_batch else None

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        keep = []
        for name in self.input_names:
            t = torch.from_numpy(np.ascontiguousarray(feeds[name], dtype=np.float32)).to(self.device)
            keep.append(t)
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, int(t.data_ptr()))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=torch.float32, device=self.device)
        self.context.set_tensor_address(self.output_name, int(out.data_ptr()))
        stream = torch.cuda.current_stream(torch.device(self.device))
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EdgeIQAError("TensorRT execution failed")
        stream.synchronize()
        return out.cpu().numpy().reshape(-1)
