"""The formats table: one row per deployable format. Export, the runtime, bench and every "unsupported"
message read it, so a format is added (or a flag allowed) in exactly one place.

Import-light on purpose (no torch, no onnx): the runtime reads this table to pick a backend by suffix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeiqa.errors import EdgeIQAError, did_you_mean
from edgeiqa.registry import Registry

# Every export flag, with the CLI spelling and what it means (used for help text and error messages).
FLAGS: dict[str, tuple[str, str]] = {
    "dynamic_batch": ("--dynamic-batch", "batch dimension left dynamic (default: fixed batch of 1)"),
    "calib": ("--calib SPEC", "dataset spec of real images for calibration and the parity check"),
    "imgs": ("--imgs N", "how many calibration/parity images to use"),
    "opset": ("--opset N", "ONNX opset version"),
    "exporter": ("--exporter E", "torch exporter: auto (dynamo, falling back to torchscript), dynamo or torchscript"),
    "fp16": ("--fp16", "let TensorRT use fp16 kernels"),
    "int8": ("--int8", "let TensorRT use int8 kernels (entropy calibration with a cache file)"),
    "workspace": ("--workspace GB", "TensorRT builder workspace (memory pool) limit in GiB"),
    "max_batch": ("--max-batch N", "largest batch of the TensorRT optimisation profile (with --dynamic-batch)"),
}


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str  # file suffix of the artefact; the runtime picks its backend by it
    filename: str  # default artefact name inside RUN/export/
    device: str  # "CPU/GPU" or "GPU"
    flags: tuple[str, ...]  # keys of FLAGS this format accepts
    backend: str  # runtime backend: torch | onnxruntime | openvino | coreml | litert | executorch | tensorrt
    description: str
    # Parity bar against torch on real images: an absolute bound on |score diff| or a minimum SRCC.
    parity_max_abs: float | None = None
    parity_min_srcc: float | None = None
    requires: tuple[str, ...] = ()  # importable modules the export needs beyond the base install
    extra: str | None = None  # the pip extra that installs `requires` (named in the "not installed" message)
    companions: tuple[str, ...] = ()  # suffixes of files that belong to the artefact (OpenVINO's .bin weights)
    runtime_requires: tuple[str, ...] = ()  # importable modules the runtime needs to run the artefact
    folder: bool = False  # the artefact is a folder (Core ML's .mlpackage), not a file

    @property
    def sidecar_suffix(self) -> str:
        return ".json"

    def cli_flags(self) -> str:
        return " ".join(FLAGS[f][0] for f in self.flags) or "(none)"


_ONNX_FLAGS = ("dynamic_batch", "calib", "imgs", "opset", "exporter")

# The table (one registry, edgeiqa/registry.py): name -> row, in this order.
FORMATS: Registry[Format] = Registry("export format", Format)
FORMATS.add(Format("torch", ".pt", "student-torch.pt", "CPU/GPU", (), "torch",
                   "the deployable PyTorch checkpoint (no training heads) + .json metadata", parity_max_abs=0.0))
FORMATS.add(Format("onnx", ".onnx", "student.onnx", "CPU/GPU", _ONNX_FLAGS, "onnxruntime",
                   "float32 ONNX, checked and parity-tested against torch", parity_max_abs=1e-4))
FORMATS.add(Format("onnx-fp16", ".onnx", "student-fp16.onnx", "CPU/GPU", _ONNX_FLAGS, "onnxruntime",
                   "ONNX with float16 weights and compute; inputs and output stay float32", parity_min_srcc=0.99))
FORMATS.add(Format("onnx-int8", ".onnx", "student-int8.onnx", "CPU/GPU", _ONNX_FLAGS, "onnxruntime",
                   "onnxruntime static int8 quantisation (QDQ, per-channel weights, head kept in float), "
                   "calibrated on real images", parity_min_srcc=0.98))
# OpenVINO IR, converted from the float32 ONNX graph the `onnx` row exports; int8 through NNCF's post-training
# quantisation on the same calibration images as onnx-int8 (edgeiqa/export/openvino_export.py).
FORMATS.add(Format("openvino", ".xml", "student-openvino.xml", "CPU", _ONNX_FLAGS, "openvino",
                   "OpenVINO IR (.xml + .bin weights), float32, converted from the ONNX graph; CPU plugin",
                   parity_max_abs=1e-4, requires=("openvino",), extra="openvino", companions=(".bin",),
                   runtime_requires=("openvino",)))
FORMATS.add(Format("openvino-int8", ".xml", "student-openvino-int8.xml", "CPU", _ONNX_FLAGS, "openvino",
                   "OpenVINO IR int8 (NNCF post-training quantisation, head and sensitive early layers kept in "
                   "float), calibrated on real images", parity_min_srcc=0.99, requires=("openvino", "nncf"),
                   extra="openvino", companions=(".bin",), runtime_requires=("openvino",)))
# Core ML ML program (.mlpackage folder), converted from the torch student (torch.export) by coremltools; prediction needs
# macOS, so on Linux the export is checked (spec, metadata, int8 weights) but not run (edgeiqa/export/coreml_export.py).
_COREML_FLAGS = ("calib", "imgs")  # fixed batch of 1 (a phone scores one photo at a time)
FORMATS.add(Format("coreml", ".mlpackage", "student-coreml.mlpackage", "macOS/iOS", _COREML_FLAGS, "coreml",
                   "Core ML ML program (.mlpackage folder), float16 weights and compute, iOS 16+; runs on macOS only",
                   parity_min_srcc=0.99, requires=("coremltools",), extra="coreml", runtime_requires=("coremltools",),
                   folder=True))
FORMATS.add(Format("coreml-int8", ".mlpackage", "student-coreml-int8.mlpackage", "macOS/iOS", _COREML_FLAGS, "coreml",
                   "Core ML ML program with int8 weights (coremltools.optimize linear quantisation, per channel), "
                   "float16 compute; runs on macOS only", parity_min_srcc=0.99, requires=("coremltools",),
                   extra="coreml", runtime_requires=("coremltools",), folder=True))
# LiteRT (.tflite; file names unlike the ONNX rows': the .json sidecars would collide), converted from the student by litert-torch (static shapes, batch 1, NCHW inputs); fp16 weights
# and int8 through ai-edge-quantizer, int8 calibrated on the onnx-int8 images (edgeiqa/export/litert_export.py).
_LITERT = dict(extra="litert", runtime_requires=("ai_edge_litert",))
FORMATS.add(Format("litert", ".tflite", "student-litert.tflite", "CPU", ("calib", "imgs"), "litert",
                   "LiteRT (.tflite) float32, converted by litert-torch; batch 1; LiteRT interpreter (XNNPACK)",
                   parity_max_abs=1e-4, requires=("litert_torch",), **_LITERT))
FORMATS.add(Format("litert-fp16", ".tflite", "student-litert-fp16.tflite", "CPU", ("calib", "imgs"), "litert",
                   "LiteRT with float16 weights (float32 compute and I/O), ai-edge-quantizer", parity_min_srcc=0.99,
                   requires=("litert_torch", "ai_edge_quantizer"), **_LITERT))
FORMATS.add(Format("litert-int8", ".tflite", "student-litert-int8.tflite", "CPU", ("calib", "imgs"), "litert",
                   "LiteRT full-integer int8 (ai-edge-quantizer static, head and sensitive early layers kept in "
                   "float), calibrated on real images", parity_min_srcc=0.99,
                   requires=("litert_torch", "ai_edge_quantizer"), **_LITERT))
# ExecuTorch program for phones (PyTorch's on-device runtime): torch.export lowered to the XNNPACK delegate; int8 through
# PT2E with the XNNPACKQuantizer on the same calibration images as onnx-int8 (edgeiqa/export/executorch_export.py).
# Batch 1 only: a dynamic batch would plan the program's memory for the largest batch.
_PTE_FLAGS = ("calib", "imgs")
FORMATS.add(Format("executorch", ".pte", "student-executorch.pte", "CPU", _PTE_FLAGS, "executorch",
                   "ExecuTorch program (.pte), float32, XNNPACK delegate, batch 1; run by ExecuTorch's runtime",
                   parity_max_abs=1e-4, requires=("executorch",), extra="executorch",
                   runtime_requires=("executorch",)))
FORMATS.add(Format("executorch-int8", ".pte", "student-executorch-int8.pte", "CPU", _PTE_FLAGS, "executorch",
                   "ExecuTorch program int8 (PT2E, XNNPACKQuantizer per-channel; head and sensitive early convs kept "
                   "in float), calibrated on real images", parity_min_srcc=0.99, requires=("executorch", "torchao"),
                   extra="executorch", runtime_requires=("executorch",)))
FORMATS.add(Format("tensorrt", ".engine", "student-trt.engine", "GPU",
                   _ONNX_FLAGS + ("fp16", "int8", "workspace", "max_batch"), "tensorrt",
                   "TensorRT 10 engine (fp32, --fp16 or --int8 with a calibration cache) + .json sidecar",
                   parity_max_abs=1e-3, requires=("tensorrt",)))

# Precision-dependent parity bars for TensorRT (its row holds the fp32 one).
TENSORRT_PARITY = {"fp32": {"max_abs": 1e-3}, "fp16": {"min_srcc": 0.99}, "int8": {"min_srcc": 0.98}}


def get_format(name: str) -> Format:
    """The table row for `name`; a misspelt name is an error that suggests the closest one."""
    key = (name or "").strip().lower()
    if key in FORMATS:
        return FORMATS[key]
    raise EdgeIQAError(f"unknown export format {name!r}{did_you_mean(key, FORMATS, cutoff=0.4)} (formats: {', '.join(FORMATS)})")


def check_flags(fmt: Format, flags: dict) -> None:
    """Refuse a flag the format does not take (flags given as None/False count as not given)."""
    for key, value in flags.items():
        if value is None or value is False:
            continue
        if key not in FLAGS:
            raise EdgeIQAError(f"unknown export option {key!r} (known: {', '.join(FLAGS)})")
        if key not in fmt.flags:
            takers = [f.name for f in FORMATS.values() if key in f.flags]
            where = f"; formats that take it: {', '.join(takers)}" if takers else ""
            hint = ""
            family = fmt.name.split("-")[0]
            if key in ("fp16", "int8") and f"{family}-{key}" in FORMATS:
                hint = f" (use --format {family}-{key} for an {key} {'ONNX' if family == 'onnx' else family} model)"
            raise EdgeIQAError(
                f"format {fmt.name!r} does not take {FLAGS[key][0].split()[0]}{hint}{where}. "
                f"{fmt.name} takes: {fmt.cli_flags()}"
            )


def missing_modules(names) -> list[str]:
    """The modules of `names` that cannot be imported here (found without importing them)."""
    import importlib.util

    out = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent that is not a package, or a module without a spec
            found = False
        if not found:
            out.append(name)
    return out


def extra_command(fmt: Format) -> str:
    return f"pip install 'edgeiqa[{fmt.extra}]'"


def missing_extra(fmt: Format, *, export: bool = True, runtime: bool = False) -> str | None:
    """What a row lacks here to export (and/or, with `runtime`, to run) its artefact, as one phrase naming the
    modules and the install command ("needs X and Y, not installed here: pip install ..."), or None."""
    missing = missing_modules((fmt.requires if export else ()) + (fmt.runtime_requires if runtime else ()))
    if not missing:
        return None
    reason = f"needs {' and '.join(dict.fromkeys(missing))}, not installed here"
    return reason + (f": {extra_command(fmt)}" if fmt.extra else "")


def require_modules(fmt: Format, *, runtime: bool = False, what: str | None = None) -> None:
    """One line naming the install command when a module the format needs (to export, or with `runtime` to run)
    is missing. TensorRT has its own gate (it needs a GPU as well)."""
    reason = missing_extra(fmt, export=not runtime, runtime=runtime)
    if reason and fmt.extra:
        raise EdgeIQAError(f"{what or f'the {fmt.name} format'} {reason}")


def artefact_files(path: str | Path) -> list[Path]:
    """The artefact and the files that belong to it (an OpenVINO .xml and its .bin), by the suffix's row."""
    p = Path(path)
    rows = formats_for_suffix(p.suffix)
    companions = rows[0].companions if rows else ()
    return [p] + [p.with_suffix(s) for s in companions]


