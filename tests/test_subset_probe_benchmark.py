"""benchmarks/subset_probe.py (issue 22, ss02): same-scene pairs are found and scored as the observers ordered them,
arguments are refused before any work, and a run on a fixture with the real layout writes every section."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from edgeiqa.data.datasets import load_dataset
from helpers import load_benchmark
from test_biq2021 import make_biq2021

bench = load_benchmark("subset_probe")


def _scenes(n_scenes=12, seed=0):
    """Two shots per scene: near-identical features, scores 0.3 apart (the second shot better in odd scenes)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_scenes, 16))
    x = np.repeat(base, 2, axis=0) + 0.01 * rng.normal(size=(2 * n_scenes, 16))
    y = np.array([v for s in range(n_scenes) for v in ((0.3, 0.6) if s % 2 else (0.6, 0.3))])
    return x, y


def test_scene_pairs_finds_each_scene_and_counts_the_orders_that_agree():
    x, y = _scenes()
    rng = np.random.default_rng(1)
    stats = np.column_stack([-y + 0.01 * rng.normal(size=len(y))] * len(bench.STAT_NAMES))  # anti-correlated: signed
    stats[:, 1] = np.tile([1.0, 0.0], len(y) // 2)  # the first shot always "better": right in half the scenes
    pairs = bench.scene_pairs(x, y, pred=y.copy(), stats=stats)
    strict = pairs["0.8"]
    assert strict["pairs"] == 12 and strict["pairs_gap_over_0.1"] == 12 and strict["median_score_gap"] == pytest.approx(0.3)
    assert strict["head_ordered"] == 1.0
    assert bench.scene_pairs(x, y, pred=-y, stats=stats)["0.8"]["head_ordered"] == 0.0
    ordered = strict["stat_ordered"]
    assert ordered[bench.STAT_NAMES[0]] == 1.0 and ordered[bench.STAT_NAMES[1]] == 0.5


def test_no_pair_above_the_cosine_is_reported_as_none():
    x, y = np.eye(8), np.random.default_rng(0).uniform(size=8)  # every two rows' cosine is -1/7
    pairs = bench.scene_pairs(x, y, pred=y, stats=np.zeros((8, len(bench.STAT_NAMES))))
    assert all(p == {"pairs": 0} for p in pairs.values())


def _member(folder, records, name):
    """A teachers-stage member folder as the teachers stage leaves it: predictions.csv (row order) and
    backbone_features.pt, the features here the photos' own pixels at 4 x 4."""
    m = folder / name
    m.mkdir(parents=True)
    with open(m / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "score"])
        w.writerows([str(r.path), 0.5] for r in records)
    pixels = [np.asarray(Image.open(r.path).convert("RGB").resize((4, 4)), dtype=np.float32).ravel() for r in records]
    torch.save({"feats": {"eval": torch.tensor(np.stack(pixels))}}, m / "backbone_features.pt")


def test_a_run_on_the_real_layout_writes_every_section(tmp_path):
    root = make_biq2021(tmp_path / "BIQ2021")
    records = load_dataset(f"biq2021:{root}").records
    teachers = tmp_path / "teachers"
    _member(teachers, records, "lite0_mv")
    out = tmp_path / "probe.json"
    assert bench.main(["--data", f"biq2021:{root}", "--teachers", str(teachers), "--subsets", "ss01",
                       "--folds", "2", "--machine", "test", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    ss01 = doc["subsets"]["ss01"]
    assert doc["machine"] == "test" and ss01["photos"] == sum(r.group == "ss01" and r.split != "test" for r in records)
    assert -1 <= ss01["ridge_cv_srcc"]["lite0_mv"]["features"] <= 1
    assert set(ss01["scene_pairs"]) == {"0.6", "0.7", "0.8"}
    assert all(isinstance(p["pairs"], int) for p in ss01["scene_pairs"].values())


@pytest.mark.parametrize("argv, message", [(["--folds", "1"], "--folds must be at least 2"),
                                           ([], "no member folder with backbone_features.pt")])
def test_bad_arguments_are_one_line_exit_2(tmp_path, capsys, argv, message):
    root = make_biq2021(tmp_path / "BIQ2021")
    teachers = tmp_path / "teachers"
    if argv:
        _member(teachers, load_dataset(f"biq2021:{root}").records, "lite0_mv")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--data", f"biq2021:{root}", "--teachers", str(teachers), *argv, "--out", str(tmp_path / "r.json")])
    assert exc.value.code == 2 and message in capsys.readouterr().err and not (tmp_path / "r.json").exists()
