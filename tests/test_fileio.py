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
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / f"{n}.csv").write_text(n)
    assert [p.name for p in target.iterdir()] == ["b.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["labels"]