def artefact_bytes(path: str | Path) -> int:
    """Size on disk of the artefact with the files that belong to it (an OpenVINO .xml counts its .bin, a Core ML
    .mlpackage folder every file inside it)."""
    return sum(_tree_bytes(p) for p in artefact_files(path) if p.exists())


def _tree_bytes(p: Path) -> int:
    if p.is_dir() and not p.is_symlink():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())
    return p.stat().st_size


def formats_for_suffix(suffix: str) -> list[Format]:
    return [f for f in FORMATS.values() if f.suffix == suffix.lower()]


def is_folder_artefact(path: str | Path) -> bool:
    """A folder whose suffix is a folder format's (a Core ML .mlpackage), not a run folder."""
    p = Path(path)
    return p.is_dir() and any(f.folder for f in formats_for_suffix(p.suffix))


def backend_for_path(path: str | Path) -> str:
    """The runtime backend for a model path: by suffix from the table; a folder is a run dir (torch) unless its
    suffix is a folder format's (a Core ML .mlpackage)."""
    p = Path(path)
    if p.is_dir() and not is_folder_artefact(p):
        return "torch"
    found = formats_for_suffix(p.suffix)
    if not found:
        suffixes = sorted({f.suffix for f in FORMATS.values()})
        raise EdgeIQAError(
            f"{p}: cannot tell the model format from suffix {p.suffix!r} (known: {', '.join(suffixes)}, "
            "or a run folder holding student.pt)"
        )
    return found[0].backend


def formats_table() -> list[dict]:
    """The table as plain rows (for `edgeiqa export --list-formats`, bench and docs)."""
    return [
        {"format": f.name, "suffix": f.suffix, "device": f.device, "backend": f.backend,
         "flags": f.cli_flags(), "description": f.description}
        for f in FORMATS.values()
    ]


def render_table() -> str:
    rows = formats_table()
    cols = ("format", "suffix", "device", "backend", "flags")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols).rstrip()]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols).rstrip() for r in rows]
    return "\n".join(lines)
