"""Issue 21: every bad argument of `edgeiqa score` and `edgeiqa eval` is refused up front - exit 2, one stderr
line, no traceback, nothing written, within 3 s - before any model is loaded.

The model here is a file named `.onnx` that is not a model: a refusal that came from loading it would say so,
not what the table expects, so each row also shows that its check runs before the model is opened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import assert_refused, skimage_photos, write_photo_csv


@pytest.fixture
def site(tmp_path) -> Path:
    """A user's folder: photos, a CSV of theirs, notes, a not-a-model `.onnx`, run-like folders."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for p in skimage_photos(2):
        (imgs / p.name).write_bytes(p.read_bytes())
    (tmp_path / "empty").mkdir()
    (tmp_path / "data.csv").write_text("image,score\nimgs/x.jpg,3\n")
    (tmp_path / "notes.csv").write_text("my,notes\n")
    (tmp_path / "notes.json").write_text('{"mine": true}\n')
    (tmp_path / "notes.txt").write_text("notes\n")
    (tmp_path / "m.onnx").write_bytes(b"not an onnx graph")
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "link").symlink_to(imgs)
    (tmp_path / "torn.csv.part").write_text('{"path": "a", "score": 1.0, "status": "ok", "error": ""}\n'
                                            'garbage\n{"path": "b", "score": 1.0, "status": "ok", "error": ""}\n')
    (tmp_path / "other.csv.part").write_text("not edgeiqa's\n")
    (tmp_path / "norun").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "card.json").write_text(json.dumps({"teacher": {"dir": "teachers"}}))
    write_photo_csv(tmp_path / "labels.csv", skimage_photos(3), scenes=1)
    return tmp_path


SCORE = [  # (arguments after `score`, the line's pattern); see _argv for `M` and `@`
    (["@nope", "--model", "M"], r"error: \S*nope: no such file or folder$"),
    (["@imgs", "@nope", "@gone", "--model", "M"], r"nope: no such file or folder \(and 1 more\)"),
    (["@empty", "--model", "M", "--out", "@s.csv"], r"nothing to score"),
    (["@data.csv", "--model", "M", "--out", "@data.csv"], r"--out \S*data.csv is also an input"),
    (["@imgs", "--model", "M", "--out", "@imgs/s.csv"], r"lies inside \S*imgs, which this command scans"),
    (["@link", "--model", "M", "--out", "@imgs/s.csv"], r"lies inside \S*imgs, which this command scans"),
    (["@imgs", "--model", "M", "--out", "@m.json"], r"--out \S*m.json is also an input"),  # the model's sidecar
    (["@imgs", "--model", "M", "--out", "@notes.csv"], r"notes.csv exists and edgeiqa did not write it; pass --force"),
    (["@imgs", "--model", "M", "--out", "@notes.json"], r"notes.json exists and edgeiqa did not write it"),
    (["@imgs", "--model", "M", "--out", "@other.csv"], r"other.csv.part exists and edgeiqa did not write it"),
    (["@imgs", "--model", "M", "--out", "@folder.csv"], r"folder.csv is a folder; a file name is expected"),
    (["@imgs", "--model", "M", "--out", "@notes.txt/s.csv"], r"notes.txt is a file, not a folder"),
    (["@imgs", "--model", "M", "--out", "/proc/x/s.csv"], r"--out /proc/x/s.csv: cannot write in /proc"),
    (["@imgs", "--model", "M", "--out", "@s.txt"], r"use a .csv, .jsonl or .json file name"),
    (["@imgs", "--model", "M", "--out", "@torn.csv", "--resume"], r"torn.csv.part line 2 is corrupt"),
    (["@imgs", "--model", "M", "--resume"], r"--resume needs --out"),
    (["@imgs", "--model", "M", "--threads", "100000"], r"--threads 100000 is more than this machine's \d+ usable"),
    (["@imgs", "--model", "M", "--threads", "0"], r"--threads must be >= 1"),
    (["@imgs", "--model", "M", "--workers", "100000"], r"--workers 100000 is more than this machine's \d+ usable"),
    (["@imgs", "--model", "M", "--workers", "0"], r"--workers must be >= 1"),
    (["@imgs", "--model", "M", "--batch", "100000"], r"--batch 100000 is more than the most images per batch"),
    (["@imgs", "--model", "M", "--batch", "-1"], r"--batch must be >= 1"),
    (["@imgs", "--model", "M", "--batch", "x"], r"argument --batch: invalid int value"),
    (["@imgs", "--model", "M", "--device", "gpu"], r"unknown device 'gpu' .*; did you mean 'cuda'\?"),
    (["@imgs", "--model", "M", "--device", "cuda:x"], r"unknown device 'cuda:x'"),
    (["@imgs", "--model", "M", "--precision", "fp12"], r"unknown precision 'fp12' .*; did you mean"),
    (["@imgs", "--model", "M", "--precision", "half"], r"unknown precision 'half' .*; did you mean 'fp16'\?"),
    (["@imgs", "--model", "M", "--precision", "bf16"], r"--precision bf16 applies to torch models"),
    (["@imgs", "--model", "@none.onnx"], r"model not found: \S*none.onnx"),
    (["@imgs", "--model", "@notes.txt"], r"cannot tell the model format from suffix '.txt'"),
]

EVAL = [  # (arguments after `eval`, the line's pattern)
    (["--model", "@none.onnx", "--data", "csv:@labels.csv"], r"model not found"),
    (["--model", "M", "--data", "csv:@labels.csv", "--device", "gpu"], r"unknown device 'gpu' .*did you mean 'cuda'"),
    (["--model", "M", "--data", "csv:@labels.csv", "--device", "cuda:x"], r"unknown device 'cuda:x'"),
    (["--model", "M", "--data", "csv:@labels.csv", "--precision", "fp12"], r"unknown precision 'fp12'"),
    (["--model", "M", "--data", "csv:@labels.csv", "--precision", "bf16"], r"--precision bf16 applies to torch models"),
    (["--model", "@notes.txt", "--data", "csv:@labels.csv"], r"cannot tell the model format"),
    (["--model", "@norun", "--data", "csv:@labels.csv"], r"a folder without student.pt \(a run\) or ensemble.json"),
    (["--model", "M", "--data", "csv:@labels.csv", "--teacher"], r"--teacher needs a run folder or a teachers folder"),
    (["--model", "@run", "--data", "csv:@labels.csv", "--teacher"], r"teachers folder \S+ from \S+ has no ensemble"),
    (["--model", "M", "--data", "csv:@nope.csv"], r"no such file or folder: \S*nope.csv"),
    (["--model", "M", "--data", "csv:@labels.csv", "--split", "tset"], r"--split 'tset'.*; did you mean 'test'\?"),
]


def _argv(command: str, args: list[str], site: Path) -> list[str]:
    """`M` is the not-a-model .onnx; `@name` (also in `csv:@name`) a path in the site."""
    subs = {"M": str(site / "m.onnx")}
    return [command, *(subs.get(a) or a.replace("@", f"{site}/") for a in args)]


@pytest.mark.parametrize("args, match", SCORE, ids=[" ".join(a) for a, _ in SCORE])
def test_score_refuses(site, capsys, args, match):
    assert_refused(_argv("score", args, site), capsys, site, match)


@pytest.mark.parametrize("args, match", EVAL, ids=[" ".join(a) for a, _ in EVAL])
def test_eval_refuses(site, capsys, args, match):
    assert_refused(_argv("eval", args, site), capsys, site, match)
