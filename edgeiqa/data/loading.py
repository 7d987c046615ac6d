"""Helpers every dataset loader shares: CSV tables with line numbers, row problems, file lookup.

Loaders never stop at a bad row: they record a *problem* (line, message) in the `LoadContext` and go
on, so `edgeiqa data check` can list every bad row at once. `load_dataset` turns the collected
problems into one DatasetError; `check_dataset` reports them.

Structural faults that make the rest meaningless (missing CSV, missing column) raise DatasetError at once.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from edgeiqa.data.images import IMAGE_EXTENSIONS
from edgeiqa.data.records import SPLITS, Dataset, ImageRecord
from edgeiqa.errors import DatasetError, did_you_mean

# Spellings of split names found in public datasets' files -> the toolkit's names.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
    "pool": "pool",
}


@dataclass
class Problem:
    kind: str  # bad_row | missing_file | unreadable | duplicate | dataset
    message: str
    line: int | None = None
    source: str | None = None  # the CSV the line refers to
    path: str | None = None  # the image concerned, when there is one

    def as_dict(self) -> dict:
        return {"kind": self.kind, "line": self.line, "source": self.source, "path": self.path, "message": self.message}

    def __str__(self) -> str:
        where = ""
        if self.source and self.line is not None:
            where = f"{Path(self.source).name} line {self.line}: "
        elif self.line is not None:
            where = f"line {self.line}: "
        return where + self.message


@dataclass
class LoadContext:
    """Passed to every loader: the spec text, whether to require image files, and the problem list."""

    spec: str
    check_files: bool = True
    problems: list[Problem] = field(default_factory=list)

    def problem(self, message: str, *, line: int | None = None, source=None, path=None, kind: str = "bad_row") -> None:
        self.problems.append(
            Problem(kind=kind, message=message, line=line, source=None if source is None else str(source),
                    path=None if path is None else str(path))
        )

    def check_image(self, path: Path, line: int | None = None, source=None) -> None:
        """With check_files, a record whose image is not a file becomes a `missing_file` problem."""
        if self.check_files and not path.is_file():
            self.problem(f"image not found: {path}", line=line, source=source, path=path, kind="missing_file")


def expand_path(text: str) -> Path:
    """`~` and `$VARS` expanded, made absolute (records must not depend on the working directory)."""
    return Path(os.path.expandvars(os.path.expanduser(str(text)))).absolute()


def require_dir(root: str, what: str) -> Path:
    if not root:
        raise DatasetError(f"{what} needs a folder: {what}:ROOT")
    p = expand_path(root)
    if not p.exists():
        raise DatasetError(f"{what}: folder not found: {p}")
    if not p.is_dir():
        raise DatasetError(f"{what}: not a folder: {p}")
    return p


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{what}: file not found: {path}")
    if path.is_dir():
        raise DatasetError(f"{what}: expected a file, found a folder: {path}")
    return path


def norm_col(name: str) -> str:
    return name.strip().strip("\ufeff").strip().lower()


class Table:
    """A CSV file read as (line number, {normalised column: value}) rows.

    Column names are matched case-insensitively with surrounding spaces ignored (`IMAGE PATH` ==
    `image path`). Line numbers are 1-based physical lines, header = line 1, as an editor shows them.
    """

    def __init__(self, path: Path, what: str):
        self.path = require_file(Path(path), what)
        self.what = what
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            text = self.path.read_text(encoding="latin-1")
        except OSError as exc:
            raise DatasetError(f"{what}: cannot read {self.path}: {exc}") from None
        self._lines = text.splitlines(keepends=True)
        reader = csv.reader(self._lines)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetError(f"{what}: {self.path} is empty (no header line)") from None
        except csv.Error as exc:
            raise DatasetError(f"{what}: {self.path}: unreadable CSV header: {exc}") from None
        self.header = [norm_col(h) for h in header]
        self.raw_header = [h.strip().strip("\ufeff") for h in header]
        self._reader = reader

    def has(self, column: str) -> bool:
        return norm_col(column) in self.header

    def first_of(self, *candidates: str) -> str | None:
        for c in candidates:
            if self.has(c):
                return norm_col(c)
        return None

    def require(self, *columns: str) -> None:
        for col in columns:
            if not self.has(col):
                hint = did_you_mean(norm_col(col), self.header)
                found = ", ".join(self.raw_header) or "none"
                raise DatasetError(f"{self.what}: {self.path}: missing column {col!r} (found: {found}){hint}")

    def rows(self, ctx: LoadContext) -> Iterator[tuple[int, dict[str, str]]]:
        """Yield (line, row). Blank lines are skipped; rows with a wrong field count become problems."""
        n = len(self.header)
        reader = self._reader
        while True:
            line = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                ctx.problem(f"unreadable CSV row: {exc}", line=line, source=self.path)
                continue
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) < n or (len(fields) > n and any(f.strip() for f in fields[n:])):
                ctx.problem(f"has {len(fields)} fields but the header has {n}", line=line, source=self.path)
                continue
            yield line, {h: v.strip() for h, v in zip(self.header, fields)}


def parse_score(text: str, ctx: LoadContext, line: int, source, column: str = "score") -> tuple[bool, float | None]:
    """(ok, value): empty -> (True, None) = unlabelled; not a finite number -> problem, (False, None)."""
    if text == "":
        return True, None
    try:
        value = float(text)
    except ValueError:
        ctx.problem(f"{column} {text!r} is not a number", line=line, source=source)
        return False, None
    if not math.isfinite(value):
        ctx.problem(f"{column} {text!r} is not a finite number", line=line, source=source)
        return False, None
    return True, value


def parse_split(text: str, ctx: LoadContext, line: int, source, column: str = "split") -> tuple[bool, str | None]:
    """(ok, split): empty -> (True, None); train/val/test/pool and training/validation aliases accepted."""
    if text == "":
        return True, None
    split = SPLIT_ALIASES.get(text.strip().lower())
    if split is None:
        ctx.problem(
            f"{column} {text!r} is not one of {', '.join(SPLITS)} (or training/validation)", line=line, source=source
        )
        return False, None
    return True, split


def image_path(text: str, base: Path) -> Path:
    """A CSV's image cell -> a path: Windows separators accepted, relative paths resolved against `base`."""
    cleaned = text.strip().replace("\\", "/")
    p = Path(os.path.expanduser(cleaned))
    return p if p.is_absolute() else base / p


