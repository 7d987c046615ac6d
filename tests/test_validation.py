"""Bad profiles and arguments fail up front (issue 9, defect 6): one line, exit 2, nothing written, no training."""

from __future__ import annotations

import re

import pytest

from edgeiqa.cli.main import main
from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from edgeiqa.profiles import load_profile

from helpers import write_profile

# (sed-like edit of the tiny test profile, what the one-line error must say)
BAD_PROFILES = [
    ("grid = 7 }", "grid = 0 }", "grid must be an integer >= 1, got 0"),
    ("grid = 7 }", "grid = -1 }", "grid must be an integer >= 1, got -1"),
    ("size = [64, 64]", "size = [288]", r"size must be \[height, width\]"),
    ("budget_gmacs = 50.0", "budget_gmacs = -1.0", "budget_gmacs must be > 0"),
    ("lr = 1e-3\nlosses = { mse = 1.0, plcc = 1.0", "lr = 0\nlosses = { mse = 1.0, plcc = 1.0", r"\[teacher\] lr must be > 0"),
    ("batch_size = 8\nlr = 1e-3\nlosses = { mse = 1.0, plcc = 0.5", "batch_size = 0\nlr = 1e-3\nlosses = { mse = 1.0, plcc = 0.5",
     r"\[distill\] batch_size must be >= 1"),
    ("pseudo_weight = 1.0", "pseudo_weight = -0.5", "pseudo_weight must be >= 0"),
    ("mse = 1.0, plcc = 0.5", "mse = -1.0, plcc = 0.5", "loss weight for 'mse' must be >= 0"),
    ("fidelity = 1.0, feature", "fidelty = 1.0, feature", "did you mean 'fidelity'"),
    ('ensemble = ["lite0_mv"]', "ensemble = []", "ensemble must name at least one teacher"),
    ("hidden = 32", "hidden = 0", "hidden must be >= 1"),
    ("batch_size = 8\nlr = 1e-3\nlosses = { mse = 1.0, plcc = 0.5", "batch_size = 100000\nlr = 1e-3\nlosses = { mse = 1.0, plcc = 0.5",
     r"\[distill\] batch_size must be <= 1024"),
]


def _bad_profile(path, old, new):
    p = write_profile(path)
    text = p.read_text()
    assert old in text, old
    p.write_text(text.replace(old, new, 1))
    return p


@pytest.mark.parametrize("old,new,message", BAD_PROFILES, ids=[b[1].splitlines()[0] for b in BAD_PROFILES])
def test_bad_profile_values_are_rejected_at_load(tmp_path, old, new, message):
    with pytest.raises(EdgeIQAError, match=message):
        load_profile(str(_bad_profile(tmp_path / "p.toml", old, new)))


def test_the_tiny_profile_itself_is_valid(tmp_path):
    assert load_profile(str(write_profile(tmp_path / "p.toml")))["name"] == "tiny"


@pytest.mark.parametrize("size,grid", [((288,), 7), ((64, 64), 0), ((64, 64), -1), ((64, 64, 3), 7), ((64.0, 64), 7)])
def test_viewspec_constructor_checks_size_and_grid(size, grid):
    with pytest.raises(EdgeIQAError):
        ViewSpec("fragments", size, grid)


def test_fragments_grid_minus_one_no_longer_reads_uninitialised_memory():
    # grid=-1 used to pass the divisibility check (64 % -1 == 0); it must not be constructible at all.
    with pytest.raises(EdgeIQAError, match="grid"):
        ViewSpec("fragments", (63, 63), -1)


def _one_line_exit_2(capsys, argv, message):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err), err


@pytest.mark.parametrize("old,new,message", [BAD_PROFILES[0], BAD_PROFILES[2], BAD_PROFILES[8]])
def test_distill_with_a_bad_profile_writes_nothing(tmp_path, capsys, old, new, message):
    profile = _bad_profile(tmp_path / "p.toml", old, new)
    _one_line_exit_2(capsys, ["distill", "--profile", str(profile), "--out", str(tmp_path / "OUT"), "--quiet"], message)
    assert not (tmp_path / "OUT").exists()


@pytest.mark.parametrize("argv,message", [
    (["--budget", "-5"], "budget_gmacs must be > 0"),
    (["--epochs", "0"], r"\[distill\] epochs must be >= 1"),
    (["--teacher", "lite0_mvv"], "did you mean 'lite0_mv'"),
    (["--teacher", ","], "no teachers named"),
])
def test_distill_bad_arguments_write_nothing(tmp_path, capsys, argv, message):
    profile = write_profile(tmp_path / "p.toml")
    _one_line_exit_2(capsys, ["distill", "--profile", str(profile), "--out", str(tmp_path / "OUT"), "--quiet", *argv], message)
    assert not (tmp_path / "OUT").exists()


@pytest.mark.parametrize("argv,message", [
    (["--teacher", "lite0_mvv"], "did you mean 'lite0_mv'"),
    (["--epochs", "-1"], "head_epochs must be >= 1"),
    (["--losses", "mse=1,plc=1"], "did you mean 'plcc'"),
    (["--weights", "nothere.pt"], "nothere.pt"),
])
def test_teachers_train_bad_arguments_write_nothing(tmp_path, capsys, argv, message):
    profile = write_profile(tmp_path / "p.toml")
    _one_line_exit_2(capsys, ["teachers", "train", "--profile", str(profile), "--out", str(tmp_path / "OUT"), "--quiet", *argv],
                     message)
    assert not (tmp_path / "OUT").exists()


def test_bench_negative_threads_is_refused(tmp_path, capsys):
    _one_line_exit_2(capsys, ["bench", str(tmp_path / "run"), "--threads", "-1", "--out", str(tmp_path / "OUT")],
                     "--threads must be >= 1")
    assert not (tmp_path / "OUT").exists()
