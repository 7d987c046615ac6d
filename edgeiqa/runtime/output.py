"""Score rows on disk: streamed as they are scored, resumable, sorted by path, in flat memory.

While `edgeiqa score --out OUT` runs, every row is appended to `OUT.part` (JSON lines, flushed per row) the
moment its batch is done, so a crash or a kill loses nothing already scored. The folder walk yields paths
in sorted order (`edgeiqa.runtime.inputs`) and the pipeline keeps input order, so OUT.part normally is
sorted already: at the end one streaming pass checks that (and counts the summary), then OUT (.csv, .jsonl
or .json) is rendered from it row by row in one atomic rename and OUT.part is removed. Rows out of order or
repeated (a resumed run, a slip of the walk) are put in order by an external merge sort: sorted chunks of
CHUNK_ROWS rows spilled to temporary files, then `heapq.merge`; one row per path, the last written wins.
Nothing held grows with the number of files.

--resume: the rows of an existing OUT and of OUT.part are first merged the same way into a sorted OUT.part
(atomic replace: a kill there loses nothing). A last line torn by a crash is dropped (its file is scored
again); a corrupt line with rows after it is not what a crash leaves, so it is refused (`check_resumable`,
before any model is loaded).

Overwriting: `owned_output` / `owned_part` recognise the files edgeiqa wrote (CSV header, a row as the first
JSONL line, the JSON head), which `edgeiqa score` replaces without --force (edgeiqa.outsafe).

File names that are not UTF-8 (surrogate-escaped by Python) are written as their own bytes to a CSV and
read back the same way; JSON escapes them. The walk, in the same order, skips the paths already done by
stepping through that file alongside it (no set of paths is held) and new rows are appended. A killed run
plus a resumed one gives the same OUT as one uninterrupted run: same rows, same order.

Without --out the rows go to a temporary part file and are rendered to stdout the same way.
"""

from __future__ import annotations

import csv
import heapq
import json
import os
import tempfile
import textwrap
from pathlib import Path
from typing import IO, Iterable, Iterator

from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import atomic_path

SCORE_DECIMALS = 6
SUFFIXES = (".csv", ".jsonl", ".json")
CHUNK_ROWS = 20_000  # rows sorted in memory at a time when the part file needs sorting
ROW_KEYS = frozenset({"path", "score", "status", "error"})
CSV_HEADS = (b"path,score,status,error\n", b"path,score,status,error,face_found\n")
JSON_RESULTS = b',\n  "results": ['  # where write_json's head ends (a real newline never occurs inside a JSON string)
HEAD_BYTES = 1 << 20  # enough for any head edgeiqa writes (model path + summary, or one row)


def make_row(res, with_face: bool) -> dict:
    row = {"path": res.path, "score": None if res.score is None else round(res.score, SCORE_DECIMALS),
           "status": "ok" if res.ok else "error", "error": res.error or ""}
    if with_face:
        row["face_found"] = res.info.get("face_found") if res.ok else None
    return row


def _fmt_score(score) -> str:
    return "" if score is None else f"{score:.{SCORE_DECIMALS}f}"


# --- rendering (row by row) ---------------------------------------------------------------------------


def write_csv(f: IO[str], rows: Iterable[dict], with_face: bool) -> None:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["path", "score", "status", "error"] + (["face_found"] if with_face else []))
    for r in rows:
        vals = [r["path"], _fmt_score(r["score"]), r["status"], r["error"]]
        if with_face:
            ff = r.get("face_found")
            vals.append("" if ff is None else str(bool(ff)).lower())
        w.writerow(vals)


def write_jsonl(f: IO[str], rows: Iterable[dict]) -> None:
    for r in rows:
        f.write(json.dumps(r) + "\n")


def write_json(f: IO[str], rows: Iterable[dict], model: str, summary: dict) -> None:
    """The bytes of `json.dumps({"model", "summary", "results": rows}, indent=2) + "\\n"`, written row by row."""
    head = json.dumps({"model": model, "summary": summary}, indent=2)
    f.write(head[:-2] + ',\n  "results": [')  # head ends with "\n}"
    first = True
    for r in rows:
        f.write(("\n" if first else ",\n") + textwrap.indent(json.dumps(r, indent=2), "    "))
        first = False
    f.write("]\n}\n" if first else "\n  ]\n}\n")


def write_rows(f: IO[str], rows: Iterable[dict], fmt: str, with_face: bool, model: str, summary: dict) -> None:
    if fmt == ".json":
        write_json(f, rows, model, summary)
    elif fmt == ".jsonl":
        write_jsonl(f, rows)
    else:
        write_csv(f, rows, with_face)


# --- which files edgeiqa wrote (so replacing them loses nothing of the user's) ------------------------


