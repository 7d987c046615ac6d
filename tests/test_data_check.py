"""`check_dataset` and the `edgeiqa data` CLI: every problem reported with its line, never a traceback."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeiqa.cli.main import main
from edgeiqa.data.check import check_dataset
from edgeiqa.errors import DatasetError


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(len(path.name)).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _by_line(report):
    out = {}
    for p in report["problems"]:
        out.setdefault(p["line"], []).append(p)
    return out


@pytest.fixture
def bad_csv(tmp_path):
    """Line 3: non-numeric score; line 4: missing file; the rest is fine."""
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "b.jpg")
    return _csv(tmp_path / "labels.csv", ["image", "score", "split"], [
        ["a.jpg", "1.0", "train"],  # line 2
        ["b.jpg", "high", "train"],  # line 3
        ["missing.jpg", "2.0", "test"],  # line 4
    ])


def test_check_reports_bad_rows_by_line(bad_csv):
    report = check_dataset(f"csv:{bad_csv}")
    assert not report["ok"]
    lines = _by_line(report)
    assert [p["kind"] for p in lines[3]] == ["bad_row"] and "'high' is not a number" in lines[3][0]["message"]
    assert [p["kind"] for p in lines[4]] == ["missing_file"] and "missing.jpg" in lines[4][0]["message"]
    assert 2 not in lines
    assert report["counts"]["bad_row"] == 1 and report["counts"]["missing_file"] == 1
    assert report["n_records"] == 2  # the bad row is left out, the missing-file row kept
    json.dumps(report)  # JSON-ready


def test_cli_check_exit_code_and_lines(bad_csv, capsys):
    code = main(["data", "check", f"csv:{bad_csv}"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "labels.csv line 3" in out and "labels.csv line 4" in out
    assert "missing.jpg" in out
    assert "Traceback" not in out + err


def test_cli_check_json(bad_csv, capsys):
    assert main(["data", "check", f"csv:{bad_csv}", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert sorted(p["line"] for p in report["problems"]) == [3, 4]


def test_check_many_kinds_of_problem(tmp_path):
    _image(tmp_path / "ok.png")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    path = _csv(tmp_path / "l.csv", ["image", "score", "split", "scene"], [
        ["ok.png", "1", "train", "s"],  # 2
        ["", "1", "train", "s"],  # 3 empty image column
        ["ok.png", "2", "somewhere", "s"],  # 4 unknown split
        ["ok.png", "3", "val", "s"],  # 5 duplicate of line 2
        ["text.jpg", "1", "", ""],  # 6 not an image
        ["empty.jpg", "1", "", ""],  # 7 zero bytes
        ["tiny.png", "1", "", ""],  # 8 too small
        ["cut.jpg", "1", "", ""],  # 9 truncated: only a full decode sees it
        ["ok.png", "inf", "", ""],  # 10 not finite
    ])
    with open(path, "a") as f:
        f.write("ok.png,1,train,s,extra,fields\n")  # 11 too many fields
    report = check_dataset(f"csv:{path}")
    lines = _by_line(report)
    assert "empty image column" in lines[3][0]["message"]
    assert "'somewhere'" in lines[4][0]["message"]
    assert lines[5][0]["kind"] == "duplicate" and "line 2" in lines[5][0]["message"]
    assert lines[6][0]["kind"] == "unreadable" and "not an image" in lines[6][0]["message"]
    assert "empty" in lines[7][0]["message"]
    assert "too small" in lines[8][0]["message"]
    assert 9 not in lines  # header check only
    assert "finite" in lines[10][0]["message"]
    assert "fields" in lines[11][0]["message"]
    assert report["decode"] is False

    decoded = check_dataset(f"csv:{path}", decode=True)
    dl = _by_line(decoded)
    assert dl[9][0]["kind"] == "unreadable" and "truncated" in dl[9][0]["message"]
    assert decoded["checked_images"] == 5


def test_check_clean_dataset_exit_zero(tmp_path, capsys):
    _image(tmp_path / "a.jpg")
    path = _csv(tmp_path / "l.csv", ["image", "score"], [["a.jpg", "3"]])
    assert check_dataset(f"csv:{path}")["ok"]
    assert main(["data", "check", f"csv:{path}", "--decode"]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_check_structural_problem_is_reported(tmp_path, capsys):
    path = _csv(tmp_path / "l.csv", ["image", "mos"], [["a.jpg", "3"]])
    report = check_dataset(f"csv:{path}")
    assert report["problems"][0]["kind"] == "dataset" and "missing column 'score'" in report["problems"][0]["message"]



@pytest.mark.parametrize("prefix", ["", "csv:"])
def test_check_missing_csv_is_a_spec_error_with_or_without_prefix(tmp_path, capsys, prefix):
    # issue 9, defect 8: `data check nothere.csv` and `data check csv:nothere.csv` exit alike (2), one line
    assert main(["data", "check", f"{prefix}{tmp_path / 'absent.csv'}"]) == 2
    out, err = capsys.readouterr()
    assert "absent.csv" in err and "no such file or folder" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_check_header_only_csv_fails(tmp_path, capsys):
    path = _csv(tmp_path / "l.csv", ["image", "score"], [])
    report = check_dataset(f"csv:{path}")
    assert not report["ok"] and report["problems"][0]["kind"] == "dataset" and "no images" in report["problems"][0]["message"]
    assert main(["data", "check", str(path)]) == 1
    assert "no images" in capsys.readouterr().out


def test_check_bad_spec_is_a_user_error(capsys):
    with pytest.raises(DatasetError, match="did you mean 'koniq'"):
        check_dataset("konik:/x")
    assert main(["data", "check", "konik:/x"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'koniq'" in err and "Traceback" not in err


def test_cli_info(tmp_path, capsys):
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        _image(tmp_path / name)
    path = _csv(tmp_path / "l.csv", ["image", "score", "scene", "split", "kind"], [
        ["a.jpg", "1", "s1", "train", "blur"],
        ["b.jpg", "2", "s1", "train", "noise"],
        ["c.jpg", "", "s2", "test", "noise"],
        ["d.jpg", "3", "s3", "val", "jpeg"],  # a val split of its own: none is carved from train
    ])
    assert main(["data", "info", f"csv:{path}", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_images"] == 4 and info["n_labelled"] == 3 and info["n_scenes"] == 3
    assert info["splits"] == {"train": {"images": 2, "labelled": 2, "scenes": 1},
                              "val": {"images": 1, "labelled": 1, "scenes": 1},
                              "test": {"images": 1, "labelled": 0, "scenes": 1}}
    assert info["kinds"] == {"blur": 1, "jpeg": 1, "noise": 2}
    assert info["info"]["score_range"] == [1.0, 3.0]
    assert main(["data", "info", f"csv:{path}"]) == 0
    out = capsys.readouterr().out
    assert "4 images" in out and "train" in out and "kinds: blur 1, jpeg 1, noise 2" in out


def test_cli_info_error_has_no_traceback(tmp_path, capsys):
    path = _csv(tmp_path / "l.csv", ["image", "score"], [["a.jpg", "x"]])
    assert main(["data", "info", f"csv:{path}"]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "Traceback" not in err


def test_cli_data_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "--help"])
    assert info.value.code == 0
    assert "check" in capsys.readouterr().out


def test_cli_build_sample(sample_csv, capsys):
    # the session fixture has built it already, so this reuses the cache
    assert main(["data", "build", "sample", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert Path(out["csv"]) == Path(sample_csv)
    assert {"train", "val", "test"} <= set(out["splits"])
    assert main(["data", "build", "sample"]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "test" in text and "scenes" in text


# ------------------------------------------------------------------ issue 21, item 14


@pytest.mark.parametrize("make_spec,message", [
    (lambda d, f: f"csv:{d}", r"is a folder; csv: takes a CSV file \(folder:"),
    (lambda d, f: f"folder:{f}", r"is a file; folder: takes a folder \(csv:"),
    (lambda d, f: f"koniq:{f}", r"is a file; koniq: takes a folder"),
])
@pytest.mark.parametrize("action", ["check", "info"])
def test_wrong_kind_of_target_is_one_line_exit_2(tmp_path, capsys, make_spec, message, action):
    # `data check csv:FOLDER` exited 1 with the fault only in the stdout report; it is a usage error like `info`'s
    from helpers import assert_refused

    folder = tmp_path / "imgs"
    _image(folder / "a.png")
    labels = _csv(tmp_path / "l.csv", ["image", "score"], [["imgs/a.png", "3"]])
    assert_refused(["data", action, make_spec(folder, labels)], capsys, tmp_path, message)
    assert capsys.readouterr().out == ""


def test_check_flags_unknown_kinds_with_the_closest(tmp_path, capsys):
    for name in ("a.png", "b.png", "c.png"):
        _image(tmp_path / name)
    path = _csv(tmp_path / "l.csv", ["image", "score", "scene", "kind"], [
        ["a.png", "1", "s1", "blur"],  # 2
        ["b.png", "2", "s1", "blurr"],  # 3
        ["c.png", "3", "s1", "blurr"],  # 4: the same value is reported once, at its first line
    ])
    report = check_dataset(f"csv:{path}")
    assert not report["ok"] and report["counts"]["unknown_kind"] == 1
    (problem,) = report["problems"]
    assert problem["kind"] == "unknown_kind" and problem["line"] == 3
    assert "'blurr' on 2 row(s); did you mean 'blur'?" in problem["message"]
    assert main(["data", "check", str(path)]) == 1
    assert "l.csv line 3: [unknown_kind]" in capsys.readouterr().out


def test_check_accepts_every_library_kind(tmp_path):
    from edgeiqa.data.degradations import GROUPS

    kinds = [k for ks in GROUPS.values() for k in ks]
    rows = []
    for i, kind in enumerate(kinds):
        _image(tmp_path / f"{i}.png")
        rows.append([f"{i}.png", "3", kind])
    assert check_dataset(f"csv:{_csv(tmp_path / 'l.csv', ['image', 'score', 'kind'], rows)}")["ok"]


def test_info_header_only_csv_is_one_line_exit_2(tmp_path, capsys):
    from helpers import assert_refused

    path = _csv(tmp_path / "l.csv", ["image", "score"], [])
    assert_refused(["data", "info", str(path)], capsys, tmp_path, r"l\.csv: no images")


def test_info_bad_rows_are_one_line(tmp_path, capsys):
    from helpers import assert_refused

    path = _csv(tmp_path / "l.csv", ["image", "score"], [["a.jpg", "x"], ["b.jpg", "y"]])
    assert_refused(["data", "info", str(path)], capsys, tmp_path,
                   r"l\.csv line 2: score 'x' is not a number \(and 1 more\); `edgeiqa data check")


@pytest.mark.parametrize("argv,actions", [
    (["data"], "build, check, info, kinds"),
    (["teachers"], "train, pretrain, label, list"),
])
def test_command_without_action_names_the_actions(argv, actions, capsys, tmp_path):
    from helpers import assert_refused

    assert_refused(argv, capsys, tmp_path, f"^edgeiqa {argv[0]}: error: choose an action: {actions}$")


def test_bare_edgeiqa_is_a_usage_error(capsys, tmp_path):
    from helpers import assert_refused

    line = assert_refused([], capsys, tmp_path, r"^edgeiqa: error: choose a command: data, budget")
    assert "score" in line
    main([])
    err = capsys.readouterr().err
    assert err.startswith("usage: edgeiqa") and "\n  score " in err  # each command's one-line help follows
