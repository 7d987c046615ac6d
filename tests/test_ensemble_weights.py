"""Ensemble weights by the one-standard-error rule (issue 12: a val split that cannot tell members apart must
not hand all the weight to the member that won by noise; a clearly weak member still gets weight 0)."""

import numpy as np

from edgeiqa import metrics
from edgeiqa.teachers.ensemble import one_se_weights, standard_error


def _ladders(n_scenes=40, levels=6, seed=0):
    rng = np.random.default_rng(seed)
    target = np.tile(np.linspace(5, 1, levels), n_scenes)
    scenes = np.repeat([f"s{i}" for i in range(n_scenes)], levels)
    return rng, target, scenes


def test_members_val_cannot_tell_apart_get_equal_weights():
    rng, target, scenes = _ladders()
    # Two members that rank every val ladder perfectly: every weight ties, the argmax would take the first grid point.
    z = np.stack([target + 0.01 * rng.standard_normal(target.size), 2 * target + 0.01 * rng.standard_normal(target.size)], 1)
    w = one_se_weights(z, target, list(scenes))
    np.testing.assert_allclose(w, [0.5, 0.5])


def test_a_clearly_weak_member_gets_weight_zero():
    rng, target, scenes = _ladders()
    good = target + 0.05 * rng.standard_normal(target.size)
    noise = rng.standard_normal(target.size)  # ranks nothing
    w = one_se_weights(np.stack([noise, good], 1), target, list(scenes))
    assert w[1] >= 0.9 and w[0] <= 0.1
    # the chosen weights are within one standard error of the best val metric, never below it
    best = metrics.evaluate(good, target, scenes=list(scenes))
    chosen = metrics.evaluate(np.stack([noise, good], 1) @ w, target, scenes=list(scenes))
    assert chosen["srcc_scene_mean"] >= best["srcc_scene_mean"] - standard_error(best) - 1e-12


def test_without_scenes_the_global_srcc_standard_error_is_used():
    rng = np.random.default_rng(1)
    target = rng.uniform(1, 5, 200)
    m = metrics.evaluate(target + 0.5 * rng.standard_normal(200), target)
    se = standard_error(m)
    assert 0 < se < 0.05  # about (1 - rho^2) * sqrt(1.06 / 197)
    assert standard_error(metrics.evaluate([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])) == float("inf")  # too few images to tell
    a, b = target + 0.3 * rng.standard_normal(200), rng.standard_normal(200)
    w = one_se_weights(np.stack([a, b], 1), target, None)
    assert w[0] >= 0.9
