"""Issue 21 for `teachers train|pretrain|label` and `distill`: every bad argument is refused up front (exit 2, one
stderr line, no traceback, nothing written, < 3 s); no output replaces a folder edgeiqa did not write."""

from __future__ import annotations

import time

import pytest

from edgeiqa.cli.main import main

from helpers import assert_refused, make_teachers, write_profile


@pytest.fixture(scope="module", autouse=True)
def _warm():
    """Imports (torch, timm, the registries) once, so the per-case time measures the checks, not the imports."""
    import edgeiqa.distill.pipeline  # noqa: F401
    import edgeiqa.teachers.labelset  # noqa: F401
    import edgeiqa.teachers.pretrain  # noqa: F401


@pytest.fixture
def ws(tmp_path, tiny_csv):
    """A workspace: a profile, a teachers folder, a user's folder with notes, a plain file, the tiny CSV."""
    (tmp_path / "userdir").mkdir()
    (tmp_path / "userdir" / "notes.txt").write_text("mine")
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "imgs").mkdir()
    return {"W": tmp_path, "P": str(write_profile(tmp_path / "p.toml")), "T": str(make_teachers(tmp_path / "teachers")),
            "D": f"csv:{tiny_csv}"}


def _fill(argv, ws):
    return [a.format(**ws) for a in argv]


TRAIN = ["teachers", "train", "--profile", "{P}", "--data", "{D}", "--quiet"]
PRETRAIN = ["teachers", "pretrain", "--teacher", "lite0_mv", "--data", "{D}", "--quiet"]
LABEL = ["teachers", "label", "--teachers", "{T}", "--data", "{D}", "--quiet"]
DISTILL = ["distill", "--profile", "{P}", "--data", "{D}", "--quiet"]

CASES = [
    # item 1 / 7: outputs that are a user's folder, an input, a file, or unwritable
    (LABEL + ["--out", "{W}/userdir"], "edgeiqa did not write it"),
    (LABEL + ["--out", "{W}/userdir", "--force"], "edgeiqa did not write it"),
    (LABEL + ["--out", "{T}"], "also an input"),
    (LABEL + ["--out", "{W}/afile"], "is a file; a folder is expected"),
    (LABEL + ["--out", "/proc/x/labels"], "cannot write|not writable|is a file"),
    (TRAIN + ["--out", "{W}/userdir"], "edgeiqa did not write it"),
    (TRAIN + ["--out", "{W}/afile/t"], "is a file, not a folder"),
    (TRAIN + ["--out", "/proc/x/t"], "cannot write|not writable|is a file"),
    (PRETRAIN + ["--out", "{W}/userdir"], "edgeiqa did not write it"),
    (PRETRAIN + ["--out", "{W}/afile"], "is a file; a folder is expected"),
    (PRETRAIN + ["--out", "/proc/x/p"], "cannot write|not writable|is a file"),
    (DISTILL + ["--out", "{W}/userdir"], "edgeiqa did not write it"),
    (DISTILL + ["--out", "{W}/afile"], "is a file; a folder is expected"),
    (DISTILL + ["--out", "/proc/x/run"], "cannot write|not writable|is a file"),
    (DISTILL + ["--out", "{T}"], "edgeiqa teachers folder, not a run folder"),
    # item 8: numbers and names validated before any work
    (PRETRAIN + ["--out", "{W}/p", "--batch", "0"], "--batch must be >= 1"),
    (PRETRAIN + ["--out", "{W}/p", "--batch", "-1"], "--batch must be >= 1"),
    (PRETRAIN + ["--out", "{W}/p", "--batch", "100000"], "--batch 100000 is more than"),
    (PRETRAIN + ["--out", "{W}/p", "--lr", "-0.1"], "--lr must be a finite number > 0"),
    (PRETRAIN + ["--out", "{W}/p", "--lr", "nan"], "--lr must be a finite number > 0"),
    (PRETRAIN + ["--out", "{W}/p", "--lr", "0"], "--lr must be a finite number > 0"),
    (PRETRAIN + ["--out", "{W}/p", "--steps", "0"], "--steps must be >= 1"),
    (PRETRAIN + ["--out", "{W}/p", "--steps", "-5"], "--steps must be >= 1"),
    (["teachers", "pretrain", "--teacher", "lite0_mvv", "--data", "{D}", "--out", "{W}/p"], "did you mean 'lite0_mv'"),
    (PRETRAIN + ["--out", "{W}/p", "--data", "folder:{W}/nope"], "no such file or folder"),
    (TRAIN + ["--out", "{W}/t", "--ensemble-weights", "lite0_mv=0.7,lite0_mw=0.3"], "did you mean 'lite0_mv'"),
    (TRAIN + ["--out", "{W}/t", "--ensemble-weights", "lite0_mv=-1"], "finite number >= 0"),
    (TRAIN + ["--out", "{W}/t", "--ensemble-weights", "lite0_mv=0"], "at least one weight must be > 0"),
    (TRAIN + ["--out", "{W}/t", "--workers", "100000"], "more than this machine"),
    (TRAIN + ["--out", "{W}/t", "--data", "csv:{W}/nope.csv"], "no such file or folder"),
    (DISTILL + ["--out", "{W}/run", "--data", "csv:nope"], "no such file or folder"),
    (DISTILL + ["--out", "{W}/run", "--unlabeled", "folder:nope"], "--unlabeled: .*no such file or folder"),
    (DISTILL + ["--out", "{W}/run", "--workers", "100000"], "more than this machine"),
    (DISTILL + ["--out", "{W}/run", "--student", "ghostnetv3"], "did you mean 'ghostnetv2'"),
    # item 9: misspellings and a --teachers folder that is not one
    (LABEL + ["--out", "{W}/l", "--teacher", "foo"], "unknown --teacher 'foo'"),
    (LABEL + ["--out", "{W}/l", "--teacher", "ensembel"], "did you mean 'ensemble'"),
    (LABEL + ["--out", "{W}/l", "--split", "tset"], "unknown split 'tset'.*did you mean 'test'"),
    (LABEL + ["--out", "{W}/l", "--data", "folder:{W}/imgs"], "no image files"),
    (["teachers", "label", "--teachers", "{W}/userdir", "--data", "{D}", "--out", "{W}/l"], "not an edgeiqa teachers folder"),
    (DISTILL + ["--out", "{W}/run", "--teachers", "{W}/nonexistent"], "--teachers .*nonexistent does not exist"),
    (DISTILL + ["--out", "{W}/run", "--teachers", "{W}/userdir"], "not an edgeiqa teachers folder"),
    (DISTILL + ["--out", "{W}/run", "--teachers", "{W}/run"], "is the run folder --out itself"),
]


