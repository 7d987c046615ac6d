"""Folder scoring in flat memory: the walk yields paths in sorted order (the output's order), rows are
sorted by an external merge sort when needed, and the JSON document is written row by row."""

from __future__ import annotations

import io
import json
import os
import random

from edgeiqa.runtime.inputs import walk_inputs
from edgeiqa.runtime.output import sorted_unique, write_json
from edgeiqa.runtime.items import Listed


def _paths(entries) -> list[str]:
    return [e.path if isinstance(e, Listed) else e for e in entries]


def test_walk_order_is_sorted_path_order(tmp_path):
    """Names that sort differently per folder than as full paths ('a-x' < 'a/b' but 'a' < 'a-x'), a folder
    named like an image with a sibling sharing its prefix, and nested levels."""
    root = tmp_path / "r"
    for rel in ["a/b", "a-x", "a.txt", "a/c/d", "a0", "x.jpg/in.png", "x.jpg.bak", "x.jpg-1/z", "B", "_",
                "a b/c", "ab", "a/c-d", "a/c.e"]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    got = _paths(walk_inputs([root]))
    assert got == sorted(got), got
    assert str(root / "x.jpg") in got  # the folder named like an image gets its own row
    assert len(got) == 15


def test_overlapping_paths_are_merged_in_order_once(tmp_path):
    for rel in ["p/a.jpg", "p/s/b.jpg", "q.jpg", "p/s/c.jpg"]:
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    got = _paths(walk_inputs([tmp_path / "q.jpg", tmp_path / "p" / "s", tmp_path / "p", tmp_path / "missing"]))
    assert got == sorted(got)
    assert len(got) == len(set(got)) == 5
    assert str(tmp_path / "missing") in got


def test_walk_is_lazy(tmp_path):
    """The first entry comes before the whole tree is listed: each folder is listed when it is reached."""
    for i in range(3):
        (tmp_path / f"d{i}").mkdir()
        (tmp_path / f"d{i}" / "f").write_bytes(b"")
    it = walk_inputs([tmp_path])
    assert next(it) == os.path.join(str(tmp_path), "d0", "f")
    os.chmod(tmp_path / "d2", 0)  # listed only now: if the walk had listed it up front, this row would not appear
    try:
        rest = list(it)
    finally:
        os.chmod(tmp_path / "d2", 0o755)
    if os.geteuid() != 0:
        assert isinstance(rest[-1], Listed) and "cannot read folder" in rest[-1].reason


def test_sorted_unique_external_sort_last_wins():
    rng = random.Random(0)
    rows = [{"path": f"p{rng.randrange(500):04d}", "v": i} for i in range(3000)]
    want = {}
    for r in rows:
        want[r["path"]] = r
    got = list(sorted_unique(rows, chunk=257))  # 12 spilled chunks + a tail in memory
    assert got == [want[k] for k in sorted(want)]


def test_streamed_json_equals_json_dumps():
    rows = [{"path": "a\n\"b\u00e9", "score": 1.5, "status": "ok", "error": ""},
            {"path": "c", "score": None, "status": "error", "error": "empty file"}]
    summary = {"files": 2, "scored": 1, "failed": 1, "threads": 2}
    for rs in (rows, []):
        f = io.StringIO()
        write_json(f, iter(rs), "m.onnx", summary)
        assert f.getvalue() == json.dumps({"model": "m.onnx", "summary": summary, "results": rs}, indent=2) + "\n"


def test_owned_output_knows_what_edgeiqa_wrote(tmp_path):
    """Issue 21: `score --out` replaces without --force only a file these writers produced."""
    from edgeiqa.runtime.output import owned_output, owned_part, write_csv, write_jsonl

    rows = [{"path": "a,\"b\"\nc", "score": 1.5, "status": "ok", "error": "", "face_found": True}]
    mine = {"s.csv": lambda f: write_csv(f, iter(rows), with_face=True),
            "s.jsonl": lambda f: write_jsonl(f, iter(rows)),
            "s.json": lambda f: write_json(f, iter(rows), "m.onnx", {"files": 1, "scored": 1, "failed": 0})}
    for name, write in mine.items():
        with open(tmp_path / name, "w", encoding="utf-8", newline="") as f:
            write(f)
        assert owned_output(tmp_path / name), name
    foreign = {"n.csv": "path,score\n", "n.jsonl": '{"path": "a"}\n', "n.json": '{"model": "m", "results": []}\n',
               "e.json": "",
               "x.json": '{\n  "model": "m",\n  "summary": {"files": 1},\n  "extra": 1,\n  "results": []}'}
    for name, text in foreign.items():
        (tmp_path / name).write_text(text)
        assert not owned_output(tmp_path / name), name
    for text, owned in (("", True), ('{"pa', True), ('{"path": "x", "sc', True), ("notes\n", False)):
        (tmp_path / "p.part").write_text(text)
        assert owned_part(tmp_path / "p.part") is owned, text
