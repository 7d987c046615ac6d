"""The embedded sample set and the distortion ladders behind it."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.stats import spearmanr

from edgeiqa.data import distortions, sample
from edgeiqa.data.degradations import GROUPS, group_of
from edgeiqa.data.images import load_image
from edgeiqa.errors import DatasetError, EdgeIQAError

# ----------------------------------------------------------------------------------------- helpers


def _rows(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def _scenes(rows) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for r in rows:
        out[r["scene"]].append(r)
    return {k: sorted(v, key=lambda r: int(r["severity"])) for k, v in out.items()}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def _laplacian_var(img: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


@pytest.fixture(scope="module")
def rows(sample_csv):
    return _rows(sample_csv)


@pytest.fixture(scope="module")
def scenes(rows):
    return _scenes(rows)


# ------------------------------------------------------------------------------------ the built set


def test_columns_and_files(sample_csv, rows):
    assert sample_csv.name == "labels.csv"
    assert sample_csv.parent == sample.sample_root()  # under $EDGEIQA_CACHE (a temp dir in tests)
    with open(sample_csv) as f:
        assert f.readline().strip() == "image,score,scene,split,kind,photo,severity"
    for r in rows:
        assert not Path(r["image"]).is_absolute()
        assert (sample_csv.parent / r["image"]).is_file()
        assert r["split"] in ("train", "val", "test", "pool")
    assert (sample_csv.parent / "manifest.json").is_file()


def test_counts_and_describe(sample_csv, rows):
    info = sample.describe_sample(sample_csv)
    assert info["n_photos"] >= 8
    assert len(info["portraits"]) >= 2
    assert len(info["kinds"]) >= 6
    assert {"noise", "overexposure", "underexposure", "blur", "jpeg", "mixed"} <= set(info["kinds"])
    n_photos, per_photo = info["n_photos"], sample.SCENES_PER_PHOTO
    assert per_photo == 9  # as many scenes as sample-v1, so the main job's size stays
    assert info["n_scenes"] == n_photos * per_photo
    assert info["n_rows"] == len(rows) == n_photos * per_photo * 7
    # the original is stored once per photo and shared by all its scenes
    assert info["n_images"] == n_photos * (1 + 6 * per_photo)
    assert set(info["splits"]) == {"train", "val", "test", "pool"}
    assert sum(s["photos"] for s in info["splits"].values()) == n_photos
    assert sum(s["scenes"] for s in info["splits"].values()) == info["n_scenes"]
    assert info["root"] == str(sample_csv.parent)
    assert json.loads(json.dumps(info)) == info  # JSON-ready for `--json`


def test_kinds_come_from_the_whole_library(sample_csv, rows):
    """Every library kind appears; every photo has one kind from each group plus one; held-out photos
    see every group; the manifest lists each photo's kinds as the CSV has them."""
    used = {r["kind"] for r in rows}
    assert used == {k for ks in GROUPS.values() for k in ks}  # all 36, none outside the library
    manifest = json.loads((sample_csv.parent / "manifest.json").read_text())
    assert set(manifest["kinds"]) == used
    for entry in manifest["photos"]:
        kinds = list(dict.fromkeys(r["kind"] for r in rows if r["photo"] == entry["name"]))
        assert entry["kinds"] == kinds and len(kinds) == len(set(kinds)) == sample.SCENES_PER_PHOTO
        groups = [group_of(k) for k in kinds]
        assert set(groups) == set(GROUPS) and len(groups) == len(GROUPS) + 1, (entry["name"], groups)
        assert not set(entry["skipped"]) & set(kinds)
    # greyscale photos skip the colour kinds that cannot act on them (and say so)
    grass = next(e for e in manifest["photos"] if e["name"] == "grass")
    assert "desaturate" in grass["skipped"] and "desaturate" not in grass["kinds"]
    # neighbouring photos get different kinds: the rotation, not one fixed ladder for all
    assert len({tuple(e["kinds"]) for e in manifest["photos"]}) == len(manifest["photos"])




def test_photo_table_is_sound():
    names = [p.name for p in sample.PHOTOS]
    assert len(names) == len(set(names)) >= 8
    assert sum(p.portrait for p in sample.PHOTOS) >= 2
    by_split = defaultdict(list)
    for p in sample.PHOTOS:
        by_split[p.split].append(p)
        assert sample.photo_source(p).is_file()
    assert len(by_split["test"]) == 3 and any(p.portrait for p in by_split["test"])
    assert len(by_split["val"]) == 2 and len(by_split["pool"]) == 2
    assert any(p.portrait for p in by_split["train"])