@pytest.mark.parametrize("argv,match", CASES, ids=[" ".join(c[0][:2] + c[0][-2:]) for c in CASES])
def test_bad_arguments_are_refused_up_front(ws, capsys, argv, match):
    assert_refused(_fill(argv, ws), capsys, ws["W"], match)


def test_label_never_wipes_a_users_folder_or_the_teachers_it_reads(ws, capsys):
    """Issue 21 item 1: `--out userdir` used to delete notes.txt; `--out RUN/teachers` the teachers being read."""
    assert main(_fill(LABEL + ["--out", "{W}/userdir", "--force"], ws)) == 2
    assert (ws["W"] / "userdir" / "notes.txt").read_text() == "mine"
    assert main(_fill(LABEL + ["--out", "{T}"], ws)) == 2
    assert (ws["W"] / "teachers" / "ensemble.json").is_file()


def test_refusals_come_without_the_ensemble_note(tmp_path, capsys, tiny_csv):
    """Item 14: with a random-init member left out (the note used to come first), a refusal after the member
    selection is still the only stderr line, not --quiet."""
    p = str(write_profile(tmp_path / "p.toml", members=("lite0_mv", "vit_s")))
    assert_refused(["teachers", "train", "--profile", p, "--data", f"csv:{tiny_csv}", "--out", str(tmp_path / "t"),
                    "--ensemble-weights", "lite0_mv=0.7,foo=0.3"], capsys, tmp_path, "'foo' is not a member")
    assert_refused(["teachers", "train", "--profile", p, "--data", f"csv:{tiny_csv}", "--out", str(tmp_path / "t"),
                    "--ensemble-weights", "vit_s=1"], capsys, tmp_path, "names vit_s, which is left out")
    rc = main(["distill", "--profile", p, "--data", f"csv:{tiny_csv}", "--out", str(tmp_path / "r"), "--budget", "0.001"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3 and len(err) == 1 and "GMAC budget" in err[0], err


def test_impossible_budget_is_refused_in_seconds_before_anything(tmp_path, capsys):
    """Item 8: `--budget 0.001` took 47 s (counting every student at every input) before exit 3."""
    t0 = time.perf_counter()
    rc = main(["distill", "--budget", "0.001", "--out", str(tmp_path / "run"), "--quiet"])
    took = time.perf_counter() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3 and len(err) == 1 and "over the 0.001 GMAC budget" in err[0], err
    assert "even at the smallest input" in err[0]
    assert not list(tmp_path.iterdir())
    assert took < 15, f"{took:.1f} s"  # a lower bound per student on the meta device; the exact counts took 18-47 s


def test_budget_floor_never_exceeds_the_fvcore_count():
    """The quick refusal is sound: its floor is at most what fvcore counts, for every registered student."""
    from edgeiqa.data.views import ViewSpec
    from edgeiqa.distill.budget_fit import count_registered, floor_gmacs
    from edgeiqa.students import list_students

    views = [ViewSpec("resize", (64, 64)), ViewSpec("fragments", (56, 56), 7)]
    for name in list_students():
        assert 0 < floor_gmacs(name, views) <= count_registered(name, views, 1.0).total_gmacs, name


def test_pretrain_api_refuses_zero_steps(tmp_path, tiny_csv):
    """`--steps 0` used to write an untrained pretrained.pt; the function itself refuses it too."""
    from edgeiqa.data.datasets import load_dataset
    from edgeiqa.errors import EdgeIQAError
    from edgeiqa.teachers.pretrain import ranking_pretrain

    with pytest.raises(EdgeIQAError, match="steps must be >= 1"):
        ranking_pretrain("lite0_mv", load_dataset(f"csv:{tiny_csv}"), tmp_path / "p", steps=0, progress=False)
    assert not (tmp_path / "p").exists()
