"""Issue 21: the one output-safety helper. New paths and edgeiqa's own artefacts are written; inputs, foreign
files and foreign folders are refused with one line before any work."""

from __future__ import annotations

import pytest

from edgeiqa.outsafe import (MARKER, OutputRefused, check_not_input, check_out_dir, check_out_file, folder_kind,
                             mark_dir, remove_own_dir)


def test_new_and_empty_folders_are_accepted_and_marked(tmp_path):
    assert check_out_dir(tmp_path / "new" / "run", "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # validation writes nothing
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", "run")
    mark_dir(tmp_path / "empty", "run")
    assert folder_kind(tmp_path / "empty") == "run"
    check_out_dir(tmp_path / "empty", "run")  # its own kind again: fine


def test_foreign_folder_is_refused_and_kept(tmp_path):
    d = tmp_path / "userdir"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="edgeiqa did not write it"):
        check_out_dir(d, "labelset")
    with pytest.raises(OutputRefused, match="not an edgeiqa run folder"):
        remove_own_dir(d, "run")
    assert (d / "notes.txt").read_text() == "mine"


def test_folder_of_another_kind_and_legacy_folders(tmp_path):
    legacy = tmp_path / "teachers"
    legacy.mkdir()
    (legacy / "ensemble.json").write_text("{}")  # written before the marker existed
    assert folder_kind(legacy) == "teachers"
    with pytest.raises(OutputRefused, match="is an edgeiqa teachers folder, not a labelset folder"):
        check_out_dir(legacy, "labelset")
    check_out_dir(legacy, "teachers")


def test_a_file_where_a_folder_is_expected_and_unwritable_places(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputRefused, match="is a file; a folder is expected"):
        check_out_dir(f, "run")
    with pytest.raises(OutputRefused, match="is a file, not a folder"):
        check_out_dir(f / "sub", "run")
    with pytest.raises(OutputRefused, match="cannot write"):
        check_out_dir("/proc/edgeiqa-nope/run", "run")
    with pytest.raises(OutputRefused, match="cannot write"):
        check_out_file("/proc/edgeiqa-nope/scores.csv")


def test_output_equal_to_or_inside_an_input_is_refused(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("image,score\n")
    with pytest.raises(OutputRefused, match="is also an input"):
        check_out_file(data, inputs=[data], force=True)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    with pytest.raises(OutputRefused, match="lies inside"):
        check_out_file(imgs / "scores.csv", scanned=[imgs])
    with pytest.raises(OutputRefused, match="holds an input"):
        check_not_input(tmp_path, inputs=[data])
    check_not_input(tmp_path / "elsewhere.csv", inputs=[data], scanned=[imgs])


def test_existing_file_needs_ownership_or_force(tmp_path):
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own\n")
    with pytest.raises(OutputRefused, match="pass --force"):
        check_out_file(notes, owned=lambda p: p.read_text().startswith("path,score"))
    check_out_file(notes, force=True)
    notes.write_text("path,score,status,error\n")
    check_out_file(notes, owned=lambda p: p.read_text().startswith("path,score"))
    with pytest.raises(OutputRefused, match="is a folder"):
        check_out_file(tmp_path)


def test_marker_is_json_naming_the_kind(tmp_path):
    import json

    mark_dir(tmp_path / "b", "bench")
    assert json.loads((tmp_path / "b" / MARKER).read_text())["kind"] == "bench"
    remove_own_dir(tmp_path / "b", "bench")
    assert not (tmp_path / "b").exists()
