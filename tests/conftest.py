"""Shared fixtures. Everything heavy is built once per test session in a temporary cache."""

from __future__ import annotations

import os

import pytest

# Two cores: keep torch from oversubscribing while pytest runs.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session gets its own EDGEIQA_CACHE so tests never touch the user's cache."""
    cache = tmp_path_factory.mktemp("edgeiqa-cache")
    old = os.environ.get("EDGEIQA_CACHE")
    os.environ["EDGEIQA_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("EDGEIQA_CACHE", None)
    else:
        os.environ["EDGEIQA_CACHE"] = old


@pytest.fixture(scope="session")
def sample_csv(_isolated_cache):
    """The embedded sample set, built once per session (labels.csv path)."""
    from edgeiqa.data.sample import build_sample

    return build_sample(progress=False)
