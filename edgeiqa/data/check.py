"""`edgeiqa data check`: list everything wrong with a dataset instead of stopping at the first fault.

Reported problem kinds (each with the CSV line when there is one):
    bad_row       non-numeric score, empty image column, unknown split, wrong field count ...
    missing_file  the image a row names does not exist
    unreadable    the image exists but cannot be read (header check; full decode with `decode=True`)
    duplicate     the same image listed on several rows
    unknown_kind  a CSV's `kind` value that is not a degradation kind (`edgeiqa data kinds`), with the closest
                  one; reported once per value, at its first line
    dataset       the dataset could not be read at all (missing column), or it holds no images (a header-only
                  CSV, an empty folder): nothing else is checked

A bad spec (unknown dataset name, unknown option, a file or folder that does not exist, with or without
the `csv:` prefix, a folder given as `csv:` or a file where a folder is expected) is a user error and raises
DatasetError (exit 2).
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

from PIL import Image

from edgeiqa.data.images import MAX_PIXELS, MIN_SIDE, load_image
from edgeiqa.data.loading import Problem
from edgeiqa.data.records import ImageRecord
from edgeiqa.errors import DatasetError, EdgeIQAError, ImageLoadError, did_you_mean

PROBLEM_KINDS = ("dataset", "bad_row", "missing_file", "unreadable", "duplicate", "unknown_kind")
# What each loader's target must be; a loader not listed here checks its own target.
TARGET_IS_FILE = {"csv": True, "folder": False, "piq23": False, "uhd-iqa": False, "koniq": False, "gfiqa": False,
                  "biq2021": False}
# Sources whose `kind` column names degradation kinds (PIQ23's holds its attributes/conditions).
KIND_SOURCES = ("csv", "sample")


def header_check(path: Path) -> str | None:
    """Cheap readability check: the format is recognised and the size is sane. None = fine."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
    except Image.DecompressionBombError:
        return "too large; refused as a possible decompression bomb"
    except Exception as exc:  # noqa: BLE001 - any failure to parse the header is the finding itself
        name = type(exc).__name__
        return "not an image (unrecognised format)" if name == "UnidentifiedImageError" else f"unreadable header: {exc}"
    if w * h > MAX_PIXELS:
        return f"too large ({w}x{h})"
    if min(w, h) < MIN_SIDE:
        return f"too small ({w}x{h}); at least {MIN_SIDE} px per side is needed"
    return None


def check_dataset(spec: str, decode: bool = False) -> dict:
    """Check a dataset; never raises for bad rows or files. Returns a JSON-ready report.

    Keys: spec, ok, decode, n_records, n_labelled, splits, checked_images, counts (kind -> n),
    problems (list of {kind, line, source, path, message}).
    """
    from edgeiqa.data.datasets import load_with_problems, parse_spec, require_target

    parsed = parse_spec(spec)
    require_target(parsed)  # a malformed spec or a missing root is a user error (exit 2), not a finding
    require_target_type(parsed)
    check_val_options(parsed)
    problems: list[Problem] = []
    records = []
    source = None
    try:
        dataset, ctx = load_with_problems(spec, check_files=True)
        problems.extend(ctx.problems)
        records = dataset.records
        source = dataset.info.get("csv")
        if isinstance(source, list):
            source = None
    except DatasetError as exc:
        problems.append(Problem(kind="dataset", message=str(exc)))
        dataset = None
    if dataset is not None and not records:  # a header-only CSV or an empty folder: nothing to train or score on
        problems.append(Problem(kind="dataset", message=f"{spec}: no images (no data rows or image files)"))

    if dataset is not None and dataset.info.get("source") in KIND_SOURCES:
        problems.extend(unknown_kinds(records, source))
    missing = {p.path for p in problems if p.kind == "missing_file"}

    # duplicates: the same file on several rows
    first_line: dict[Path, int | None] = {}
    seen: Counter = Counter()
    for rec in records:
        key = _key(rec.path)
        seen[key] += 1
        if seen[key] == 1:
            first_line[key] = rec.line
            continue
        where = f" (first on line {first_line[key]})" if first_line[key] is not None else ""
        problems.append(Problem(kind="duplicate", message=f"duplicate of an earlier row{where}: {rec.path}",
                                line=rec.line, source=source, path=str(rec.path)))

    # readability of every distinct existing file
    checked = 0
    done: set[Path] = set()
    for rec in records:
        key = _key(rec.path)
        if key in done or str(rec.path) in missing:
            continue
        done.add(key)
        if not rec.path.is_file():  # loaders report missing files; this catches any that did not
            problems.append(Problem(kind="missing_file", message=f"image not found: {rec.path}", line=rec.line,
                                    source=source, path=str(rec.path)))
            continue
        checked += 1
        reason = None
        if decode:
            try:
                load_image(rec.path)
            except ImageLoadError as exc:
                reason = exc.reason
            except EdgeIQAError as exc:
                reason = str(exc)
        else:
            reason = header_check(rec.path)
        if reason:
            problems.append(Problem(kind="unreadable", message=f"{rec.path}: {reason}", line=rec.line,
                                    source=source, path=str(rec.path)))

    # file order: what a user fixing the CSV top to bottom wants; a whole-dataset fault first
    problems.sort(key=lambda p: (p.kind != "dataset", p.source or "", p.line if p.line is not None else 1 << 30))
    counts = {k: 0 for k in PROBLEM_KINDS}
    for p in problems:
        counts[p.kind] = counts.get(p.kind, 0) + 1
    splits: dict[str, int] = {}
    for rec in records:
        splits[rec.split or "-"] = splits.get(rec.split or "-", 0) + 1
    return {
        "spec": spec,
        "ok": not problems,
        "decode": decode,
        "n_records": len(records),
        "n_labelled": sum(1 for r in records if r.score is not None),
        "splits": splits,
        "checked_images": checked,
        "counts": counts,
        "problems": [p.as_dict() for p in problems],
    }