def test_splits_are_disjoint_by_photo(rows):
    split_of_photo: dict[str, set] = defaultdict(set)
    split_of_image: dict[str, set] = defaultdict(set)
    for r in rows:
        split_of_photo[r["photo"]].add(r["split"])
        split_of_image[r["image"]].add(r["split"])
        assert r["scene"] == f"{r['photo']}-{r['kind']}"
    assert all(len(s) == 1 for s in split_of_photo.values())
    assert all(len(s) == 1 for s in split_of_image.values())
    photos = {s: {p for p, ss in split_of_photo.items() if s in ss} for s in ("train", "val", "test", "pool")}
    assert all(photos.values())
    assert len(set().union(*photos.values())) == sum(len(v) for v in photos.values())


def test_scenes_have_full_ladder_and_monotone_scores(scenes):
    for name, rs in scenes.items():
        assert [int(r["severity"]) for r in rs] == list(range(7)), name
        scores = [float(r["score"]) for r in rs]
        assert scores[0] == 5.0 and abs(scores[-1] - 1.0) < 1e-9
        assert all(a > b for a, b in zip(scores, scores[1:])), name
        assert rs[0]["image"].endswith("original.png")
        assert len({r["photo"] for r in rs}) == 1 and len({r["kind"] for r in rs}) == 1


@pytest.mark.parametrize("photo", ["coffee", "grace_hopper"])
def test_distortion_really_degrades(sample_csv, scenes, photo):
    """PSNR to the original falls strictly with severity for every kind of the photo, each step is visible."""
    root = sample_csv.parent
    kinds = sorted({s.split("-", 1)[1] for s in scenes if s.startswith(f"{photo}-")})
    assert len(kinds) == sample.SCENES_PER_PHOTO
    for kind in kinds:
        imgs = [load_image(root / r["image"]) for r in scenes[f"{photo}-{kind}"]]
        psnrs = [_psnr(imgs[0], im) for im in imgs[1:]]
        assert all(a > b for a, b in zip(psnrs, psnrs[1:])), (kind, psnrs)
        steps = [_psnr(a, b) for a, b in zip(imgs, imgs[1:])]
        assert max(steps) < 45, (kind, steps)  # neighbouring levels differ visibly
        assert psnrs[0] > 19, (kind, psnrs)  # severity 1 is not already ruined


def test_exposure_goes_both_ways(sample_csv, scenes):
    root = sample_csv.parent
    over_orig = load_image(root / scenes["grace_hopper-overexposure"][0]["image"]).mean()
    over = load_image(root / scenes["grace_hopper-overexposure"][-1]["image"])
    under_orig = load_image(root / scenes["coffee-underexposure"][0]["image"]).mean()
    under = load_image(root / scenes["coffee-underexposure"][-1]["image"])
    assert over.mean() > over_orig + 40 and (over == 255).mean() > 0.2  # brighter, highlights clipped
    assert under.mean() < under_orig - 60


def test_sharpness_heuristic_fails_on_noise_and_camera_chains(sample_csv, scenes):
    """Why the ladder is informative: variance of the Laplacian (no training) ranks the blurs well but
    ranks every added-noise scene backwards, the blur+noise+JPEG chain near chance and the camera group
    far from perfectly."""
    root = sample_csv.parent

    def srcc(scene):
        rs = scenes[scene]
        return spearmanr([_laplacian_var(load_image(root / r["image"])) for r in rs], [float(r["score"]) for r in rs])[0]

    def of_kinds(kinds):
        return [srcc(s) for s in scenes if s.split("-", 1)[1] in kinds]

    noise = of_kinds({"noise", "white_noise", "color_noise", "impulse_noise"})
    assert len(noise) >= 6 and max(noise) < 0, noise
    assert np.mean(noise) < -0.9
    mixed = of_kinds({"mixed"})  # blur and noise rising together: the cue cancels out
    assert len(mixed) >= 2 and np.mean(mixed) < 0.5, mixed
    camera = of_kinds(set(GROUPS["camera"]))
    assert len(camera) >= 12 and np.mean(camera) < 0.7, camera
    blurs = of_kinds(set(GROUPS["blurs"]))
    assert len(blurs) >= 12 and np.mean(blurs) > 0.9, blurs


