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


TINY_PHOTOS = {"astronaut": "train", "motorcycle_left": "train", "rocket": "val", "coffee": "test", "chelsea": "pool"}
TINY_GROUPS = ("blurs", "noise")  # each photo's first scene of these degradation groups


@pytest.fixture(scope="session")
def tiny_csv(sample_csv, tmp_path_factory):
    """A small labelled CSV cut from the sample set: 5 photos x 2 scenes (a blur, a noise) x 7 images.

    Splits by photo. Image paths are absolute, so the CSV can live anywhere; teacher and student tests
    train on it in seconds.
    """
    import csv
    from pathlib import Path

    from edgeiqa.data.degradations import group_of

    root = Path(sample_csv).parent
    out = tmp_path_factory.mktemp("tiny") / "tiny.csv"
    with open(sample_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    first_scene = {}  # (photo, group) -> the photo's first scene of that group
    for row in rows:
        first_scene.setdefault((row["photo"], group_of(row["kind"])), row["scene"])
    keep = {first_scene[(p, g)] for p in TINY_PHOTOS for g in TINY_GROUPS}
    with open(out, "w", newline="") as g:
        w = csv.writer(g)
        w.writerow(["image", "score", "scene", "split", "kind"])
        for row in rows:
            if row["scene"] in keep:
                w.writerow([str(root / row["image"]), row["score"], row["scene"], TINY_PHOTOS[row["photo"]], row["kind"]])
    return out


@pytest.fixture(scope="module")
def one_thread():
    """Single-threaded torch for modules that time or compare exports (stable, and fair to other tests)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
