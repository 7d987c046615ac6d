"""The one atomic-write helper: a crash mid-write keeps the old file and leaves no temporary behind."""

import pytest

from edgeiqa.fileio import atomic_path, write_json_atomic, write_text_atomic


def test_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_crash_keeps_old_content(tmp_path):
    target = tmp_path / "card.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("killed")
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"v":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_folder_target_is_replaced_whole(tmp_path):
    target = tmp_path / "labels"
    for n in ("a", "b"):
        with atomic_path(target, kind="labelset") as tmp:
            tmp.mkdir()
            (tmp / f"{n}.csv").write_text(n)
    assert sorted(p.name for p in target.iterdir()) == [".edgeiqa.json", "b.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["labels"]


def test_folder_target_never_replaces_a_foreign_folder(tmp_path):
    """Issue 21: a user's folder given as an output is never deleted, whatever is written to it."""
    from edgeiqa.outsafe import OutputRefused

    target = tmp_path / "userdir"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="not an edgeiqa labelset folder"):
        with atomic_path(target, kind="labelset") as tmp:
            tmp.mkdir()
    assert (target / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["userdir"]


def test_folder_target_of_another_kind_is_refused(tmp_path):
    from edgeiqa.outsafe import OutputRefused, mark_dir

    teachers = mark_dir(tmp_path / "teachers", "teachers")
    (teachers / "ensemble.json").write_text("{}")
    with pytest.raises(OutputRefused):
        with atomic_path(teachers, kind="labelset") as tmp:
            tmp.mkdir()
    assert (teachers / "ensemble.json").exists()
