"""What the numbers were measured on: CPU model, cores, memory, GPU, thread count and library versions."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            import subprocess

            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.processor()
        except Exception:  # noqa: BLE001
            pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        return None
    return None


def library_versions() -> dict:
    from edgeiqa.provenance import package_versions

    return package_versions(extra=("scipy", "psutil", "tensorrt", "openvino", "nncf", "coremltools", "executorch", "torchao"))


def device_info(threads: int, device: str = "cpu") -> dict:
    import psutil

    cpu = cpu_model()
    logical = os.cpu_count()
    gpu = gpu_name()
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        providers = []
    name = f"{gpu} (GPU)" if device.startswith("cuda") and gpu else f"{cpu} ({logical} logical cores, {threads} threads used)"
    return {
        "name": name,
        "device": device,
        "cpu_model": cpu,
        "cpu_logical_cores": logical,
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu,
        "threads": threads,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "onnxruntime_providers": providers,
        "versions": library_versions(),
    }
