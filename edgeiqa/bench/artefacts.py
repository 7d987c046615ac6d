"""The artefact of each format for the bench: reuse an export of this very checkpoint, else export one.

An existing artefact is reused when its `.json` sidecar names the same format, the sha256 of the run's
student.pt (`source.sha256`) and the artefact's own sha256 (`artifact_sha256`, and `companions` for the files that
belong to it: OpenVINO's .bin), and, when a batch larger
than one is benchmarked, it has a dynamic batch dimension (the torch format always has). Places looked
at, in order: RUN/export/<format file name> (where `edgeiqa export` writes), RUN/export/bench/ and
RUN/exports/. A new export goes to RUN/export/<file name> unless a valid export that cannot be reused
(fixed batch) is there, in which case RUN/export/bench/ is used so the user's artefact is kept.

Validation: an artefact is `ok` when its export-time checks passed (parity vs torch within the format's
bar, GMACs recounted on the exported graph matching the card); otherwise the bench still measures it
and marks it `failed validation` with the reason.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from edgeiqa.errors import EdgeIQAError
from edgeiqa.export import export_model
from edgeiqa.export.formats import Format, artefact_bytes, artefact_files
from edgeiqa.provenance import sha256_file


@dataclass
class Artefact:
    path: Path
    metadata: dict
    reused: bool
    export_s: float | None
    warnings: list[str] = field(default_factory=list)

    @property
    def size_mb(self) -> float:
        return artefact_bytes(self.path) / 1e6


def candidate_paths(run: Path, fmt: Format) -> list[Path]:
    return [run / "export" / fmt.filename, run / "export" / "bench" / fmt.filename, run / "exports" / fmt.filename]


def _sidecar(path: Path) -> dict | None:
    side = path.with_suffix(".json")
    if not (path.exists() and side.is_file()):  # a file, or a folder artefact (Core ML .mlpackage)
        return None
    try:
        return json.loads(side.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _matches(path: Path, fmt: Format, ckpt_sha: str) -> dict | None:
    """The sidecar metadata when `path` is an intact export of this checkpoint in this format."""
    meta = _sidecar(path)
    if not meta or meta.get("format") != fmt.name:
        return None
    if (meta.get("source") or {}).get("sha256") != ckpt_sha:
        return None
    if meta.get("artifact_sha256") and meta["artifact_sha256"] != sha256_file(path):
        return None
    for companion in artefact_files(path)[1:]:  # OpenVINO's .bin must be the one exported with the .xml
        want = (meta.get("companions") or {}).get(companion.name)
        if want is None or not companion.is_file() or sha256_file(companion) != want:
            return None
    return meta


def _fits(meta: dict, fmt: Format, need_dynamic: bool) -> bool:
    return not need_dynamic or fmt.name == "torch" or bool(meta.get("dynamic_batch"))


def find_reusable(run: Path, fmt: Format, ckpt_sha: str, need_dynamic: bool) -> tuple[Path, dict] | None:
    for p in candidate_paths(run, fmt):
        meta = _matches(p, fmt, ckpt_sha)
        if meta is not None and _fits(meta, fmt, need_dynamic):
            return p, meta
    return None


def obtain(run: Path, fmt: Format, ckpt_sha: str, *, need_dynamic: bool, calib=None, imgs: int | None = None,
           reuse: bool = True) -> Artefact:
    """Reuse or export the artefact of `fmt`. Export errors propagate (the caller records the row)."""
    if reuse:
        found = find_reusable(run, fmt, ckpt_sha, need_dynamic)
        if found is not None:
            return Artefact(found[0], found[1], reused=True, export_s=None)
    default = run / "export" / fmt.filename
    keep_default = _matches(default, fmt, ckpt_sha) is not None and not _fits(_sidecar(default) or {}, fmt, need_dynamic)
    out = run / "export" / "bench" / fmt.filename if keep_default else default
    kwargs = {}
    if "dynamic_batch" in fmt.flags and need_dynamic:
        kwargs["dynamic_batch"] = True
    if "calib" in fmt.flags and calib is not None:
        kwargs["calib"] = calib
    if "imgs" in fmt.flags and imgs is not None:
        kwargs["imgs"] = imgs
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True):  # kept in the row (export_model collects its own), not printed
        warnings.simplefilter("always")
        res = export_model(run, fmt.name, out=out, **kwargs)
    seconds = time.perf_counter() - t0
    msgs = [m.removeprefix("edgeiqa: ") for m in res.warnings]
    return Artefact(res.path, res.metadata, reused=False, export_s=round(seconds, 2), warnings=msgs)


def validation_problems(meta: dict, fmt: Format) -> list[str]:
    """Why an exported artefact failed its export-time checks (empty when it passed)."""
    problems = []
    par = meta.get("parity") or {}
    if par.get("ok") is False:
        srcc = par.get("srcc")
        problems.append(
            f"parity vs torch below the {fmt.name} bar on {par.get('n_images')} images: max |diff| "
            f"{par.get('max_abs_diff', float('nan')):.3g}, SRCC {'n/a' if srcc is None else f'{srcc:.4f}'}"
        )
    g = meta.get("gmacs") or {}
    if g.get("match") is False:
        problems.append(f"GMACs recounted on the exported graph ({g.get('onnx_fvcore_convention')}) differ from the card "
                        f"({g.get('card')}) by {100 * (g.get('rel_diff') or 0):.2f}%")
    return problems


def check_run(run_dir) -> tuple[Path, dict, Path, str]:
    """(checkpoint, card, run folder, checkpoint sha256); a clear error when the run is not usable."""
    from edgeiqa.export.exporter import check_student_file, resolve_run

    ckpt, card, run = resolve_run(run_dir)
    check_student_file(ckpt)  # a checkpoint that is not edgeiqa's is refused before any bench work or file
    if card is None:
        card = {}
    if not isinstance(card, dict):
        raise EdgeIQAError(f"{run / 'card.json'}: expected a JSON object")
    return ckpt, card, run, sha256_file(ckpt)