def test_rebuild_is_cached(sample_csv):
    mtime = sample_csv.stat().st_mtime_ns
    t0 = time.perf_counter()
    again = sample.build_sample(progress=False)
    assert time.perf_counter() - t0 < 2.0
    assert again == sample_csv and sample_csv.stat().st_mtime_ns == mtime


def test_manifest_hashes_match_files(sample_csv):
    manifest = json.loads((sample_csv.parent / "manifest.json").read_text())
    assert manifest["builder_version"] == sample.BUILDER_VERSION
    assert len(manifest["files"]) == sample.describe_sample(sample_csv)["n_images"]
    for rel in list(manifest["files"])[::97]:
        assert hashlib.sha256((sample_csv.parent / rel).read_bytes()).hexdigest() == manifest["files"][rel]


def test_build_is_deterministic(sample_csv, tmp_path):
    """A second, independent build of one photo gives byte-identical files (same sha256 as the set)."""
    manifest = json.loads((sample_csv.parent / "manifest.json").read_text())
    photo = next(p for p in sample.PHOTOS if p.name == "grace_hopper")
    rows, hashes, plan = sample.build_photo(photo, tmp_path)
    assert len(hashes) == 1 + 6 * sample.SCENES_PER_PHOTO
    assert plan == {k: v for k, v in next(p for p in manifest["photos"] if p["name"] == "grace_hopper").items()
                    if k in ("kinds", "skipped")}
    for rel, digest in hashes.items():
        assert manifest["files"][rel] == digest, rel
    assert [r for r in _rows(sample_csv) if r["photo"] == "grace_hopper"] == [
        {k: str(v) for k, v in r.items()} for r in rows
    ]


# -------------------------------------------------------------------- small builds (few photos)


@pytest.fixture
def two_photos(monkeypatch):
    keep = [p for p in sample.PHOTOS if p.name in ("chelsea", "coffee")]
    monkeypatch.setattr(sample, "PHOTOS", tuple(keep))
    return keep


def _fail_on(monkeypatch, photo_rows_before: int):
    """Make the `jpeg` distortion (both photos have it) raise once the first photo is done (a crash mid-build)."""
    real = distortions.DISTORTIONS["jpeg"]
    calls = {"n": 0}

    def boom(img, amount, rng):
        calls["n"] += 1
        if calls["n"] > photo_rows_before:
            raise RuntimeError("simulated crash mid-build")
        return real.fn(img, amount, rng)

    monkeypatch.setitem(distortions.DISTORTIONS, "jpeg", distortions.Distortion("jpeg", boom, real.description))


def test_build_is_atomic(tmp_path, monkeypatch, two_photos, capsys):
    root = tmp_path / "sample-v2"
    _fail_on(monkeypatch, 6)  # the second photo's jpeg ladder raises
    with pytest.raises(RuntimeError, match="simulated crash"):
        sample.build_sample(root, progress=False)
    assert not (root / "labels.csv").exists() and not root.exists()
    assert list(tmp_path.iterdir()) == []  # the temp folder is cleaned up too
    assert capsys.readouterr() == ("", "")


@pytest.mark.slow
def test_failed_forced_rebuild_keeps_the_old_set(tmp_path, monkeypatch, two_photos, capsys):
    root = tmp_path / "sample-v2"
    # a stale temp folder left by a killed build of a dead process is removed by the next build
    stale = tmp_path / "sample-v2.tmp-999999999"
    (stale / "images").mkdir(parents=True)
    csv_path = sample.build_sample(root, progress=False)
    assert capsys.readouterr() == ("", "")  # progress=False prints nothing
    assert not stale.exists()
    info = sample.describe_sample(csv_path)
    assert info["n_photos"] == 2 and info["n_rows"] == 2 * sample.SCENES_PER_PHOTO * 7
    before = csv_path.read_bytes()

    _fail_on(monkeypatch, 6)
    with pytest.raises(RuntimeError):
        sample.build_sample(root, force=True, progress=False)
    assert csv_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample-v2"]