def is_row(obj) -> bool:
    """Whether `obj` is one score row as `make_row` builds it."""
    return isinstance(obj, dict) and ROW_KEYS <= obj.keys() <= ROW_KEYS | {"face_found"}


def _is_row_line(line: bytes) -> bool:
    try:
        return is_row(json.loads(line))
    except ValueError:
        return False


def owned_output(path: Path) -> bool:
    """Whether `path` is a score file edgeiqa wrote: its CSV header, a JSONL row first, or the JSON head."""
    suffix = Path(path).suffix.lower()
    with open(path, "rb") as f:
        if suffix == ".jsonl":
            return _is_row_line(f.readline(HEAD_BYTES))
        head = f.read(HEAD_BYTES)
    if suffix == ".csv":
        return head.startswith(CSV_HEADS)
    if suffix == ".json":
        return _owned_json_head(head)
    return False


def _owned_json_head(head: bytes) -> bool:
    end = head.find(JSON_RESULTS)
    if end < 0:
        return False
    try:
        doc = json.loads(head[:end] + b"\n}")
    except ValueError:
        return False
    return list(doc) == ["model", "summary"] and isinstance(doc["summary"], dict) and "files" in doc["summary"]


def owned_part(path: Path) -> bool:
    """Whether `path` is a part file edgeiqa wrote: empty, or rows (its first line possibly torn by a kill)."""
    start = b'{"path": '  # every row json.dumps writes starts so
    with open(path, "rb") as f:
        head = f.read(len(start))
    return start.startswith(head)


def check_resumable(out: Path) -> None:
    """Read-only check before any model is loaded: OUT's rows parse, and OUT.part has at most a torn last line."""
    out = Path(out)
    if out.exists():
        for _ in _iter_final(out):
            pass
    part = out.with_name(out.name + ".part")
    if part.exists():
        _check_part_lines(part)


def _check_part_lines(part: Path) -> None:
    bad = None
    with open(part, "rb") as f:
        for n, line in enumerate(f, 1):
            if bad is not None:  # a corrupt line with rows after it is not what a crash leaves
                raise EdgeIQAError(f"--resume: {part} line {bad} is corrupt (only a torn last line is dropped); "
                                   f"delete {part.name} to start over")
            if not _is_row_line(line):
                bad = n


# --- reading (row by row) -----------------------------------------------------------------------------


def _iter_part(path: Path, limit: int | None = None) -> Iterator[dict]:
    """The rows of a part file (JSON lines), up to byte `limit`."""
    used = 0
    with open(path, "rb") as f:
        for line in f:
            used += len(line)
            if limit is not None and used > limit:
                return
            try:
                yield json.loads(line)
            except ValueError:
                raise EdgeIQAError(f"--resume: {path} has a corrupt line; delete it to start over") from None


def _line_start(f, end: int) -> int:
    """Offset of the first byte of the line that ends at byte offset `end` (its newline not included)."""
    pos = end
    while pos > 0:
        step = min(65536, pos)
        f.seek(pos - step)
        nl = f.read(step).rfind(b"\n")
        if nl >= 0:
            return pos - step + nl + 1
        pos -= step
    return 0


def _trim_part(path: Path) -> None:
    """Drop the last line when a kill tore it (no newline, or not a whole row); only that one: the rest is whole."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        whole = f.read(1) == b"\n"
        start = _line_start(f, size - 1 if whole else size)
        f.seek(start)
        if not whole or not _is_row_line(f.read(size - start)):
            f.truncate(start)


def _iter_final(path: Path) -> Iterator[dict]:
    """The rows of a finished OUT; .csv and .jsonl are streamed, a .json document is read whole."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:  # as written
                for r in csv.DictReader(f):
                    row = {"path": r["path"], "score": float(r["score"]) if r["score"] else None,
                           "status": r["status"], "error": r["error"]}
                    if "face_found" in r:
                        row["face_found"] = None if r["face_found"] == "" else r["face_found"] == "true"
                    yield row
        elif suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)
        else:
            yield from json.loads(path.read_text(encoding="utf-8"))["results"]
    except (KeyError, ValueError, TypeError) as exc:
        raise EdgeIQAError(f"--resume: cannot read the rows of {path} ({type(exc).__name__}: {exc})") from None


# --- sorting in bounded memory -------------------------------------------------------------------------


def _path(row: dict) -> str:
    return row["path"]


