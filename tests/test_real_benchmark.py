"""benchmarks/real.py (issue 22): argument checks, the quick subset's layout, and the mean +- std over seeds."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from edgeiqa.data.datasets import load_dataset
from helpers import load_benchmark
from test_biq2021 import TEST, TRAIN, make_biq2021

real = load_benchmark("real")


@pytest.mark.parametrize("argv, message", [
    (["--data", "csv:x.csv"], "--data must be biq2021:ROOT"),
    (["--data", "biq2021:/no/such/root"], "lacks 'Train (Images and MOS).csv'"),
    (["--regimes", "most"], "unknown regime/row ['most']"),
    (["--rows", "student"], "unknown regime/row ['student']"),
    (["--seeds", "a"], "--seeds must be whole numbers"),
])
def test_bad_arguments_are_one_line_exit_2(tmp_path, capsys, argv, message):
    root = make_biq2021(tmp_path / "BIQ2021")
    if "--data" not in argv:
        argv = ["--data", f"biq2021:{root}", *argv]
    with pytest.raises(SystemExit) as exc:
        real.parse_args([*argv, "--work", str(tmp_path / "work")])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_quick_subset_keeps_the_real_layout(tmp_path):
    root = make_biq2021(tmp_path / "BIQ2021")
    args = real.parse_args(["--data", f"biq2021:{root}", "--work", str(tmp_path / "work"), "--quick"])
    assert args.seed_list == [0] and args.out == tmp_path / "work" / "quick" / "real_quick.json"
    ds = load_dataset(real.spec_for(args.root, "all", quick=True))
    assert len(ds) == len(TRAIN) + len(TEST) and all(r.path.is_file() for r in ds.records)  # the .JPG row too
    few = load_dataset(real.spec_for(args.root, "few", quick=True).replace(f"labels={real.QUICK['labels']}", "labels=6"))
    assert few.splits["pool"] == len(TRAIN) - 6


def _card(stage: Path, srcc: float) -> None:
    stage.mkdir(parents=True)
    side = {"srcc": srcc, "plcc": srcc + 0.01, "srcc_per_group": {"ss01": srcc, "ss02": srcc / 2}, "gmacs": 1.0}
    stage.joinpath("card.json").write_text(json.dumps({"student": side, "seconds": {"student_s": 10.0, "student_rank_s": 2.0}}))


def test_results_are_mean_and_std_over_the_seeds_done(tmp_path):
    work = tmp_path / "work"
    for seed, srcc in ((0, 0.80), (1, 0.84), (2, 0.82)):
        _card(work / "all" / f"s{seed}" / "student_distilled", srcc)
    _card(work / "few" / "s0" / "student_labels_only", 0.70)
    per_seed, done = real.collect(work)
    rows = {r["row"]: r for r in real.summarise(per_seed)}
    d = rows["student_distilled"]
    assert d["n_seeds"] == 3 and d["srcc"] == pytest.approx(0.82) and d["srcc_std"] == pytest.approx(statistics.stdev([0.80, 0.84, 0.82]), abs=1e-4)
    assert d["srcc_per_subset"]["ss02"] == pytest.approx(0.41) and d["train_s"] == 12.0
    few = rows["student_labels_only_few"]
    assert few["n_seeds"] == 1 and few["srcc_std"] is None
    assert "few/s0/student_labels_only" in done and len(done) == 4


def test_teacher_rows_time_each_member_and_sum_them_for_the_ensemble(tmp_path):
    stage = tmp_path / "work" / "all" / "s0" / "teachers"
    test = lambda v: {"test": {"srcc": v, "plcc": v, "srcc_per_group": {"ss02": v / 2}}}
    for member, secs in (("lite0_mv", 100.0), ("lite2_mv", 50.5)):
        (stage / member).mkdir(parents=True)
        (stage / member / "member.json").write_text(json.dumps({"seconds": secs}))
    stage.joinpath("card.json").write_text(json.dumps({
        "members": ["lite0_mv", "lite2_mv"], "gmacs": {"total": 4.28, "members": {"lite0_mv": 1.64, "lite2_mv": 2.64}},
        "metrics": {"ensemble": test(0.86), "lite0_mv": test(0.83), "lite2_mv": test(0.84)}}))
    rows = {r["row"]: r for r in real.summarise(real.collect(tmp_path / "work")[0])}
    assert rows["teacher_ensemble"]["train_s"] == 150.5 and rows["teacher_ensemble"]["gmacs"] == 4.28
    assert rows["teacher_lite2_mv"]["srcc"] == 0.84 and rows["teacher_lite2_mv"]["train_s"] == 50.5


@pytest.mark.parametrize("row", real.ROWS)
@pytest.mark.parametrize("seed, quick, regime", [(0, False, "all"), (1, False, "all"), (0, True, "all"),
                                                 (1, False, "few"), (0, True, "few")])
def test_every_row_override_is_a_valid_profile(row, seed, quick, regime):
    """The rows' recipes pass the profile checks (a misspelt key would fail a stage hours into a run); only the all
    regime's extra seeds and quick runs shorten the schedule."""
    from edgeiqa.profiles import load_profile

    prof = load_profile("biq2021", overrides=real.overrides_for(row, seed, quick, regime))
    full = not quick and (seed == 0 or regime == "few")
    assert prof["seed"] == seed and prof["distill"]["epochs"] == (3 if full else 1)
    if row == "student_labels_only":
        assert "feature" not in prof["distill"]["losses"] and prof["distill"]["pseudo_weight"] == 0
        assert prof["distill"]["ladder_epochs"] == 0


def test_readme_biq2021_table_is_the_results_file():
    """The README's BIQ2021 table is exactly what the results file gives (regenerate with `real.py --report`)."""
    doc = json.loads(real.RESULTS.read_text())
    assert real.readme_table(doc) in (real.ROOT / "README.md").read_text()