def test_version_change_triggers_rebuild(tmp_path, monkeypatch):
    keep = [p for p in sample.PHOTOS if p.name == "chelsea"]
    monkeypatch.setattr(sample, "PHOTOS", tuple(keep))
    root = tmp_path / "s"
    csv_path = sample.build_sample(root, progress=False)
    man = json.loads((root / "manifest.json").read_text())
    man["builder_version"] = "old"
    (root / "manifest.json").write_text(json.dumps(man))
    assert not sample._is_complete(root)
    sample.build_sample(root, progress=False)
    assert json.loads((root / "manifest.json").read_text())["builder_version"] == sample.BUILDER_VERSION
    # a deleted image also makes the set incomplete
    (root / "images" / "chelsea" / "jpeg_3.png").unlink()
    assert not sample._is_complete(root)
    assert sample.build_sample(root, progress=False) == csv_path
    assert (root / "images" / "chelsea" / "jpeg_3.png").is_file()


def test_sample_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEIQA_CACHE", str(tmp_path))
    assert sample.sample_root() == tmp_path / "sample-v2"
    monkeypatch.delenv("EDGEIQA_CACHE")
    assert sample.sample_root() == Path.home() / ".cache" / "edgeiqa" / "sample-v2"


def test_describe_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        sample.describe_sample(tmp_path / "labels.csv")


def test_prepare_photo_sizes():
    for p in sample.PHOTOS:
        img = sample.prepare_photo(sample.photo_source(p))
        h, w = img.shape[:2]
        assert max(h, w) <= 512 and h % 32 == 0 and w % 32 == 0 and min(h, w) >= 256, (p.name, img.shape)


# ------------------------------------------------------------------------------ distortions table


@pytest.fixture(scope="module")
def small_photo():
    photo = next(p for p in sample.PHOTOS if p.name == "chelsea")
    return sample.prepare_photo(sample.photo_source(photo))[:160, :224]


def test_registry():
    assert len(distortions.DISTORTIONS) >= 7
    assert {"blur", "noise", "jpeg", "overexposure", "underexposure", "pixelate", "mixed"} <= set(distortions.kinds())
    # the sample set imports the whole library: every kind of the group table is registered
    assert {k for ks in GROUPS.values() for k in ks} == set(distortions.kinds())
    with pytest.raises(EdgeIQAError, match="did you mean 'noise'"):
        distortions.get_distortion("nois")
    with pytest.raises(ValueError):
        distortions.register_distortion("blur", "dup")(lambda img, a, rng: img)