def sorted_unique(rows: Iterable[dict], chunk: int = CHUNK_ROWS) -> Iterator[dict]:
    """`rows` sorted by path, one per path (the last given wins), holding at most `chunk` rows in memory:
    sorted chunks are spilled to temporary files and merged (`heapq.merge` keeps equal paths in the order
    they were given, so the last one of a run of equal paths is the last written)."""
    with tempfile.TemporaryDirectory(prefix="edgeiqa-sort-") as tmp:
        runs: list[Path] = []
        buf: list[dict] = []
        for r in rows:
            buf.append(r)
            if len(buf) >= chunk:
                runs.append(Path(tmp) / f"run{len(runs)}.jsonl")
                with open(runs[-1], "w", encoding="utf-8") as f:
                    write_jsonl(f, sorted(buf, key=_path))
                buf = []
        buf.sort(key=_path)
        last = None
        for r in heapq.merge(*[_iter_part(p) for p in runs], iter(buf), key=_path):
            if last is not None and r["path"] != last["path"]:
                yield last
            last = r
        if last is not None:
            yield last


def _count(counts: dict, row: dict) -> None:
    counts["files"] += 1
    counts["failed"] += row["status"] != "ok"


def _sorted_counts(path: Path) -> dict | None:
    """One streaming pass: the summary counts if the rows are strictly sorted by path, else None."""
    counts = {"files": 0, "failed": 0}
    prev = None
    for r in _iter_part(path):
        if prev is not None and not prev < r["path"]:
            return None
        prev = r["path"]
        _count(counts, r)
    return counts


def summarize(counts: dict) -> dict:
    return {"files": counts["files"], "scored": counts["files"] - counts["failed"], "failed": counts["failed"]}


class RowSink:
    """Where rows go: appended to a part file as they come, rendered sorted to OUT (or stdout) at the end."""

    def __init__(self, out: str | Path | None, with_face: bool, resume: bool = False):
        self.out = Path(out) if out else None
        self.with_face = with_face
        self._tmp = None
        if self.out is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgeiqa-score-")
            self.part = Path(self._tmp.name) / "rows.part"
        else:
            self.part = self.out.with_name(self.out.name + ".part")
            self.out.parent.mkdir(parents=True, exist_ok=True)
            if resume:
                self._merge_done()
            elif self.part.exists():
                self.part.unlink()
        done_bytes = self.part.stat().st_size if self.part.exists() else 0
        self._done = (r["path"] for r in _iter_part(self.part, limit=done_bytes)) if done_bytes else iter(())
        self._next_done = next(self._done, None)
        self._file = open(self.part, "a", encoding="utf-8")

    def _checked(self, rows: Iterable[dict]) -> Iterator[dict]:
        for r in rows:
            if ("face_found" in r) != self.with_face:
                raise EdgeIQAError(f"--resume: the rows in {self.out} were written by a model "
                                   f"{'with' if 'face_found' in r else 'without'} a face view; this one is not alike")
            yield r

    def _merge_done(self) -> None:
        """OUT's rows and OUT.part's, sorted and one per path, become OUT.part (atomically)."""
        sources = []
        if self.out.exists():
            sources.append(_iter_final(self.out))
        if self.part.exists():
            _trim_part(self.part)
            sources.append(_iter_part(self.part))
        if not sources:
            return
        with atomic_path(self.part) as tmp, open(tmp, "w", encoding="utf-8") as f:
            write_jsonl(f, sorted_unique(self._checked(r for s in sources for r in s)))

    def done(self, path: str) -> bool:
        """Whether `path` was scored by an earlier run; asked in path order (the walk's), it steps through
        the sorted done rows once (a path asked out of order may be scored again: harmless, one row wins)."""
        while self._next_done is not None and self._next_done < path:
            self._next_done = next(self._done, None)
        return self._next_done == path

    def add(self, row: dict) -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def finish(self, model: str, extra: dict, stdout: IO[str] | None = None, stdout_format: str = ".csv") -> dict:
        """Render every row (earlier ones with --resume, then this run's) sorted by path to OUT (atomically,
        then OUT.part is removed) or to `stdout`; return the summary."""
        self.close()
        with tempfile.TemporaryDirectory(prefix="edgeiqa-sorted-") as tmp:
            source = self.part
            counts = _sorted_counts(self.part)
            if counts is None:  # out of order or repeated rows: sort them aside
                source = Path(tmp) / "sorted.jsonl"
                counts = {"files": 0, "failed": 0}
                with open(source, "w", encoding="utf-8") as f:
                    for r in sorted_unique(_iter_part(self.part)):
                        _count(counts, r)
                        f.write(json.dumps(r) + "\n")
            summary = {**summarize(counts), **extra}
            if self.out is None:
                write_rows(stdout, _iter_part(source), stdout_format, self.with_face, model, summary)
            else:
                # surrogateescape: a file name that is not UTF-8 is written as its own bytes (JSON escapes it)
                with atomic_path(self.out) as dest, open(dest, "w", encoding="utf-8", newline="",
                                                         errors="surrogateescape") as f:
                    write_rows(f, _iter_part(source), self.out.suffix.lower(), self.with_face, model, summary)
        os.unlink(self.part)
        if self._tmp is not None:
            self._tmp.cleanup()
        return summary

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if hasattr(self._done, "close"):
            self._done.close()
