"""This machine's dense-compute ceiling: how many GMAC/s a large GEMM and a plain 3x3 convolution reach
on each backend, at the bench's thread count, so every format's achieved GMAC/s can be read as a
fraction of what the hardware does on its best-case kernel.

Kernels (float32, batch 1, one fused multiply-add = one MAC, as in the GMAC counts):
- GEMM: (1024 x 1024) @ (1024 x 1024) = 1.07 GMAC per call;
- conv: 3x3, 64 -> 64 channels, stride 1, padding 1 on a 64 x 112 x 112 input = 0.46 GMAC per call.
On torch (the torch format and the teacher row) via `torch.matmul` / `F.conv2d`; on onnxruntime (every
ONNX format) via a one-node MatMul / Conv model run by the CPU execution provider; on OpenVINO (the openvino
formats) via one-op models compiled on the CPU plugin with the runtime's settings. Each kernel gets two
warm-up calls and is then timed until `seconds` pass (at least 3 calls); the fastest call gives the
rate (a ceiling is a best case, and another process on the machine can only slow a call down).
A backend's ceiling is the better of its two kernels. Int8 formats can exceed the float32 ceiling.
"""

from __future__ import annotations

import time

import numpy as np

GEMM_N = 1024
CONV = {"cin": 64, "cout": 64, "hw": 112, "k": 3}


def _gemm_macs() -> float:
    return float(GEMM_N) ** 3


def _conv_macs() -> float:
    c = CONV
    return float(c["cout"] * c["hw"] * c["hw"] * c["cin"] * c["k"] * c["k"])


def _rate(fn, macs: float, seconds: float) -> float:
    """GMAC/s of `fn` (fastest call after two warm-up calls, timed for `seconds`, >= 3 calls)."""
    fn()
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    return macs / float(np.min(times)) / 1e9


def torch_ceiling(threads: int, seconds: float = 0.4, device: str = "cpu") -> dict:
    import torch
    import torch.nn.functional as F

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(GEMM_N, GEMM_N, generator=g).to(device)
        b = torch.randn(GEMM_N, GEMM_N, generator=g).to(device)
        c = CONV
        x = torch.randn(1, c["cin"], c["hw"], c["hw"], generator=g).to(device)
        w = torch.randn(c["cout"], c["cin"], c["k"], c["k"], generator=g).to(device)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

        def gemm():
            with torch.inference_mode():
                torch.matmul(a, b)
            sync()

        def conv():
            with torch.inference_mode():
                F.conv2d(x, w, padding=1)
            sync()

        gemm_rate, conv_rate = _rate(gemm, _gemm_macs(), seconds), _rate(conv, _conv_macs(), seconds)
    finally:
        torch.set_num_threads(old)
    return _entry(gemm_rate, conv_rate, f"torch {torch.__version__} ({device})")


def _ort_model(kind: str):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "gemm":
        w = numpy_helper.from_array(rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32), "w")
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [GEMM_N, GEMM_N])
    else:
        c = CONV
        w = numpy_helper.from_array(rng.standard_normal((c["cout"], c["cin"], c["k"], c["k"])).astype(np.float32), "w")
        node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c["cin"], c["hw"], c["hw"]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([node], f"ceiling_{kind}", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def onnxruntime_ceiling(threads: int, seconds: float = 0.4) -> dict:
    import onnxruntime as ort

    rates = {}
    rng = np.random.default_rng(1)
    for kind, macs in (("gemm", _gemm_macs()), ("conv", _conv_macs())):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        sess = ort.InferenceSession(_ort_model(kind), opts, providers=["CPUExecutionProvider"])
        shape = [d for d in sess.get_inputs()[0].shape]
        feed = {"x": rng.standard_normal(shape).astype(np.float32)}
        rates[kind] = _rate(lambda: sess.run(None, feed), macs, seconds)
    return _entry(rates["gemm"], rates["conv"], f"onnxruntime {ort.__version__} CPUExecutionProvider")


def openvino_ceiling(threads: int, seconds: float = 0.4) -> dict:
    """The same two kernels built as one-op OpenVINO models, compiled on the CPU plugin as the runtime compiles."""
    from edgeiqa.export.openvino_export import DEVICE, _compile_config, import_openvino

    ov = import_openvino()
    from openvino import opset13 as ops

    rng = np.random.default_rng(1)
    c = CONV
    w_gemm = rng.standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    w_conv = rng.standard_normal((c["cout"], c["cin"], c["k"], c["k"])).astype(np.float32)
    x_gemm = ops.parameter([GEMM_N, GEMM_N], np.float32, name="x")
    x_conv = ops.parameter([1, c["cin"], c["hw"], c["hw"]], np.float32, name="x")
    models = {"gemm": (ov.Model([ops.matmul(x_gemm, ops.constant(w_gemm), False, False)], [x_gemm], "ceiling_gemm"),
                       _gemm_macs(), (GEMM_N, GEMM_N)),
              "conv": (ov.Model([ops.convolution(x_conv, ops.constant(w_conv), [1, 1], [1, 1], [1, 1], [1, 1])],
                                [x_conv], "ceiling_conv"), _conv_macs(), (1, c["cin"], c["hw"], c["hw"]))}
    rates = {}
    core = ov.Core()
    for kind, (model, macs, shape) in models.items():
        request = core.compile_model(model, DEVICE, _compile_config(threads)).create_infer_request()
        feed = {"x": rng.standard_normal(shape).astype(np.float32)}
        rates[kind] = _rate(lambda: request.infer(feed, share_inputs=True), macs, seconds)
    return _entry(rates["gemm"], rates["conv"], f"OpenVINO {ov.__version__} CPU plugin")


def _entry(gemm: float, conv: float, backend: str) -> dict:
    return {"gemm_gmacs_per_s": round(gemm, 2), "conv_gmacs_per_s": round(conv, 2),
            "best_gmacs_per_s": round(max(gemm, conv), 2), "backend": backend}


def machine_ceiling(threads: int, backends: tuple[str, ...] = ("torch", "onnxruntime"), seconds: float = 0.4,
                    device: str = "cpu") -> dict:
    """{backend: {gemm_gmacs_per_s, conv_gmacs_per_s, best_gmacs_per_s, backend}} for the backends asked.

    A backend whose kernel cannot run here gets {"error": reason} instead of rates."""
    out: dict = {"threads": threads, "kernels": {
        "gemm": f"float32 ({GEMM_N}x{GEMM_N}) @ ({GEMM_N}x{GEMM_N}), {_gemm_macs() / 1e9:.3f} GMAC/call",
        "conv": f"float32 3x3 conv {CONV['cin']}->{CONV['cout']} on {CONV['hw']}x{CONV['hw']}, "
                f"{_conv_macs() / 1e9:.3f} GMAC/call"}}
    for name in backends:
        try:
            if name == "torch":
                out[name] = torch_ceiling(threads, seconds, device=device)
            elif name == "onnxruntime":
                out[name] = onnxruntime_ceiling(threads, seconds)
            elif name == "openvino":
                out[name] = openvino_ceiling(threads, seconds)
        except Exception as exc:  # noqa: BLE001 - reported, never fatal
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
