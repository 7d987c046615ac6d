"""Degradation names on the CLI: `edgeiqa data kinds` and `teachers pretrain --kinds/--groups`.

An unknown kind or group anywhere is one line naming the closest valid name, exit 2, nothing written;
a pre-training pool with too few readable photos says how many were found and how many are needed.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeiqa.cli.main import main
from edgeiqa.data.degradations import GROUPS, select_kinds
from edgeiqa.errors import EdgeIQAError
from edgeiqa.teachers.pretrain import MIN_IMAGES, library_kinds

ALL_KINDS = [k for ks in GROUPS.values() for k in ks]


def test_data_kinds_lists_the_library(capsys):
    assert main(["data", "kinds", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rows] == ALL_KINDS and len(rows) == 36
    assert {r["group"] for r in rows} == set(GROUPS)
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["gaussian_blur"]["severity_range"] == "amount 0 -> 1" and "0 -> 5 px" in by_kind["gaussian_blur"]["description"]
    assert by_kind["blur"]["severity_range"] == "severity 1 -> 6"  # a sample-v1 ladder kind
    assert by_kind["noise"]["uses_rng"] and not by_kind["jpeg"]["uses_rng"]
    assert main(["data", "kinds"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["group", "kind"] and len(lines) == 1 + 36 + 1
    for line, row in zip(lines[1:], rows):
        assert line.split()[:2] == [row["group"], row["kind"]] and line.endswith(row["description"])
    assert lines[-1].startswith("36 kinds in 8 groups")


def test_data_kinds_group_filter(capsys):
    assert main(["data", "kinds", "--group", "compression", "--json"]) == 0
    assert [r["kind"] for r in json.loads(capsys.readouterr().out)] == ["jpeg", "jpeg2000"]
    assert main(["data", "kinds", "--group", "camera"]) == 0
    out = capsys.readouterr().out
    assert "low_light" in out and "gaussian_blur" not in out and "5 kinds in 1 group" in out


@pytest.mark.parametrize("argv, closest", [
    (["data", "kinds", "--group", "nois"], "noise"),
    (["data", "kinds", "--group", "sharpness", "--json"], "sharpness_contrast"),
])
def test_data_kinds_unknown_group(argv, closest, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"did you mean '{closest}'" in err


def test_select_kinds():
    assert select_kinds() is None
    assert select_kinds(groups=["compression"]) == ["jpeg", "jpeg2000"]
    # union of both, in table order, no repeats
    assert select_kinds(kinds=["low_light", "jpeg"], groups=["compression"]) == ["jpeg", "jpeg2000", "low_light"]
    with pytest.raises(EdgeIQAError, match="did you mean 'motion_blur'"):
        select_kinds(kinds=["motion_blr"])
    with pytest.raises(EdgeIQAError, match="no degradation kind"):
        select_kinds(kinds=[])
    assert library_kinds() == ALL_KINDS  # pre-training's default pool: the whole library


@pytest.mark.parametrize("flag, value, closest", [
    ("--kinds", "gaussian_blur,gausian_blur", "gaussian_blur"),
    ("--groups", "blur", "blurs"),
    ("--groups", "noise,colour", "color"),
])
def test_pretrain_unknown_name_writes_nothing(flag, value, closest, tiny_csv, tmp_path, capsys):
    out = tmp_path / "pt"
    rc = main(["teachers", "pretrain", "--teacher", "lite0_mv", "--data", f"csv:{tiny_csv}", "--out", str(out),
               flag, value, "--steps", "1", "--quiet"])
    assert rc == 2
    stdout, err = capsys.readouterr()
    assert stdout == "" and err.count("\n") == 1 and f"did you mean '{closest}'" in err
    assert not out.exists()


def test_pretrain_too_few_readable_photos(sample_csv, tmp_path, capsys):
    pool = tmp_path / "pool"
    pool.mkdir()
    shutil.copy(sample_csv.parent / "images" / "chelsea" / "original.png", pool / "cat.png")
    (pool / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "pt"
    rc = main(["teachers", "pretrain", "--teacher", "lite0_mv", "--data", f"folder:{pool}", "--out", str(out), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"needs at least {MIN_IMAGES} readable images, found 1 (1 of 2 could not be read)" in err
    assert not out.exists()  # checked before anything is written


def test_pretrain_ladders_use_only_the_given_kinds(sample_csv):
    """The kind list reaches the ladders: only those kinds are drawn, each ladder is one kind at rising amounts."""
    from edgeiqa.data import distortions
    from edgeiqa.data.images import load_image
    from edgeiqa.teachers.pretrain import _ladder

    img = load_image(sample_csv.parent / "images" / "coffee" / "original.png")[:64, :96]
    rng = np.random.default_rng(0)
    drawn = set()
    for _ in range(24):
        images, targets, kind = _ladder(img, rng, ["jpeg", "jpeg2000"])
        drawn.add(kind)
        assert targets[0] == 0.0 and all(a > b for a, b in zip(targets, targets[1:]))
        assert all(np.array_equal(im, distortions.degrade(img, kind, -t)) for im, t in zip(images[1:], targets[1:]))
    assert drawn == {"jpeg", "jpeg2000"}


@pytest.mark.slow
def test_pretrain_restricted_to_a_group(sample_csv, tmp_path, capsys):
    """Ranking pre-training on two small photos with only the blurs: every drawn ladder is a blur."""
    from PIL import Image

    pool = tmp_path / "pool"
    pool.mkdir()
    for name in ("chelsea", "coffee"):
        with Image.open(sample_csv.parent / "images" / name / "original.png") as im:
            im.resize((96, 64)).save(pool / f"{name}.png")
    out = tmp_path / "pt"
    rc = main(["teachers", "pretrain", "--teacher", "lite0_mv", "--data", f"folder:{pool}", "--out", str(out),
               "--groups", "blurs", "--steps", "1", "--batch", "2", "--seed", "1", "--quiet", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kinds"] == list(GROUPS["blurs"]) and report["steps"] == 1
    assert sum(report["kinds_drawn"].values()) == 2 and set(report["kinds_drawn"]) <= set(GROUPS["blurs"])
    assert 0.0 <= report["pair_accuracy_after"] <= 1.0 and (out / "pretrained.pt").is_file()
