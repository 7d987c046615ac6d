"""benchmarks/subset_finetune.py (issue 22, ss02): the fold CSV holds only the subset's official-train photos with
one fold held out as `test`, arguments are refused before any work, and a real frozen run reports the held-out fold."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from edgeiqa.data.datasets import load_dataset
import test_biq2021
from helpers import load_benchmark
from test_biq2021 import TEST, make_biq2021

bench = load_benchmark("subset_finetune")


@pytest.mark.parametrize("argv, message", [
    (["--data", "csv:x.csv"], "--data must be biq2021:ROOT"),
    (["--subset", "ss04"], "--subset must be ss01, ss02 or ss03"),
    (["--fold", "5"], "--fold must be 0..4"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--runs", "frozen,all"], "--runs takes frozen, finetune"),
    (["--member", "lite0_mvv"], "--member: "),
])
def test_bad_arguments_are_one_line_exit_2(tmp_path, capsys, argv, message):
    root = make_biq2021(tmp_path / "BIQ2021")
    if "--data" not in argv:
        argv = ["--data", f"biq2021:{root}", *argv]
    with pytest.raises(SystemExit) as exc:
        bench.main([*argv, "--work", str(tmp_path / "work"), "--out", str(tmp_path / "r.json")])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "work").exists() and not (tmp_path / "r.json").exists()


def test_fold_csv_holds_the_subsets_train_photos_with_one_fold_held_out(tmp_path):
    root = make_biq2021(tmp_path / "BIQ2021")
    records = load_dataset(f"biq2021:{root}").records
    out = tmp_path / "fold.csv"
    split = bench.fold_csv(records, "ss02", 1, 5, 0, out)
    rows = list(csv.DictReader(out.open()))
    official_test = {n for n, _ in TEST}
    want = {r.path.name for r in records if r.group == "ss02" and r.split in ("train", "val")}
    assert {Path(r["image"]).name for r in rows} == want and not want & official_test
    assert split == {"photos": len(want), "held_out": sum(r["split"] == "test" for r in rows)} and split["held_out"] >= 1
    first = out.read_bytes()
    bench.fold_csv(records, "ss02", 1, 5, 0, out)
    assert out.read_bytes() == first  # the same fold every time
    held = {r["image"] for r in rows if r["split"] == "test"}
    bench.fold_csv(records, "ss02", 2, 5, 0, out)
    assert held.isdisjoint(r["image"] for r in csv.DictReader(out.open()) if r["split"] == "test")


@pytest.mark.slow
def test_a_frozen_run_reports_the_held_out_fold(tmp_path, monkeypatch):
    # 15 official-train photos per subset, so a fold leaves a teacher enough to train on
    monkeypatch.setattr(test_biq2021, "TRAIN", [(f"ss0{1 + i % 3} ({i}).jpg", round(0.1 + 0.015 * i, 4)) for i in range(1, 46)])
    root = make_biq2021(tmp_path / "BIQ2021")
    out = tmp_path / "r.json"
    assert bench.main(["--data", f"biq2021:{root}", "--work", str(tmp_path / "work"), "--subset", "ss01",
                       "--runs", "frozen", "--out", str(out), "--machine", "test"]) == 0
    doc = json.loads(out.read_text())
    frozen = doc["runs"]["frozen"]
    assert doc["machine"] == "test" and doc["commit"] and "finetune" not in doc["runs"]
    assert -1.0 <= frozen["held_out_fold"]["srcc"] <= 1.0 and frozen["seconds_this_call"] > 0
    assert (tmp_path / "work" / "ss01_fold0" / "frozen" / "card.json").exists()


def test_a_failed_run_is_one_line_naming_the_run(tmp_path, capfd, monkeypatch):
    # 5 official-train photos per subset: a fold leaves 4, val takes one, too few for a teacher
    monkeypatch.setattr(test_biq2021, "TRAIN", [(f"ss0{1 + i % 3} ({i}).jpg", round(0.1 + 0.05 * i, 4)) for i in range(1, 16)])
    root = make_biq2021(tmp_path / "BIQ2021")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--data", f"biq2021:{root}", "--work", str(tmp_path / "work"), "--runs", "frozen",
                    "--out", str(tmp_path / "r.json")])
    assert "the frozen run failed (`edgeiqa teachers train` exit 2" in str(exc.value)
    assert "a teacher needs at least 4" in capfd.readouterr().err and not (tmp_path / "r.json").exists()


def test_a_subset_smaller_than_the_folds_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(test_biq2021, "TRAIN", [(f"ss0{1 + i % 3} ({i}).jpg", round(0.1 + 0.05 * i, 4)) for i in range(1, 10)])
    root = make_biq2021(tmp_path / "BIQ2021")
    with pytest.raises(SystemExit) as exc:
        bench.fold_csv(load_dataset(f"biq2021:{root}").records, "ss02", 0, 5, 0, tmp_path / "fold.csv")
    assert "has 3 official-train photos, fewer than the 5 folds" in str(exc.value) and not (tmp_path / "fold.csv").exists()
