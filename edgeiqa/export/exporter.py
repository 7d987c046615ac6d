"""export: a trained student (RUN/student.pt + card.json) -> a deployable artefact with its metadata.

One export function per format, registered under the format's name in the formats table
(`edgeiqa.export.formats.FORMATS`) with `@exports(name)`: it writes the artefact and says what it built
(`Built`). `export_model` does what every format shares: validate the flags, load the student, recount
the GMACs on the exported graph, measure parity against torch on real images, and write the metadata
into the model (ONNX) and into a `.json` sidecar.

No torch import at module level: `edgeiqa.export` re-exports this module and the runtime imports it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from edgeiqa.bounds import MAX_BATCH, check_count, check_positive
from edgeiqa.errors import EdgeIQAError
from edgeiqa.export.formats import (FORMATS, TENSORRT_PARITY, Format, artefact_bytes, artefact_files, check_flags,
                                    get_format, require_modules)
from edgeiqa.outsafe import OutputRefused, check_out_file, check_out_folder_artefact, folder_kind, mark_dir
from edgeiqa.provenance import package_versions, sha256_file
from edgeiqa.registry import Entry, Registry

TORCH_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip container (the legacy format is a bare pickle: 0x80)

DEFAULT_CALIB_IMAGES = {"onnx-int8": 128, "openvino-int8": 128, "litert-int8": 128, "executorch-int8": 128, "tensorrt": 500}


@dataclass
class ExportResult:
    path: Path
    metadata: dict
    parity: dict | None
    sidecar: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def format(self) -> str:
        return self.metadata.get("format", "?")

    def summary(self) -> dict:
        return {"format": self.format, "path": str(self.path), "sidecar": str(self.sidecar) if self.sidecar else None,
                "size_bytes": artefact_bytes(self.path) if self.path.exists() else None,
                "files": [str(p) for p in artefact_files(self.path)],
                "exporter": (self.metadata.get("export") or {}).get("exporter"),
                "gmacs": self.metadata.get("gmacs"), "parity": self.parity, "warnings": self.warnings}


@dataclass
class ExportJob:
    """What a format's export function gets: the loaded student and where to write."""

    fmt: Format
    model: object  # IQAStudent in eval mode, training heads dropped
    views: list
    ckpt: Path
    out: Path
    tmp: Path  # scratch folder beside `out`, removed after the export
    profile: str | None
    dynamic_batch: bool
    calib: object
    imgs: int | None
    flags: dict


@dataclass
class Built:
    """What a format's export function built."""

    precision: str = "fp32"
    graph_info: dict = field(default_factory=dict)  # facts from the torch -> ONNX step
    extra: dict = field(default_factory=dict)  # format-specific metadata sections
    count_path: Path | None = None  # ONNX graph whose GMACs are recounted (None: no graph)
    fp32_path: Path | None = None  # the float32 ONNX graph the artefact came from (for the size ratio)


# format name -> its export function fn(ExportJob) -> Built (the one registry, edgeiqa/registry.py)
EXPORTERS: Registry[Entry] = Registry("export function")


def exports(name: str):
    """Register the export function of the formats-table row `name` (one function per format)."""
    if name not in FORMATS:
        raise KeyError(f"{name!r} is not a row of the formats table")
    return EXPORTERS.register(name)


# ----------------------------------------------------------------------------------------------- formats


def _fp32_onnx(job: ExportJob, path: Path) -> dict:
    from edgeiqa.export.onnx_export import export_onnx

    return export_onnx(job.model, job.views, path, dynamic_batch=job.dynamic_batch, opset=job.flags.get("opset"),
                       exporter=job.flags.get("exporter") or "auto")


def _calibration_batches(job: ExportJob) -> tuple[list, dict]:
    from edgeiqa.export import parity as par

    images, src = par.load_images(job.calib, job.profile, job.imgs or DEFAULT_CALIB_IMAGES[job.fmt.name],
                                  par.CALIB_SPLITS)
    return par.view_batches(images, job.views), src


@exports("torch")
def export_torch(job: ExportJob) -> Built:
    from edgeiqa.fileio import atomic_path

    with atomic_path(job.out) as tmp:  # replaces a link at --out rather than writing through it
        shutil.copyfile(job.ckpt, tmp)
    return Built()