@pytest.mark.parametrize("kind", list(distortions.DISTORTIONS))
def test_each_kind_is_deterministic_and_monotone(kind, small_photo):
    img = small_photo
    a = distortions.apply(img, kind, 4, np.random.default_rng(7))
    b = distortions.apply(img, kind, 4, np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == img.shape and np.array_equal(a, b)
    c = distortions.apply(img, kind, 4, np.random.default_rng(8))
    assert np.array_equal(a, c) != distortions.DISTORTIONS[kind].uses_rng
    assert np.array_equal(distortions.apply(img, kind, 0, np.random.default_rng(0)), img)
    # severities are points of the continuous curve
    assert np.array_equal(a, distortions.degrade(img, kind, 4 / 6, np.random.default_rng(7)))
    # continuous amounts: higher = worse (lower PSNR), including between ladder steps
    psnrs = [_psnr(img, distortions.degrade(img, kind, t, np.random.default_rng(1))) for t in (0.1, 0.25, 0.45, 0.7, 1.0)]
    assert all(x > y for x, y in zip(psnrs, psnrs[1:])), psnrs


@pytest.mark.parametrize("kind", list(distortions.DISTORTIONS))
def test_kinds_handle_tiny_odd_images(kind):
    img = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    out = distortions.apply(img, kind, 6, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8


def test_rotation_and_measurable_ladder(small_photo):
    assert sample.kind_rotation(0, "compression") == ["jpeg", "jpeg2000"]
    assert sample.kind_rotation(3, "compression") == ["jpeg2000", "jpeg"]
    assert sample.kind_rotation(7, "blurs") == ["motion_blur", "blur", "gaussian_blur", "lens_blur"]
    grey = np.repeat(cv2.cvtColor(small_photo, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    for kind, measurable in (("desaturate", False), ("blur", True), ("color", True)):
        ladder = [distortions.apply(grey, kind, s) for s in sample.SEVERITIES]
        assert sample.ladder_is_measurable(grey, ladder) == measurable, kind  # desaturate: identical copies


def test_bad_arguments(small_photo):
    with pytest.raises(EdgeIQAError, match="severity"):
        distortions.apply(small_photo, "blur", 7)
    with pytest.raises(EdgeIQAError, match="severity"):
        distortions.apply(small_photo, "blur", 2.5)
    with pytest.raises(EdgeIQAError, match="amount"):
        distortions.degrade(small_photo, "blur", 1.5)
    with pytest.raises(EdgeIQAError, match="RGB uint8"):
        distortions.apply(small_photo.astype(np.float32), "blur", 1)


def test_random_degradation(small_photo):
    d1 = distortions.random_degradation(small_photo, np.random.default_rng(11))
    d2 = distortions.random_degradation(small_photo, np.random.default_rng(11))
    assert d1.kind == d2.kind and d1.amount == d2.amount and np.array_equal(d1.image, d2.image)
    assert d1.kind in distortions.DISTORTIONS and 0.05 <= d1.amount <= 1.0
    image, kind, amount = distortions.random_degradation(small_photo, np.random.default_rng(1), kind="noise", amount=0.5)
    assert (kind, amount) == ("noise", 0.5)
    rng = np.random.default_rng(3)
    seen = {distortions.random_degradation(small_photo, rng, kinds=("blur", "jpeg")).kind for _ in range(20)}
    assert seen == {"blur", "jpeg"}
    # within a kind, a larger amount is a worse image: a free ranking label
    lo = distortions.random_degradation(small_photo, np.random.default_rng(0), kind="mixed", amount=0.3)
    hi = distortions.random_degradation(small_photo, np.random.default_rng(0), kind="mixed", amount=0.8)
    assert _psnr(small_photo, lo.image) > _psnr(small_photo, hi.image)


# -------------------------------------------------------------------- issue 21: never delete a foreign folder


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_edgeiqa_did_not_write_is_never_replaced(tmp_path, force):
    root = tmp_path / "sample-v2"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    (root / "labels.csv").write_text("image,score\n")  # looks like a set, but no marker and no sample manifest
    t0 = time.perf_counter()
    with pytest.raises(EdgeIQAError, match="edgeiqa did not write it"):
        sample.build_sample(root, force=force, progress=False)
    assert time.perf_counter() - t0 < 2.0  # refused before any photo is degraded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample-v2"]
    assert sorted(p.name for p in root.iterdir()) == ["labels.csv", "notes.txt"]


def test_cache_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "sample-v2").write_text("not a folder")
    with pytest.raises(EdgeIQAError, match="is a file, not a folder"):
        sample.build_sample(tmp_path / "sample-v2", progress=False)
    assert (tmp_path / "sample-v2").read_text() == "not a folder"


def test_built_set_is_marked_and_older_sets_are_recognised(sample_csv, tmp_path):
    from edgeiqa.outsafe import folder_kind

    assert folder_kind(sample_csv.parent) == "sample" and sample.is_own_sample(sample_csv.parent)
    old = tmp_path / "old"  # a set built before the marker: its manifest says what it is
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"builder_version": "sample-v1.3"}))
    assert sample.is_own_sample(old)
    (old / "manifest.json").write_text(json.dumps({"format": "edgeiqa-labelset/1"}))
    assert not sample.is_own_sample(old)


def test_only_interrupted_builds_are_cleaned_up(tmp_path):
    root = tmp_path / "sample-v2"
    stale = tmp_path / "sample-v2.tmp-999999999"  # a dead process's build: only the builder's files
    (stale / "images").mkdir(parents=True)
    foreign = tmp_path / "sample-v2.tmp-999999998"  # the same kind of name, but someone else's folder
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    hidden = tmp_path / ".sample-v2.tmp-999999997"  # fileio.atomic_path's temp of a killed build
    (hidden / "images").mkdir(parents=True)
    swapped = tmp_path / ".sample-v2.old-999999996"  # a set swapped out by a build killed before it removed it
    swapped.mkdir()
    (swapped / "manifest.json").write_text(json.dumps({"builder_version": "sample-v2.0"}))
    sample._remove_stale_temps(root)
    assert not stale.exists() and not hidden.exists() and not swapped.exists()
    assert (foreign / "thesis.tex").read_text() == "mine"
