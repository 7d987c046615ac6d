"""IQA metrics checked against scipy and hand-computed cases."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from scipy import stats

from edgeiqa import metrics as M

POOLED_KEYS = {"srcc", "plcc", "plcc_fitted", "krcc", "mae", "rmse", "n_images"}
SCENE_KEYS = {"srcc_scene_median", "srcc_scene_mean", "plcc_scene_median", "krcc_scene_median",
              "n_scenes", "n_scenes_skipped", "per_scene"}
KIND_KEYS = {"srcc_kind_worst", "worst_kind", "per_kind"}


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    target = rng.normal(size=40)
    pred = target + rng.normal(scale=0.7, size=40)
    return pred, target


def test_correlations_match_scipy(data):
    pred, target = data
    assert M.srcc(pred, target) == pytest.approx(stats.spearmanr(pred, target)[0], abs=1e-12)
    assert M.plcc(pred, target) == pytest.approx(stats.pearsonr(pred, target)[0], abs=1e-12)
    assert M.krcc(pred, target) == pytest.approx(stats.kendalltau(pred, target)[0], abs=1e-12)
    for fn in (M.srcc, M.plcc, M.krcc, M.mae, M.rmse):
        assert type(fn(pred, target)) is float


def test_errors_by_hand():
    pred, target = [1.0, 2.0, 4.0], [1.0, 3.0, 1.0]
    assert M.mae(pred, target) == pytest.approx((0 + 1 + 3) / 3)
    assert M.rmse(pred, target) == pytest.approx(math.sqrt((0 + 1 + 9) / 3))


def test_degenerate_inputs_give_zero_or_none():
    # constant prediction: the model cannot tell images apart -> 0, not NaN
    assert M.srcc([2, 2, 2, 2], [1, 2, 3, 4]) == 0.0
    assert M.plcc([2, 2, 2, 2], [1, 2, 3, 4]) == 0.0
    assert M.krcc([2, 2, 2, 2], [1, 2, 3, 4]) == 0.0
    # constant target: undefined -> None
    assert M.srcc([1, 2, 3], [5, 5, 5]) is None
    assert M.plcc_fitted([1, 2, 3], [5, 5, 5]) is None
    assert M.srcc([1], [2]) is None
    with pytest.raises(ValueError):
        M.srcc([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        M.srcc([1, float("nan"), 3], [1, 2, 3])


def test_logistic_fit_recovers_known_parameters():
    rng = np.random.default_rng(1)
    beta = [80.0, 20.0, 0.5, 0.15]  # b1 (top), b2 (bottom), b3 (midpoint), b4 (slope scale)
    x = rng.uniform(-0.2, 1.2, size=200)
    y = M.logistic4(x, beta) + rng.normal(scale=0.3, size=x.size)
    params = M.fit_logistic4(x, y)
    assert params["type"] == "logistic4"
    np.testing.assert_allclose(params["beta"], beta, rtol=0.03, atol=0.01)
    assert params == M.fit_logistic4(x, y)  # deterministic
    json.dumps(params)  # travels in artefact metadata
    # decreasing relation: still fitted (b1 < b2), mapping correlates positively with the target
    params_neg = M.fit_logistic4(-x, y)
    assert params_neg["type"] == "logistic4"
    assert M.plcc(M.logistic4(-x, params_neg), y) > 0.99


def test_logistic_falls_back_to_linear():
    assert M.fit_logistic4([1, 2, 3], [2, 4, 6])["type"] == "linear"  # too few points
    p = M.fit_logistic4([1, 1, 1, 1, 1, 1], [1, 2, 3, 4, 5, 6])
    assert p["type"] == "linear" and M.logistic4([7.0], p)[0] == pytest.approx(3.5)
    x = np.linspace(0, 1, 30)
    lin = M.fit_logistic4(x, 3 * x + 1)  # exactly linear data: the straight line is the better fit
    np.testing.assert_allclose(M.logistic4(x, lin), 3 * x + 1, atol=1e-3)


def test_plcc_fitted_is_pearson_after_mapping():
    rng = np.random.default_rng(2)
    x = rng.uniform(-3, 3, size=100)
    y = 1 / (1 + np.exp(-2 * x)) + rng.normal(scale=0.02, size=100)
    expected = stats.pearsonr(M.logistic4(x, M.fit_logistic4(x, y)), y)[0]
    assert M.plcc_fitted(x, y) == pytest.approx(expected, abs=1e-12)
    assert M.plcc_fitted(x, y) > M.plcc(x, y)


HAND_CSV = """image,score,scene,kind,pred
a1.jpg,1.0,A,blur,0.2
a2.jpg,2.0,A,blur,0.1
a3.jpg,3.0,A,blur,0.5
a4.jpg,4.0,A,blur,0.9
b1.jpg,0.5,B,noise,3.0
b2.jpg,1.5,B,noise,1.0
b3.jpg,2.5,B,noise,2.0
c1.jpg,-1.0,C,noise,0.0
c2.jpg,0.0,C,noise,0.4
c3.jpg,1.0,C,noise,0.3
c4.jpg,2.0,C,noise,0.8
c5.jpg,3.0,C,noise,0.7
d1.jpg,1.0,D,blur,0.5
d2.jpg,2.0,D,blur,0.6
e1.jpg,1.0,E,noise,0.1
e2.jpg,1.0,E,noise,0.2
e3.jpg,1.0,E,noise,0.3
"""


def _hand_table():
    rows = list(csv.DictReader(io.StringIO(HAND_CSV)))
    pred = np.array([float(r["pred"]) for r in rows])
    score = np.array([float(r["score"]) for r in rows])
    return rows, pred, score, [r["scene"] for r in rows], [r["kind"] for r in rows]


def test_per_scene_median_matches_independent_scipy():
    rows, pred, score, scenes, kinds = _hand_table()
    res = M.evaluate(pred, score, scenes=scenes)
    assert set(res) == POOLED_KEYS | SCENE_KEYS
    # independent: scipy per scene (A, B, C have >= 3 images and varying scores; D is too small,
    # E has constant scores), numpy median over scenes
    per = {}
    for s in ("A", "B", "C"):
        idx = [i for i, r in enumerate(rows) if r["scene"] == s]
        per[s] = stats.spearmanr(pred[idx], score[idx])[0]
    assert res["srcc_scene_median"] == pytest.approx(float(np.median(list(per.values()))), abs=1e-12)
    assert res["srcc_scene_mean"] == pytest.approx(float(np.mean(list(per.values()))), abs=1e-12)
    assert res["n_scenes"] == 3 and res["n_scenes_skipped"] == 2
    assert set(res["per_scene"]) == {"A", "B", "C"}
    assert res["per_scene"]["C"]["n"] == 5
    assert res["per_scene"]["A"]["srcc"] == pytest.approx(per["A"])
    kr = [stats.kendalltau(pred[[i for i, r in enumerate(rows) if r["scene"] == s]],
                           score[[i for i, r in enumerate(rows) if r["scene"] == s]])[0] for s in "ABC"]
    assert res["krcc_scene_median"] == pytest.approx(float(np.median(kr)))
    # pooled values are scipy's over all rows
    assert res["srcc"] == pytest.approx(stats.spearmanr(pred, score)[0])
    assert res["n_images"] == len(rows)
    json.dumps(res, allow_nan=False)


def test_worst_kind_and_constant_prediction_scene():
    rows, pred, score, scenes, kinds = _hand_table()
    res = M.evaluate(pred, score, scenes=scenes, kinds=kinds)
    assert set(res) == POOLED_KEYS | SCENE_KEYS | KIND_KEYS
    by_scene = {s: res["per_scene"][s]["srcc"] for s in "ABC"}
    # blur: scene A only (D skipped); noise: B and C (E skipped)
    assert res["per_kind"]["blur"] == pytest.approx(by_scene["A"])
    assert res["per_kind"]["noise"] == pytest.approx((by_scene["B"] + by_scene["C"]) / 2)
    worst = min(res["per_kind"], key=res["per_kind"].get)
    assert res["worst_kind"] == worst and res["srcc_kind_worst"] == res["per_kind"][worst]

    flat = pred.copy()
    flat[[i for i, r in enumerate(rows) if r["scene"] == "A"]] = 0.5  # constant within scene A
    res2 = M.evaluate(flat, score, scenes=scenes)
    assert res2["per_scene"]["A"] == {"srcc": 0.0, "plcc": 0.0, "krcc": 0.0, "n": 4}
    json.dumps(res2, allow_nan=False)


def test_evaluate_without_scenes_and_all_skipped():
    res = M.evaluate([1, 2, 3, 4], [1, 3, 2, 4])
    assert set(res) == POOLED_KEYS
    res = M.evaluate([1, 2, 3, 4], [1, 1, 2, 2], scenes=["a", "a", "b", "b"])
    assert res["n_scenes"] == 0 and res["n_scenes_skipped"] == 2 and res["srcc_scene_median"] is None
    json.dumps(res, allow_nan=False)


def test_aim_rank_score_by_hand():
    results = {
        "A": {"srcc": 0.90, "plcc": 0.91, "krcc": 0.75, "mae": 0.050, "rmse": 0.070},
        "B": {"srcc": 0.85, "plcc": 0.93, "krcc": 0.75, "mae": 0.040, "rmse": 0.080},
        "C": {"SRCC": 0.80, "PLCC": 0.89, "KRCC": 0.70, "MAE": 0.060, "RMSE": 0.060},
    }
    # ranks (1 = best):   MAE  RMSE  KRCC  PLCC  SRCC
    #   A                  2     2    1.5    2     1   -> 8.5 / 5
    #   B                  1     3    1.5    1     2   -> 8.5 / 5
    #   C                  3     1    3      3     3   -> 13 / 5
    score = M.aim_rank_score(results)
    assert score == {"A": pytest.approx(1.7), "B": pytest.approx(1.7), "C": pytest.approx(2.6)}
    with pytest.raises(ValueError):
        M.aim_rank_score({"A": {"srcc": 0.9}})


def test_summarize_is_evaluate_over_scored_labelled_records():
    """One per-split summary (teachers, distill, eval, bench): evaluate() over the labelled, finitely scored records."""
    from pathlib import Path

    from edgeiqa.data.records import ImageRecord

    rng = np.random.default_rng(0)
    recs = [ImageRecord(Path(f"/x/{i}.png"), float(i % 5), scene=f"s{i // 5}", kind="blur" if i < 10 else "noise")
            for i in range(20)]
    recs.append(ImageRecord(Path("/x/unlabelled.png")))
    score_of = {str(r.path): float(r.score or 0) + rng.normal(0, 0.5) for r in recs}
    score_of["/x/3.png"] = float("nan")  # a failed image
    m = M.summarize(recs, score_of)
    rows = [r for r in recs if r.score is not None and str(r.path) != "/x/3.png"]
    ref = M.evaluate([score_of[str(r.path)] for r in rows], [r.score for r in rows],
                           scenes=[r.scene for r in rows], kinds=[r.kind for r in rows])
    assert m["n_images"] == 19 and m["n_unscored"] == 1 and "per_scene" not in m
    for k in ("srcc", "plcc", "srcc_scene_median", "srcc_scene_mean", "srcc_kind_worst", "worst_kind"):
        assert m[k] == ref[k], k
    # a scene missing on one record: pooled metrics only, no per-scene numbers mixing in a 'None' scene
    partial = [ImageRecord(r.path, r.score, None if i == 0 else r.scene) for i, r in enumerate(recs)]
    assert "srcc_scene_median" not in M.summarize(partial, score_of)
    assert M.summarize(recs[:2], score_of) == {"n_images": 2, "n_unscored": 0}


def test_original_score_mean_is_the_top_label_images_scored_once_each():
    """Requirement 4 of issue 12: how the undistorted originals (the top label, shared by a ladder's references) score."""
    from pathlib import Path

    from edgeiqa.data.records import ImageRecord

    # two photos, each original referenced by two scenes (as in the sample set), plus degraded rungs
    recs = []
    for photo in ("a", "b"):
        for kind in ("blur", "noise"):
            recs.append(ImageRecord(Path(f"/x/{photo}/original.png"), 5.0, scene=f"{photo}-{kind}", kind=kind))
            recs += [ImageRecord(Path(f"/x/{photo}/{kind}_{s}.png"), 5.0 - s, scene=f"{photo}-{kind}", kind=kind) for s in (1, 2, 3)]
    score_of = {str(r.path): r.score - 0.5 for r in recs}
    score_of["/x/a/original.png"] = 2.0  # an original scored low
    m = M.summarize(recs, score_of)
    assert m["n_originals"] == 2 and m["original_label"] == 5.0
    assert m["original_score_mean"] == pytest.approx((2.0 + 4.5) / 2)  # each original once, not once per scene
    assert m["mae"] == pytest.approx(M.mae([score_of[str(r.path)] for r in recs], [r.score for r in recs]))
    # a MOS-style set: its best image stands for the top of the scale
    mos = [ImageRecord(Path(f"/m/{i}.png"), float(i), scene="s") for i in range(5)]
    m = M.summarize(mos, {str(r.path): float(r.score) - 1 for r in mos})
    assert m["n_originals"] == 1 and m["original_score_mean"] == 3.0 and m["original_label"] == 4.0