@exports("onnx")
def export_onnx_fp32(job: ExportJob) -> Built:
    info = _fp32_onnx(job, job.out)
    return Built(graph_info=info, count_path=job.out, fp32_path=job.out)


@exports("onnx-fp16")
def export_onnx_fp16(job: ExportJob) -> Built:
    from edgeiqa.export.quantize import convert_fp16

    fp32 = job.tmp / "fp32.onnx"
    info = _fp32_onnx(job, fp32)
    return Built("fp16", info, {"fp16": convert_fp16(fp32, job.out)}, count_path=job.out, fp32_path=fp32)


@exports("onnx-int8")
def export_onnx_int8(job: ExportJob) -> Built:
    from edgeiqa.export.quantize import quantize_int8

    fp32 = job.tmp / "fp32.onnx"
    info = _fp32_onnx(job, fp32)
    batches, src = _calibration_batches(job)
    quant = quantize_int8(fp32, job.out, batches)
    return Built("int8", info, {"quantization": {**quant, "calibration_source": src}}, count_path=job.out,
                 fp32_path=fp32)


@exports("openvino")
def export_openvino(job: ExportJob) -> Built:
    from edgeiqa.export.openvino_export import convert

    fp32 = job.tmp / "fp32.onnx"
    info = _fp32_onnx(job, fp32)
    return Built(graph_info=info, extra={"openvino": convert(fp32, job.out)}, count_path=fp32, fp32_path=fp32)


@exports("openvino-int8")
def export_openvino_int8(job: ExportJob) -> Built:
    from edgeiqa.export.openvino_export import quantize_int8

    fp32 = job.tmp / "fp32.onnx"
    info = _fp32_onnx(job, fp32)
    batches, src = _calibration_batches(job)
    quant = quantize_int8(fp32, job.out, batches, min_srcc=job.fmt.parity_min_srcc)
    return Built("int8", info, {"quantization": {**quant, "calibration_source": src}}, count_path=fp32, fp32_path=fp32)


def _coreml(job: ExportJob, int8: bool) -> Built:
    from edgeiqa.export.coreml_export import convert

    fp32 = job.tmp / "fp32.onnx"  # the graph the GMACs are recounted on and the size compared with (not converted)
    info = _fp32_onnx(job, fp32)
    facts = convert(job.model, job.views, job.out, int8=int8)
    quant = facts.pop("quantization", None)
    return Built("int8" if int8 else "fp16", info, {"coreml": facts, **({"quantization": quant} if quant else {})},
                 count_path=fp32, fp32_path=fp32)


@exports("coreml")
def export_coreml(job: ExportJob) -> Built:
    return _coreml(job, int8=False)


@exports("coreml-int8")
def export_coreml_int8(job: ExportJob) -> Built:
    return _coreml(job, int8=True)


def _litert_fp32(job: ExportJob) -> tuple[Path, dict]:
    """The float32 .tflite (litert-torch, from the student itself) in the scratch folder and, for the GMAC recount and
    the size ratio, the float32 ONNX graph of the same student beside it."""
    from edgeiqa.export.litert_export import convert

    path = job.tmp / "fp32.tflite"
    facts = convert(job.model, job.views, path)
    facts["onnx_for_gmacs"] = _fp32_onnx(job, job.tmp / "fp32.onnx").get("exporter")
    return path, facts


def _litert_built(job: ExportJob, made: Path, precision: str, extra: dict) -> Built:
    os.replace(made, job.out)  # moved into place once whole: a failed export leaves no .tflite behind
    return Built(precision, extra=extra, count_path=job.tmp / "fp32.onnx", fp32_path=job.tmp / "fp32.onnx")


@exports("litert")
def export_litert(job: ExportJob) -> Built:
    fp32, facts = _litert_fp32(job)
    return _litert_built(job, fp32, "fp32", {"litert": facts})


@exports("litert-fp16")
def export_litert_fp16(job: ExportJob) -> Built:
    from edgeiqa.export.litert_export import to_fp16

    fp32, facts = _litert_fp32(job)
    made = job.tmp / "fp16.tflite"
    return _litert_built(job, made, "fp16", {"litert": facts, "fp16": to_fp16(fp32, made)})


