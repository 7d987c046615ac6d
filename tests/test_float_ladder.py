"""The float-layer ladder shared by the int8 formats (edgeiqa/export/float_ladder.py): which tries it makes, which one
it keeps, and that it says so when none reaches the bar. The formats' own tests climb it on real students."""

from __future__ import annotations

import numpy as np
import pytest

from edgeiqa.export.float_ladder import agreement, climb, ladder


def test_ladder_doubles_up_to_half_the_layers():
    assert ladder(0) == [0] and ladder(1) == [0]
    assert ladder(8) == [0, 1, 2, 4]
    assert ladder(81) == [0, 1, 2, 4, 8, 16, 32]


def _noisy(reference, k):
    """An 'int8 model' whose score noise halves with every float layer kept (what early float layers buy)."""
    rng = np.random.default_rng(k)
    return reference + rng.normal(0, 0.5 / (1 + k) ** 2, size=reference.shape)


def test_climb_keeps_the_first_try_that_passes_and_records_every_try():
    reference = np.linspace(0, 1, 64)
    made, chosen, trials = climb(16, lambda k: k, lambda k: _noisy(reference, k), reference, 0.99, "test-int8",
                                 facts=lambda k: {"float_layers_named": k})
    assert chosen["passed"] and made == chosen["float_backbone_layers"] == trials[-1]["float_backbone_layers"]
    assert [t["float_backbone_layers"] for t in trials] == ladder(16)[: len(trials)]
    assert all(not t["passed"] for t in trials[:-1]) and trials[0]["srcc_vs_fp32"] < 0.99
    assert all(t["float_layers_named"] == t["float_backbone_layers"] for t in trials)


def test_climb_keeps_the_best_try_and_warns_when_none_passes():
    reference = np.linspace(0, 1, 64)
    with pytest.warns(UserWarning, match=r"test-int8: SRCC vs float32 .* below 0\.9999 with up to 4 of 8 convs in float"):
        made, chosen, trials = climb(8, lambda k: k, lambda k: _noisy(reference, k), reference, 0.9999, "test-int8",
                                     unit="convs")
    assert len(trials) == 4 and not any(t["passed"] for t in trials)
    assert chosen["srcc_vs_fp32"] == max(t["srcc_vs_fp32"] for t in trials) and made == chosen["float_backbone_layers"]


def test_agreement_fails_non_finite_scores_and_a_constant_reference():
    reference = np.linspace(0, 1, 8)
    assert not agreement(reference, np.full(8, np.nan), 0.5)["passed"]
    flat = agreement(np.ones(8), reference, 0.5)
    assert flat["srcc_vs_fp32"] is None and not flat["passed"]
