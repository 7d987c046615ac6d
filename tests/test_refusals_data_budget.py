"""Issue 21's contract for `edgeiqa data`, `edgeiqa budget` and bare `edgeiqa`: every bad argument list is refused
before any work with exit 2, one stderr line, no traceback, nothing written, within 3 s (helpers.assert_refused)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import assert_refused


@pytest.fixture(scope="module", autouse=True)
def _imported():
    """Import once what any edgeiqa process imports at start, so the 3 s bound times the refusal, not imports."""
    import timm  # noqa: F401

    import edgeiqa.data.degradations  # noqa: F401
    import edgeiqa.students  # noqa: F401
    import edgeiqa.teachers  # noqa: F401


@pytest.fixture
def place(tmp_path, monkeypatch) -> Path:
    """A folder of inputs (an image folder, a good CSV, a header-only CSV, a CSV with a bad row) and a cache."""
    (tmp_path / "imgs").mkdir()
    arr = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "imgs" / "a.png")
    for name, rows in (("good.csv", [["imgs/a.png", "3"]]), ("empty.csv", []), ("bad.csv", [["imgs/a.png", "x"]])):
        with open(tmp_path / name, "w", newline="") as f:
            csv.writer(f).writerows([["image", "score"], *rows])
    foreign = tmp_path / "cache" / "sample-v2"  # the user's own folder where the sample set would go
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    monkeypatch.setenv("EDGEIQA_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


TOP = [
    ([], r"^edgeiqa: error: choose a command: data, budget, teachers"),
    (["nosuch"], r"invalid choice: 'nosuch'"),
    (["--nosuch"], r"unrecognized arguments|required|invalid choice"),
    (["data"], r"^edgeiqa data: error: choose an action: build, check, info, kinds$"),
    (["teachers"], r"^edgeiqa teachers: error: choose an action: train, pretrain, label, list$"),
    (["data", "nosuch"], r"invalid choice: 'nosuch'"),
]

DATA = [
    (["data", "build"], r"required: name"),
    (["data", "build", "samples"], r"invalid choice: 'samples'"),
    (["data", "build", "sample"], r"sample-v2 exists and edgeiqa did not write it"),
    (["data", "build", "sample", "--force"], r"sample-v2 exists and edgeiqa did not write it"),
    (["data", "build", "sample", "--frce"], r"unrecognized arguments: --frce"),
    (["data", "check"], r"required: spec"),
    (["data", "check", "csv:imgs"], r"imgs is a folder; csv: takes a CSV file"),
    (["data", "check", "folder:good.csv"], r"good\.csv is a file; folder: takes a folder \(csv:good\.csv"),
    (["data", "check", "koniq:good.csv"], r"good\.csv is a file; koniq: takes a folder"),
    (["data", "check", "nope.csv"], r"no such file or folder"),
    (["data", "check", "csv:nope.csv"], r"no such file or folder"),
    (["data", "check", "konik:/x"], r"did you mean 'koniq'"),
    (["data", "check", "folder:imgs?x=1"], r"unknown option 'x'"),
    (["data", "check", "csv:good.csv?val=2"], r"val='2' must be a number"),
    (["data", "check", "csv:good.csv?val_seed=x"], r"val_seed='x' must be a whole number"),
    (["data", "check", ""], r"empty dataset spec"),
    (["data", "check", "good.csv", "--decdoe"], r"unrecognized arguments: --decdoe"),
    (["data", "info"], r"required: spec"),
    (["data", "info", "empty.csv"], r"^edgeiqa: error: empty\.csv: no images"),
    (["data", "info", "csv:empty.csv"], r"no images"),
    (["data", "info", "bad.csv"], r"bad\.csv line 2: score 'x' is not a number; `edgeiqa data check bad\.csv`"),
    (["data", "info", "csv:imgs"], r"imgs is a folder; csv: takes a CSV file"),
    (["data", "info", "folder:good.csv"], r"good\.csv is a file; folder: takes a folder"),
    (["data", "info", "sample?foo=1"], r"unknown option 'foo'"),
    (["data", "kinds", "--group", "blurz"], r"did you mean 'blurs'"),
    (["data", "kinds", "--group"], r"expected one argument"),
]

MOBILE = ["budget", "--model", "mobilenetv3_large_100"]
BUDGET = [
    (["budget"], r"required: --model"),
    (["budget", "--input", "224"], r"required: --model"),
    ([*MOBILE, "--input", "100000x100000"], r"100000x100000: each side must be at most 16384 px"),
    ([*MOBILE, "--input", "720x16385"], r"at most 16384 px"),
    ([*MOBILE, "--input", "99999999999999999999"], r"at most 16384 px"),
    ([*MOBILE, "--input", "8"], r"both sides >= 16"),
    ([*MOBILE, "--input", "0x0"], r"both sides >= 16"),
    ([*MOBILE, "--input", "-5"], r"both sides >= 16"),
    ([*MOBILE, "--input", "72ax1280"], r"bad input size"),
    ([*MOBILE, "--input", "720x1280x3"], r"bad input size"),
    ([*MOBILE, "--input", "nan"], r"bad input size"),
    ([*MOBILE, "--input", ""], r"bad input size"),
    ([*MOBILE, "--input", "224", "--budget", "0"], r"--budget must be a finite number > 0"),
    ([*MOBILE, "--input", "224", "--budget", "-1"], r"--budget must be a finite number > 0"),
    ([*MOBILE, "--input", "224", "--budget", "nan"], r"--budget must be a finite number"),
    ([*MOBILE, "--input", "224", "--budget", "inf"], r"--budget must be a finite number"),
    ([*MOBILE, "--input", "224", "--budget", "1e9"], r"<= 100000"),
    ([*MOBILE, "--input", "224", "--budget", "many"], r"invalid float value"),
    ([*MOBILE, "--input", "224", "--views", ""], r"name at least one view"),
    ([*MOBILE, "--input", "224", "--views", "resize,fragmnts"], r"did you mean 'fragments'"),
    ([*MOBILE, "--input", "224", "--views", "resize,resize"], r"more than once"),
    ([*MOBILE], r"--input HxW is required"),
    ([*MOBILE, "--input", "224", "--profile", "sample"], r"--profile applies to edgeiqa students"),
    (["budget", "--model", " ", "--input", "224"], r"--model is empty"),
    (["budget", "--model", "no_such_model_xyz", "--input", "224"], r"unknown model 'no_such_model_xyz'"),
    (["budget", "--model", "lite0_mv", "--input", "224"], r"registered views"),
    (["budget", "--model", "ghostnetv2"], r"--profile NAME"),
    (["budget", "--model", "ghostnetv2", "--profile", "sampel"], r"did you mean 'sample'"),
    (["budget", "--model", "ghostnetv2", "--profile", "sample", "--views", "resize"], r"leave out --views"),
    (["budget", "--model", "ghostnetv2", "--profile", "sample", "--input", "16384"], r"profile sample's views"),
    (["budget", "--model", "ghostnetv2", "--input", "16352", "--views", "resize,center"], r"add up to 535 M pixels"),
    ([*MOBILE, "--input", "224", "--jsn"], r"unrecognized arguments: --jsn"),
]


@pytest.mark.parametrize("argv,match", TOP + DATA + BUDGET, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_refused(argv, match, place, capsys):
    assert_refused(argv, capsys, place, match)
    assert (place / "cache" / "sample-v2" / "notes.txt").read_text() == "mine"


def test_cache_that_is_a_file_is_refused(place, capsys, monkeypatch):
    (place / "cachefile").write_text("x")
    monkeypatch.setenv("EDGEIQA_CACHE", str(place / "cachefile"))
    assert_refused(["data", "build", "sample"], capsys, place, r"cachefile is a file, not a folder")