@exports("litert-int8")
def export_litert_int8(job: ExportJob) -> Built:
    from edgeiqa.export.litert_export import quantize_int8

    fp32, facts = _litert_fp32(job)
    batches, src = _calibration_batches(job)
    made = job.tmp / "int8.tflite"
    quant = quantize_int8(fp32, made, batches, [v.name for v in job.views], min_srcc=job.fmt.parity_min_srcc)
    return _litert_built(job, made, "int8", {"litert": facts, "quantization": {**quant, "calibration_source": src}})


def _pte_metadata(job: ExportJob, precision: str) -> str:
    """The metadata the runtime needs (views, normalisation, logistic mapping), for the program's constant method:
    known before the parity check, so the full document (parity, GMACs, hashes) is the sidecar's."""
    doc = {**runtime_metadata(job.fmt, precision, job.profile, check_student_file(job.ckpt), job.views),
           "dynamic_batch": False, "full_metadata": "the .json sidecar (parity, GMACs, checkpoint sha256, versions)"}
    return json.dumps(doc, sort_keys=True, default=_jsonable)


def runtime_metadata(f: Format, precision: str, profile, payload: dict, views) -> dict:
    """What the runtime reads to feed and map a model (views, normalisation, logistic mapping): the part of the
    metadata every format carries, in its sidecar and, where it has room, inside the artefact."""
    from edgeiqa.data.views import NORMALIZATION
    from edgeiqa.export import metadata as md

    meta_in = dict(payload.get("meta") or {})
    return {"edgeiqa_metadata": md.METADATA_VERSION, "format": f.name, "backend": f.backend, "device": f.device,
            "precision": precision, "profile": profile, "student": payload.get("student"), "views": payload["views"],
            "input_order": [v.name for v in views], "input_size": {v.name: list(v.size) for v in views},
            "output": "score", "layout": "NCHW", "color": "RGB", "pixel_scale": 1.0 / 255.0,
            "normalization": NORMALIZATION, "logistic": meta_in.get("logistic"), "score_range": meta_in.get("score_range")}


@exports("executorch")
def export_executorch(job: ExportJob) -> Built:
    from edgeiqa.export.executorch_export import export_fp32

    fp32 = job.tmp / "fp32.onnx"  # the GMAC recount and the size ratio read the float32 ONNX graph of the same model
    info = _fp32_onnx(job, fp32)
    facts = export_fp32(job.model, job.views, job.out, _pte_metadata(job, "fp32"))
    return Built(graph_info={"inputs": info.get("inputs"), "exporter": facts["exporter"]},
                 extra={"executorch": facts}, count_path=fp32, fp32_path=fp32)


@exports("executorch-int8")
def export_executorch_int8(job: ExportJob) -> Built:
    from edgeiqa.export.executorch_export import quantize_int8

    fp32 = job.tmp / "fp32.onnx"
    info = _fp32_onnx(job, fp32)
    batches, src = _calibration_batches(job)
    quant = quantize_int8(job.model, job.views, job.out, batches, min_srcc=job.fmt.parity_min_srcc,
                          metadata_doc=_pte_metadata(job, "int8"))
    return Built("int8", {"inputs": info.get("inputs"), "exporter": quant["exporter"]},
                 {"quantization": {**quant, "calibration_source": src}}, count_path=fp32, fp32_path=fp32)


@exports("tensorrt")
def export_tensorrt(job: ExportJob) -> Built:
    from edgeiqa.export.tensorrt_export import build_engine

    fp32 = job.tmp / "fp32.onnx"
    info = _fp32_onnx(job, fp32)
    batches, src = _calibration_batches(job) if job.flags.get("int8") else (None, None)
    engine = build_engine(fp32, job.out, job.views, fp16=bool(job.flags.get("fp16")), int8=bool(job.flags.get("int8")),
                          calib_batches=batches, dynamic_batch=job.dynamic_batch,
                          max_batch=int(job.flags.get("max_batch") or 8), workspace_gb=job.flags.get("workspace"))
    return Built(engine["precision"], info, {"tensorrt": {**engine, "calibration_source": src}}, count_path=fp32,
                 fp32_path=fp32)


if set(EXPORTERS) != set(FORMATS):  # pragma: no cover - a table row without its function is a programming error
    raise RuntimeError(f"formats without an export function: {sorted(set(FORMATS) - set(EXPORTERS))}")


# ----------------------------------------------------------------------------------------------- shared steps


