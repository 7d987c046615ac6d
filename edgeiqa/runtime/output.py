"""Score rows on disk: streamed as they are scored, resumable, sorted by path at the end.

While `edgeiqa score --out OUT` runs, every row is appended to `OUT.part` (JSON lines, flushed per row) the
moment its batch is done, so a crash or a kill loses nothing already scored. At the end the rows of
`OUT.part` (plus, with --resume, those of an existing OUT) are sorted by path and written to OUT in its
format (.csv, .jsonl or .json) in one atomic rename, and `OUT.part` is removed. `--resume` reads both
files, skips every path already there and appends to `OUT.part`: a killed run plus a resumed one gives the
same OUT as one uninterrupted run (the rows are the same and the order is the sort order).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from edgeiqa.errors import EdgeIQAError
from edgeiqa.fileio import write_text_atomic

SCORE_DECIMALS = 6
SUFFIXES = (".csv", ".jsonl", ".json")


def make_row(res, with_face: bool) -> dict:
    row = {"path": res.path, "score": None if res.score is None else round(res.score, SCORE_DECIMALS),
           "status": "ok" if res.ok else "error", "error": res.error or ""}
    if with_face:
        row["face_found"] = res.info.get("face_found") if res.ok else None
    return row


def _fmt_score(score) -> str:
    return "" if score is None else f"{score:.{SCORE_DECIMALS}f}"


def to_csv(rows: list[dict], with_face: bool) -> str:
    buf = io.StringIO()
    fields = ["path", "score", "status", "error"] + (["face_found"] if with_face else [])
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for r in rows:
        vals = [r["path"], _fmt_score(r["score"]), r["status"], r["error"]]
        if with_face:
            ff = r.get("face_found")
            vals.append("" if ff is None else str(bool(ff)).lower())
        w.writerow(vals)
    return buf.getvalue()


def to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def to_json(rows: list[dict], model: str, summary: dict) -> str:
    return json.dumps({"model": model, "summary": summary, "results": rows}, indent=2) + "\n"


def summarize(rows: list[dict]) -> dict:
    failed = sum(1 for r in rows if r["status"] != "ok")
    return {"files": len(rows), "scored": len(rows) - failed, "failed": failed}


def _read_final(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="") as f:
                rows = []
                for r in csv.DictReader(f):
                    row = {"path": r["path"], "score": float(r["score"]) if r["score"] else None,
                           "status": r["status"], "error": r["error"]}
                    if "face_found" in r:
                        row["face_found"] = None if r["face_found"] == "" else r["face_found"] == "true"
                    rows.append(row)
                return rows
        if suffix == ".jsonl":
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return list(json.loads(path.read_text())["results"])
    except (KeyError, ValueError, TypeError) as exc:
        raise EdgeIQAError(f"--resume: cannot read the rows of {path} ({type(exc).__name__}: {exc})") from None


def _read_part(path: Path) -> list[dict]:
    """Rows of a .part file; a last line cut short by a kill is dropped (and cut off the file)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    rows = []
    for line in data[:end].splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise EdgeIQAError(f"--resume: {path} has a corrupt line; delete it to start over") from None
    return rows


class RowSink:
    """Where rows go: streamed to OUT.part and sorted into OUT at the end, or kept for stdout.

    While scoring into a file only the paths already written are held (for --resume and duplicates);
    the rows themselves are read back from disk for the final sort."""

    def __init__(self, out: str | Path | None, with_face: bool, resume: bool = False):
        self.out = Path(out) if out else None
        self.with_face = with_face
        self.paths: set[str] = set()
        self._kept: list[dict] = []  # stdout mode only
        self._file = None
        if self.out is None:
            return
        self.part = self.out.with_name(self.out.name + ".part")
        self._resumed_final = resume and self.out.exists()
        if resume:
            if self.out.exists():
                self._take(_read_final(self.out))
            if self.part.exists():
                self._take(_read_part(self.part))
        elif self.part.exists():
            self.part.unlink()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.part, "a", encoding="utf-8")

    def _take(self, rows: list[dict]) -> None:
        for r in rows:
            if ("face_found" in r) != self.with_face:
                raise EdgeIQAError(f"--resume: the rows in {self.out} were written by a model "
                                   f"{'with' if 'face_found' in r else 'without'} a face view; this one is not alike")
            self.paths.add(r["path"])

    def done(self, path: str) -> bool:
        return path in self.paths

    def add(self, row: dict) -> None:
        self.paths.add(row["path"])
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        else:
            self._kept.append(row)

    def render(self, rows: list[dict], fmt: str, model: str, summary: dict) -> str:
        if fmt == ".json":
            return to_json(rows, model, summary)
        if fmt == ".jsonl":
            return to_jsonl(rows)
        return to_csv(rows, self.with_face)

    def finish(self, model: str, extra: dict) -> tuple[list[dict], dict]:
        """All rows (earlier ones with --resume, then this run's) sorted by path, and their summary; with a
        file, OUT is written atomically and OUT.part removed."""
        if self._file is None:
            merged = {r["path"]: r for r in self._kept}
        else:
            self._file.close()
            self._file = None
            merged = {}
            if self.out.exists() and self._resumed_final:
                merged.update((r["path"], r) for r in _read_final(self.out))
            merged.update((r["path"], r) for r in _read_part(self.part))
        rows = [merged[k] for k in sorted(merged)]
        summary = {**summarize(rows), **extra}
        if self.out is not None:
            write_text_atomic(self.out, self.render(rows, self.out.suffix.lower(), model, summary))
            os.unlink(self.part)
        return rows, summary

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