def whole_option(spec, key: str, lowest: int) -> int | None:
    """A spec option that must be a whole number >= lowest; None when absent."""
    text = spec.option(key)
    if text in (None, ""):
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < lowest:
        raise DatasetError(f"dataset {spec.name!r}: option {key}={text!r} must be a whole number >= {lowest}")
    return value


class FileIndex:
    """Image files under a folder, looked up by file name (indexed once, on first use).

    Public datasets ship images in subfolders that differ between releases (`challenge/training/`,
    `1024x768/`...); their CSVs name only the file. When a name occurs in several folders the one whose
    path contains the earliest entry of `prefer` wins, then the shortest path.
    """

    def __init__(self, root: Path, prefer: tuple[str, ...] = ()):
        self.root = root
        self.prefer = prefer
        self._by_name: dict[str, Path] | None = None
        self._by_lower: dict[str, Path] = {}
        self._by_stem: dict[str, list[Path]] = {}
        self.ambiguous: int = 0

    def _rank(self, p: Path) -> tuple:
        parts = [s.lower() for s in p.relative_to(self.root).parts[:-1]]
        pref = next((i for i, want in enumerate(self.prefer) if want.lower() in parts), len(self.prefer))
        return (pref, len(parts), str(p))

    def _build(self) -> dict[str, Path]:
        by_name: dict[str, Path] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for fn in filenames:
                if os.path.splitext(fn)[1].lower() not in IMAGE_EXTENSIONS:
                    continue
                p = Path(dirpath) / fn
                old = by_name.get(fn)
                if old is not None:
                    self.ambiguous += 1
                    if self._rank(p) >= self._rank(old):
                        continue
                by_name[fn] = p
        self._by_lower = {k.lower(): v for k, v in by_name.items()}
        for name, p in by_name.items():
            self._by_stem.setdefault(os.path.splitext(name)[0].lower(), []).append(p)
        return by_name

    def find(self, name: str) -> Path | None:
        if self._by_name is None:
            self._by_name = self._build()
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        hit = self._by_name.get(base) or self._by_lower.get(base.lower())
        if hit is None:
            stems = self._by_stem.get(os.path.splitext(base)[0].lower(), [])
            if len(stems) == 1:  # same photo saved with another extension (.jpg listed, .tiff on disk)
                hit = stems[0]
        return hit

    def __len__(self) -> int:
        if self._by_name is None:
            self._by_name = self._build()
        return len(self._by_name)


def score_facts(records: list[ImageRecord]) -> dict:
    scores = [r.score for r in records if r.score is not None]
    facts: dict = {"n_images": len(records), "n_labelled": len(scores)}
    if scores:
        facts["score_range"] = [min(scores), max(scores)]
    return facts


def make_dataset(spec: str, records: list[ImageRecord], info: dict) -> Dataset:
    info = {**info, **score_facts(records)}
    return Dataset(spec, records, info)