def require_target_type(spec) -> None:
    """A folder given as `csv:` or a file given where a folder is expected: one line (exit 2), not a finding."""
    from edgeiqa.data.loading import expand_path

    wants_file = TARGET_IS_FILE.get(spec.name)
    if wants_file is None or not spec.target:
        return
    path = expand_path(spec.target)
    if not path.exists():  # require_target names a missing one
        return
    if wants_file and path.is_dir():
        raise DatasetError(f"dataset spec {spec.text!r}: {path} is a folder; {spec.name}: takes a CSV file "
                           f"(folder:{spec.target} reads every image in a folder)")
    if not wants_file and not path.is_dir():
        hint = f" (csv:{spec.target} reads a labels CSV)" if spec.name == "folder" and path.suffix.lower() == ".csv" else ""
        raise DatasetError(f"dataset spec {spec.text!r}: {path} is a file; {spec.name}: takes a folder{hint}")


def check_val_options(spec) -> None:
    """A bad `val=` / `val_seed=` is a usage error (exit 2), though the loader raises it as it reads the CSV."""
    from edgeiqa.data.valsplit import val_fraction, val_seed

    if "val" in spec.options or "val_seed" in spec.options:
        val_fraction(spec)
        val_seed(spec)


def unknown_kinds(records, source) -> list[Problem]:
    """One problem per distinct `kind` value that is not a degradation kind, at its first line, closest named."""
    from edgeiqa.data.degradations.groups import GROUPS

    known = [k for kinds in GROUPS.values() for k in kinds]
    first: dict[str, ImageRecord] = {}
    count: Counter = Counter()
    for rec in records:
        if rec.kind is not None and rec.kind not in known:
            first.setdefault(rec.kind, rec)
            count[rec.kind] += 1
    return [Problem(kind="unknown_kind", line=rec.line, source=source, path=str(rec.path),
                    message=f"unknown degradation kind {kind!r} on {count[kind]} row(s){did_you_mean(kind, known)} "
                            f"(`edgeiqa data kinds` lists them)")
            for kind, rec in first.items()]


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path


def format_report(report: dict, limit: int = 50) -> str:
    """Human-readable report: a summary line, then one line per problem (the first `limit`)."""
    lines = []
    n = len(report["problems"])
    head = f"{report['spec']}: {report['n_records']} records, {report['checked_images']} images checked"
    head += " (decoded)" if report["decode"] else " (headers; --decode reads every pixel)"
    lines.append(head)
    if report["ok"]:
        lines.append("no problems found")
        return "\n".join(lines)
    summary = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report["counts"].items() if v)
    lines.append(f"{n} problem(s): {summary}")
    for p in report["problems"][:limit]:
        lines.append(f"  {_where(p)}[{p['kind']}] {p['message']}")
    if n > limit:
        lines.append(f"  ... and {n - limit} more (use --json for the full list)")
    return "\n".join(lines)


def _where(p: dict) -> str:
    if p["line"] is None:
        return ""
    if p["source"]:
        return f"{Path(p['source']).name} line {p['line']}: "
    return f"line {p['line']}: "