def resolve_run(run_dir: str | Path) -> tuple[Path, dict | None, Path]:
    """(student checkpoint, card or None, run folder) for a run folder or a student .pt path."""
    p = Path(run_dir)
    if p.is_dir():
        ckpt, run = p / "student.pt", p
    elif p.is_file():
        ckpt, run = p, p.parent
    else:
        raise EdgeIQAError(f"run folder or student checkpoint not found: {p}")
    if not ckpt.is_file():
        raise EdgeIQAError(f"{run}: no student.pt (a run folder from `edgeiqa distill` holds student.pt and card.json)")
    _check_torch_file(ckpt)
    card_path = run / "card.json"
    card = None
    if card_path.exists():
        try:
            card = json.loads(card_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EdgeIQAError(f"{card_path}: not valid JSON: {exc}") from None
    return ckpt, card, run


def _check_torch_file(ckpt: Path) -> None:
    """Refuse a file that is not a torch save (zip, or the legacy pickle) before anything reads or writes."""
    try:
        with open(ckpt, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise EdgeIQAError(f"cannot read {ckpt}: {exc.strerror or exc}") from None
    if not (head.startswith(TORCH_ZIP_MAGIC) or head[:1] == b"\x80"):
        raise EdgeIQAError(f"{ckpt} is not a torch checkpoint: give a run folder holding student.pt and card.json "
                           f"(from `edgeiqa distill`), or its student .pt")


def check_student_file(ckpt: Path) -> dict:
    """The payload of an edgeiqa student checkpoint (read weights-only, no model built); anything else is refused."""
    from edgeiqa.safeload import load_weights
    from edgeiqa.students.factory import CHECKPOINT_FORMAT

    try:
        payload = load_weights(ckpt, what="student checkpoint")
    except EdgeIQAError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch's reader raises many types on a damaged file
        raise EdgeIQAError(f"cannot read student checkpoint {ckpt}: {(str(exc).splitlines() or [''])[0][:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise EdgeIQAError(f"{ckpt} is not an edgeiqa student checkpoint (format {CHECKPOINT_FORMAT})")
    return payload


# ----------------------------------------------------------------------------------------------- validation


def _opset_range(exporter: str | None) -> tuple[int, int]:
    """The opsets torch's exporter writes (the TorchScript one stops lower than the dynamo one)."""
    try:
        from torch.onnx import _constants as c

        low, high = c.ONNX_MIN_OPSET, c.ONNX_MAX_OPSET
        script_high = getattr(c, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", high)
    except ImportError:  # pragma: no cover - a torch without the private table: its long-standing bounds
        low, high, script_high = 7, 20, 20
    return low, script_high if exporter == "torchscript" else high


def check_options(imgs, flags: dict) -> None:
    """Every export option's value, before any file is read or written (one line, exit 2)."""
    check_count("--imgs", None if imgs is None else int(imgs))
    if flags.get("opset") is not None:
        exporter = flags.get("exporter")
        low, high = _opset_range(exporter)
        who = f"torch's {exporter} exporter" if exporter in ("dynamo", "torchscript") else "torch's exporter"
        check_count("--opset", flags["opset"], low=low, high=high, what=f"the highest opset {who} writes ({high})")
    if flags.get("exporter") not in (None, "auto", "dynamo", "torchscript"):
        raise EdgeIQAError(f"--exporter must be auto, dynamo or torchscript, got {flags['exporter']!r}")
    check_count("--max-batch", flags.get("max_batch"), high=MAX_BATCH, what=f"{MAX_BATCH} images per batch")
    check_positive("--workspace", flags.get("workspace"), high=1024.0)


def check_output(f: Format, run: Path, ckpt: Path, out: str | Path | None, *, force: bool = False) -> Path:
    """The artefact path, validated before any work: new, an export edgeiqa wrote, or replaced with --force; the
    same for its .json sidecar. Never a file this export reads (the checkpoint, the card)."""
    from edgeiqa.export import metadata as md

    default = run / "export"
    out = Path(out) if out else default / f.filename
    if out.suffix.lower() != f.suffix:
        raise EdgeIQAError(f"--out {out}: format {f.name} writes {f.suffix} files")
    found = folder_kind(default) if default.is_dir() else None
    if _inside(out, default) and found not in (None, "export"):
        raise OutputRefused(f"{default} is an edgeiqa {found} folder, not the run's export folder; give --out")
    inputs = (ckpt, run / "card.json")
    (check_out_folder_artefact if f.folder else check_out_file)(out, owned=md.is_own_artefact, force=force, inputs=inputs)
    check_out_file(md.sidecar_path(out), owned=md.is_own_sidecar, force=force, inputs=inputs,
                   flag="--out's metadata sidecar")
    for companion in artefact_files(out)[1:]:  # OpenVINO's .bin weights beside the .xml
        check_out_file(companion, owned=md.is_own_companion, force=force, inputs=inputs, flag=f"--out's {companion.suffix} file")
    return out


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.abspath(folder)) in Path(os.path.abspath(path)).parents


def _prepare_folder(out: Path, run: Path) -> None:
    """Create the artefact's folder; the run's export folder is marked as edgeiqa's (a rerun may replace it)."""
    default = run / "export"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputRefused(f"cannot write {out.parent}: {exc.strerror or exc}") from None
    if _inside(out, default):
        mark_dir(default, "export")


def export_model(run_dir: str | Path, fmt: str, *, dynamic_batch: bool = False, calib=None, imgs: int | None = None,
                 out: str | Path | None = None, force: bool = False, **flags) -> ExportResult:
    """Export the student of `run_dir` to format `fmt` (see FORMATS).

    calib: dataset spec (or list of image paths) for calibration and parity; default: the run profile's
    data, else the sample set. imgs: number of images for calibration and parity (default for parity: 16 for
    rows judged by max |diff|, 64 for rows judged by SRCC; 128 for onnx-int8 calibration, 500 for TensorRT int8). out: artefact path (default RUN/export/<name>);
    an existing file there (or at its .json sidecar) is replaced only when edgeiqa wrote it, or with force.
    flags: opset, exporter, fp16, int8, workspace, max_batch (only those the format takes; others are an
    error: see FLAGS in edgeiqa.export.formats). Every argument is checked before anything is loaded or written.
    """
    f = get_format(fmt)
    check_flags(f, {"dynamic_batch": dynamic_batch, "calib": calib, "imgs": imgs, **flags})
    check_options(imgs, flags)
    if f.backend == "tensorrt":
        from edgeiqa.export.tensorrt_export import require_tensorrt

        require_tensorrt()
    require_modules(f)  # a missing extra: one line naming the install command, before anything is read or written
    ckpt, card, run = resolve_run(run_dir)
    out = check_output(f, run, ckpt, out, force=force)
    from edgeiqa.export.parity import check_spec

    check_spec("--calib", calib)
    loaded = _load(ckpt)  # refuses a checkpoint that is not edgeiqa's before anything is written
    _prepare_folder(out, run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _export(f, loaded, ckpt, card, out, dynamic_batch=bool(dynamic_batch), calib=calib,
                         imgs=None if imgs is None else int(imgs), flags=flags)
    result.warnings = _reissue(caught)
    return result


def _reissue(caught) -> list[str]:
    """edgeiqa's own warnings from an export, deduplicated and warned again to the caller."""
    messages = []
    for w in caught:
        msg = str(w.message)
        if issubclass(w.category, (DeprecationWarning, FutureWarning)) or msg in messages:
            continue
        if w.category is UserWarning and (msg.startswith("edgeiqa:") or w.filename.startswith(str(Path(__file__).parent.parent))):
            messages.append(msg)
    for msg in messages:
        warnings.warn(msg, stacklevel=3)
    return messages


def _load(ckpt: Path):
    """(model in eval mode without training heads, payload)."""
    from edgeiqa.students import load_student

    model, payload = load_student(ckpt)
    model.drop_training_heads()
    model.eval()
    return model, payload


def _recount_gmacs(model, views, count_path: Path | None, card_gmacs) -> dict:
    """GMACs recounted on the exported graph, compared with the card's fvcore count."""
    import torch

    from edgeiqa.export import metadata as md

    if count_path is None:
        return {"card": card_gmacs, "note": "torch format: same weights as the checkpoint, no graph to recount"}
    shapes = {v.name: [1, 3, *v.size] for v in views}
    count = md.count_onnx_gmacs(count_path, shapes)
    bn = md.fvcore_batchnorm_gmacs(model, [torch.zeros(1, 3, *v.size) for v in views])
    gmacs = md.gmacs_check(card_gmacs, count, bn)
    if gmacs["match"] is False:
        warnings.warn(
            f"edgeiqa: GMACs recounted on the exported graph ({gmacs['onnx_fvcore_convention']:.4f}) differ "
            f"from the card ({card_gmacs:.4f}) by {100 * gmacs['rel_diff']:.2f}% (> {100 * md.GMACS_TOLERANCE:.0f}%)"
            + (f"; {len(gmacs['uncounted_nodes'])} node(s) without shapes" if gmacs["uncounted_nodes"] else "")
        )
    return gmacs


def _parity(f: Format, precision: str, out: Path, torch_run, views, calib, profile, imgs) -> dict:
    """Parity of the artefact against torch on real images (raw scores)."""
    from edgeiqa.export import parity as par

    if f.backend == "torch":
        return {"skipped": "the torch format is the checkpoint itself"}
    images, src = par.load_images(calib, profile, imgs or par.default_parity_images(f.parity_min_srcc), par.PARITY_SPLITS)
    batches = par.view_batches(images, views)
    ref = par.run_all(torch_run, batches)
    if f.backend == "onnxruntime":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        cand = par.run_all(lambda b: sess.run(None, b)[0], batches)
        device = "onnxruntime CPUExecutionProvider"
    elif f.backend == "openvino":
        from edgeiqa.export.openvino_export import IRRunner

        runner = IRRunner(out)
        cand = par.run_all(runner.run, batches)
        device = f"OpenVINO {runner.version} CPU plugin ({runner.precision})"
    elif f.backend == "coreml":
        from edgeiqa.export.coreml_export import PackageRunner, is_macos, not_runnable_reason

        if not is_macos():  # never a pass it did not earn: ok stays None, the reason says why
            return {"ok": None, "skipped": not_runnable_reason(), "n_images": 0,
                    "bar": {"max_abs_diff": f.parity_max_abs, "min_srcc": f.parity_min_srcc}}
        runner = PackageRunner(out, check_metadata=False)  # pragma: no cover - macOS only
        cand = par.run_all(runner.run, batches)  # pragma: no cover
        device = f"Core ML (coremltools {runner.version}, compute units {runner.compute_units})"  # pragma: no cover
    elif f.backend == "litert":
        from edgeiqa.export.litert_export import TFLiteRunner

        runner = TFLiteRunner(out, input_order=[v.name for v in views])
        cand = par.run_all(runner.run, batches)
        device = f"LiteRT {runner.version} interpreter, XNNPACK ({runner.precision})"
    elif f.backend == "executorch":
        from edgeiqa.export.executorch_export import PTERunner

        runner = PTERunner(out, input_order=[v.name for v in views])
        cand = par.run_all(runner.run, batches)
        device = f"ExecuTorch {runner.version} runtime (XNNPACK delegate)"
    else:
        from edgeiqa.export.tensorrt_export import EngineRunner

        runner = EngineRunner(out)
        cand = par.run_all(runner.run, batches)
        device = "TensorRT"
    bar = TENSORRT_PARITY[precision] if f.backend == "tensorrt" else {"max_abs": f.parity_max_abs, "min_srcc": f.parity_min_srcc}
    parity = par.compare(ref, cand, max_abs=bar.get("max_abs"), min_srcc=bar.get("min_srcc"))
    parity.update({"images": src, "compared": f"{device} vs torch (raw scores, before the logistic mapping)"})
    if not parity["ok"]:
        warnings.warn(
            f"edgeiqa: parity vs torch below the {f.name} bar: max |diff| {parity['max_abs_diff']:.3g}, "
            f"SRCC {parity['srcc'] if parity['srcc'] is None else round(parity['srcc'], 4)} on {parity['n_images']} images"
        )
    return parity


def _size(out: Path, fp32: Path | None) -> dict | None:
    """Artefact size against the float32 ONNX graph it came from (both before metadata is embedded); an artefact
    with companion files (OpenVINO's .bin weights) counts them."""
    if fp32 is None or not fp32.exists():
        return None
    size, base = artefact_bytes(out), artefact_bytes(fp32)
    return {"bytes": size, "fp32_onnx_bytes": base, "ratio_to_fp32": round(size / base, 4) if base else None}


def _stamp(out: Path):
    """What is at `out` now (None: nothing), to tell an artefact this export wrote from one it found there."""
    try:
        st = out.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _remove_artefact(out: Path) -> None:
    for p in artefact_files(out):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink(missing_ok=True)


def _export(f: Format, loaded: tuple, ckpt: Path, card: dict | None, out: Path, *, dynamic_batch: bool, calib,
            imgs: int | None, flags: dict) -> ExportResult:
    import torch

    from edgeiqa.data.views import ViewSpec
    from edgeiqa.export import metadata as md

    model, payload = loaded
    views = [ViewSpec.from_dict(v) for v in payload["views"]]
    meta_in = dict(payload.get("meta") or {})
    card = card or {}
    profile = card.get("profile") or meta_in.get("profile")
    card_gmacs = (card.get("student") or {}).get("gmacs", meta_in.get("gmacs"))

    def torch_run(batch):
        with torch.no_grad():
            return model(*[torch.from_numpy(batch[v.name]) for v in views]).numpy()

    before = _stamp(out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp:
        job = ExportJob(f, model, views, ckpt, out, Path(tmp), profile, dynamic_batch, calib, imgs, flags)
        try:
            built = EXPORTERS.create(f.name, job)
            gmacs = _recount_gmacs(model, views, built.count_path, card_gmacs)
            size = _size(out, built.fp32_path)
            parity = _parity(f, built.precision, out, torch_run, views, calib, profile, imgs)
        except BaseException:
            if _stamp(out) != before:  # written by this export, unchecked: never left without its sidecar
                _remove_artefact(out)
            raise

    batch_dim = "batch" if dynamic_batch else 1
    graph_info = built.graph_info
    metadata = {
        **runtime_metadata(f, built.precision, profile, payload, views),
        "inputs": graph_info.get("inputs") or [{"name": v.name, "shape": [batch_dim, 3, *v.size]} for v in views],
        "dynamic_batch": dynamic_batch,
        "export": {k: v for k, v in graph_info.items() if k != "inputs"} or None,
        **built.extra,
        "size": size,
        "gmacs": gmacs,
        "parity": parity,
        "source": {
            "checkpoint": str(ckpt),
            "sha256": sha256_file(ckpt),
            "card": str(ckpt.parent / "card.json") if card else None,
            "card_student": card.get("student"),
            "seed": meta_in.get("seed"),
            "pruning": {k: v for k, v in (payload.get("pruning") or {}).items() if k != "attributes"} or None,
        },
        "versions": package_versions({"tensorrt": ("tensorrt",), "openvino": ("openvino", "nncf"),
                                      "coreml": ("coremltools",),
                                      "litert": ("litert-torch", "ai-edge-litert", "ai-edge-quantizer"),
                                      "executorch": ("executorch", "torchao")}.get(f.backend, ())),
    }
    metadata = json.loads(json.dumps(metadata, default=_jsonable))
    if f.suffix == ".onnx":
        md.embed_onnx_metadata(out, metadata)
    elif f.backend == "coreml":
        # In the package's user_defined_metadata, as ONNX's metadata_props (and the sidecar as always).
        from edgeiqa.export.coreml_export import embed_metadata as embed_coreml

        embed_coreml(out, metadata)
    elif f.backend == "openvino":
        # In the IR's rt_info, so the .xml carries its metadata as an ONNX file does (and the sidecar as always).
        from edgeiqa.export.openvino_export import embed_metadata

        embed_metadata(out, metadata)
    elif f.backend == "litert":
        # In the flatbuffer's metadata table, so the .tflite carries its metadata as an ONNX file does.
        from edgeiqa.export.litert_export import embed_metadata as embed_tflite

        embed_tflite(out, metadata)
    companions = {p.name: sha256_file(p) for p in artefact_files(out)[1:]}
    tree = {"artifact_sha256_of": "the folder's files (edgeiqa.provenance.sha256_tree)"} if out.is_dir() else {}
    sidecar = md.write_sidecar(out, {**metadata, "artifact": out.name, "artifact_sha256": sha256_file(out), **tree,
                                     **({"companions": companions} if companions else {})})
    return ExportResult(path=out, metadata=metadata, parity=parity, sidecar=sidecar)


def _jsonable(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)
