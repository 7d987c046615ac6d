"""Issue 22: the `biq2021:ROOT` spec reads a fixture that copies the repository's real layout (no BIQ2021 file is
ever committed): the two CSVs with their quirks, the official split, subsets, and val carved from train only."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from edgeiqa.cli.main import main
from edgeiqa.data.datasets import load_dataset, load_with_problems
from edgeiqa.errors import DatasetError
from edgeiqa.metrics import summarize

TRAIN = [(f"ss0{1 + i % 3} ({i}).jpg", round(0.1 + 0.04 * i, 4)) for i in range(1, 21)]
TEST = [(f"ss0{1 + i % 3} ({100 + i}).jpg", round(0.9 - 0.05 * i, 4)) for i in range(1, 10)]


def make_biq2021(root):
    """Images/ + 'Train (Images and MOS).csv' (header `Image Name,MOS,,`, two empty trailing columns on every row)
    + 'Test (Images and MOS).csv'; one train row names a .jpg whose file on disk is .JPG, as in the real set."""
    (root / "Images").mkdir(parents=True)
    for i, (name, _) in enumerate(TRAIN + TEST):
        on_disk = name.replace(".jpg", ".JPG") if name == TRAIN[3][0] else name
        Image.new("RGB", (32, 32), (i * 7 % 256, 90, 160)).save(root / "Images" / on_disk, "JPEG")
    (root / "Train (Images and MOS).csv").write_text(
        "Image Name,MOS,,\n" + "".join(f"{n},{m},,\n" for n, m in TRAIN), encoding="utf-8")
    (root / "Test (Images and MOS).csv").write_text(
        "Image Name,MOS\n" + "".join(f"{n},{m}\n" for n, m in TEST), encoding="utf-8")
    return root


@pytest.fixture()
def biq(tmp_path):
    return make_biq2021(tmp_path / "BIQ2021")


def test_reads_the_official_split_subsets_and_case_mismatch(biq):
    ds = load_dataset(f"biq2021:{biq}")
    assert len(ds) == len(TRAIN) + len(TEST)
    assert ds.splits == {"train": 18, "val": 2, "test": 9}
    assert {r.group for r in ds.records} == {"ss01", "ss02", "ss03"}
    assert all(r.scene is None for r in ds.records)
    odd = [r for r in ds.records if r.path.name.endswith(".JPG")]
    assert len(odd) == 1 and odd[0].path.is_file()
    test_names = {r.path.name for r in ds.records if r.split == "test"}
    assert test_names == {n for n, _ in TEST}  # val never comes from test
    assert "seed 0" in ds.info["val_from"] and "Ahmed & Asif" in ds.info["citation"]


def test_val_carving_is_deterministic_and_seeded(biq):
    a = load_dataset(f"biq2021:{biq}?val=0.25")
    b = load_dataset(f"biq2021:{biq}?val=0.25")
    c = load_dataset(f"biq2021:{biq}?val=0.25&val_seed=3")
    val = lambda ds: sorted(r.path.name for r in ds.records if r.split == "val")
    assert val(a) == val(b) and len(val(a)) == 5
    assert val(c) != val(a)


@pytest.mark.parametrize("option, message", [
    ("val=0", r"val='0' must be a number in \(0, 0.5\]"),
    ("val=0.7", r"must be a number in \(0, 0.5\]"),
    ("val=abc", r"must be a number"),
    ("val_seed=x", "must be a whole number"),
    ("vall=0.1", "did you mean 'val'"),
])
def test_bad_options_are_one_line(biq, option, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"biq2021:{biq}?{option}")


def test_root_without_the_csvs_names_them(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["data", "info", f"biq2021:{tmp_path / 'empty'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "Train (Images and MOS).csv" in err[0] and "Test (Images and MOS).csv" in err[0]


def test_a_missing_image_is_named_and_the_rest_goes_on(biq):
    (biq / "Images" / TEST[0][0]).unlink()
    ds, ctx = load_with_problems(f"biq2021:{biq}")
    assert len(ds) == len(TRAIN) + len(TEST)  # the row is kept, and reported
    assert [p.kind for p in ctx.problems] == ["missing_file"]
    assert TEST[0][0] in ctx.problems[0].message and ctx.problems[0].line == 2


def test_reports_break_results_down_by_subset(biq):
    ds = load_dataset(f"biq2021:{biq}")
    test = [r for r in ds.records if r.split == "test"]
    m = summarize(test, {str(r.path): r.score for r in test})
    assert m["srcc"] == pytest.approx(1.0)
    assert set(m["srcc_per_group"]) == {"ss01", "ss02", "ss03"}
    assert all(v == pytest.approx(1.0) for v in m["srcc_per_group"].values())
    assert "srcc_scene_median" not in m  # no scenes: no per-scene numbers


def write_csv_set(folder, header: str, rows: list[str]):
    """`i.png` for each row i (32x32) and `l.csv` = header + rows, whose first column names them."""
    for i in range(len(rows)):
        Image.new("RGB", (32, 32)).save(folder / f"{i}.png")
    (folder / "l.csv").write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return folder / "l.csv"


def test_csv_without_val_gets_val_carved_from_train(tmp_path):
    write_csv_set(tmp_path, "image,score,split", [f"{i}.png,{i / 10},{'test' if i >= 8 else 'train'}" for i in range(10)])
    ds = load_dataset(f"csv:{tmp_path / 'l.csv'}?val=0.25")
    assert ds.splits == {"train": 6, "val": 2, "test": 2}
    assert {r.path.name for r in ds.records if r.split == "test"} == {"8.png", "9.png"}


def test_val_is_never_carved_from_a_single_train_scene(tmp_path):
    from edgeiqa.data.records import ImageRecord
    from edgeiqa.data.valsplit import carve_val

    recs = [ImageRecord(path=tmp_path / f"{i}.png", score=i, scene="only", split="train") for i in range(5)]
    out, info = carve_val(recs, 0.5)
    assert [r.split for r in out] == ["train"] * 5 and "too few" in info["val_from"]
    two = recs + [ImageRecord(path=tmp_path / "x.png", score=1.0, scene="other", split="train")]
    out, _ = carve_val(two, 0.5)
    assert sorted(r.split for r in out).count("train") >= 1 and any(r.split == "val" for r in out)


def test_no_scene_columns_say_so_and_subsets_reach_the_eval_summary(biq):
    from edgeiqa.cli.common import fmt_groups, fmt_metric
    from edgeiqa.distill.pipeline import eval_summary

    ds = load_dataset(f"biq2021:{biq}")
    test = [r for r in ds.records if r.split == "test"]
    out = eval_summary({str(r.path): -r.score for r in test}, test)
    assert out["srcc"] == pytest.approx(-1.0) and set(out["srcc_per_group"]) == {"ss01", "ss02", "ss03"}
    assert fmt_metric(out, "srcc_scene_median") == "no scenes" and fmt_metric(out, "srcc") == "-1.000"
    assert fmt_groups(out).startswith("ss01 -1.000")
    with_scenes = {"srcc": 0.5, "srcc_scene_mean": 0.7, "srcc_scene_median": None}
    assert fmt_metric(with_scenes, "srcc_scene_median") == "-"


def test_biq2021_profile_loads_and_feature_aug_is_checked(tmp_path):
    from edgeiqa.errors import EdgeIQAError
    from edgeiqa.profiles import load_profile
    from edgeiqa.teachers.pipeline import teacher_config

    prof = load_profile("biq2021")
    assert prof["data"].startswith("biq2021:") and teacher_config(prof).feature_aug == 0
    text = (tmp_path / "p.toml")
    from importlib.resources import files

    base = files("edgeiqa.profiles").joinpath("biq2021.toml").read_text()
    for bad, message in (("feature_aug = -1", r"feature_aug must be >= 0"), ("feature_aug = 9", r"feature_aug must be <= 8")):
        text.write_text(base.replace("feature_aug = 0", bad))
        with pytest.raises(EdgeIQAError, match=message):
            load_profile(str(text))


def test_labels_option_keeps_n_labels_and_makes_the_rest_an_unlabelled_pool(biq):
    from edgeiqa.data.datasets import unlabelled_pool

    ds = load_dataset(f"biq2021:{biq}?labels=8&val=0.25")
    pool = [r for r in ds.records if r.split == "pool"]
    assert ds.splits == {"train": 6, "val": 2, "pool": 12, "test": 9}  # val carved from the 8 kept labels
    assert all(r.score is None for r in pool)  # dropped at load: nothing downstream can read them
    assert unlabelled_pool(ds.records) == pool
    assert {r.path.name for r in ds.records if r.split == "test"} == {n for n, _ in TEST}
    assert "8 of 20 labelled train images" in ds.info["labels_from"]
    again = load_dataset(f"biq2021:{biq}?labels=8&val=0.25")
    other = load_dataset(f"biq2021:{biq}?labels=8&val=0.25&labels_seed=1")
    kept = lambda d: sorted(r.path.name for r in d.records if r.split in ("train", "val"))
    assert kept(again) == kept(ds) and kept(other) != kept(ds)


@pytest.mark.parametrize("option, message", [
    ("labels=1", r"labels='1' must be a whole number >= 2"),
    ("labels=ten", "must be a whole number"),
    ("labels=20", "keeps every label: the dataset has 20 labelled train images"),
    ("labels=5&labels_seed=-1", r"labels_seed='-1' must be a whole number >= 0"),
    ("label=5", "did you mean 'labels'"),
])
def test_bad_labels_options_are_one_line(biq, option, message):
    with pytest.raises(DatasetError, match=message) as exc:
        load_dataset(f"biq2021:{biq}?{option}")
    assert "\n" not in str(exc.value)


def test_labels_option_on_a_csv_keeps_whole_scenes(tmp_path):
    write_csv_set(tmp_path, "image,score,scene,split",
                  [f"{i}.png,{i / 12},s{i // 2},{'test' if i >= 10 else 'train'}" for i in range(12)])
    ds = load_dataset(f"csv:{tmp_path / 'l.csv'}?labels=4")
    labelled = [r for r in ds.records if r.split in ("train", "val")]
    assert len(labelled) == 4 and ds.splits["pool"] == 6
    scenes = {r.scene for r in labelled}
    assert all(r.split == "pool" for r in ds.records if r.scene not in scenes and r.split != "test")


def test_pseudo_weight_zero_leaves_the_pool_out(biq, tmp_path):
    import torch

    from edgeiqa.distill.pipeline import build_items

    ds = load_dataset(f"biq2021:{biq}?labels=8")
    pool = [str(r.path) for r in ds.records if r.split == "pool"]

    class Labels:  # the two things build_items reads of a LabelSet
        rows = [{"image": p} for p in pool]
        features = {"ensemble": torch.zeros(len(pool), 4)}

        def score_of(self):
            return {p: 0.5 for p in pool}

    with_pool, _, n_pseudo = build_items(ds, Labels(), 0.5, use_pool=True)
    alone, _, none = build_items(ds, Labels(), 0.0, use_pool=False)
    assert n_pseudo == len(pool) == 12 and len(with_pool) == 7 + 12
    assert none == 0 and len(alone) == 7 and {it.path for it in alone}.isdisjoint(pool)


def test_frozen_features_are_shared_across_seeds_and_label_subsets(biq, tmp_path):
    """Without augmented variants the cached backbone features depend on images, views and weights only: another
    seed or another set of training images reuses the file instead of recomputing it."""
    import torch

    from edgeiqa.data.torchdata import ImageCache
    from edgeiqa.teachers import create_teacher
    from edgeiqa.teachers.train import cached_features

    teacher = create_teacher("lite0_mv").eval()
    paths = sorted(str(p) for p in (biq / "Images").iterdir())[:3]
    first = cached_features(teacher, tmp_path, paths, ImageCache(), 0, 0, paths[:2], False)
    stamp = (tmp_path / "backbone_features.pt").stat().st_mtime_ns
    again = cached_features(teacher, tmp_path, paths, ImageCache(), 0, 7, paths[:1], False)
    assert (tmp_path / "backbone_features.pt").stat().st_mtime_ns == stamp
    assert torch.equal(first["eval"], again["eval"])
    with_aug = cached_features(teacher, tmp_path, paths, ImageCache(), 1, 0, paths[:1], False)
    assert (tmp_path / "backbone_features.pt").stat().st_mtime_ns != stamp and with_aug["aug"] is not None


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_distill_on_biq2021_never_reads_the_test_labels_to_select(biq, tmp_path):
    """Issue 22, req. 6: with the test split's MOS reversed, distill (teachers, ensemble weights, calibration, student
    epochs, the saved student) is bit for bit the same; only the reported test numbers flip."""
    import torch

    from helpers import write_profile

    profile = write_profile(tmp_path / "tiny.toml", epochs=2)
    test_csv = biq / "Test (Images and MOS).csv"
    cards, weights = {}, {}
    for tag, rows in (("true", TEST), ("reversed", [(n, round(1 - m, 4)) for n, m in TEST])):
        test_csv.write_text("Image Name,MOS\n" + "".join(f"{n},{m}\n" for n, m in rows), encoding="utf-8")
        out = tmp_path / tag
        rc = main(["distill", "--profile", str(profile), "--data", f"biq2021:{biq}?val=0.25", "--out", str(out), "--quiet"])
        assert rc == 0
        cards[tag] = json.loads((out / "card.json").read_text())
        weights[tag] = torch.load(out / "student.pt", weights_only=True)["state_dict"]
    a, b = cards["true"], cards["reversed"]
    assert a["val_from"] == b["val_from"] and a["teacher"]["weights"] == b["teacher"]["weights"]
    untimed = lambda card: [{k: v for k, v in h.items() if k != "seconds"} for h in card["training"]["history"]]
    assert untimed(a) == untimed(b)  # same losses and val numbers, so the same chosen epoch
    assert a["student"]["val"] == b["student"]["val"] and a["teacher"]["val"] == b["teacher"]["val"]
    assert all(torch.equal(weights["true"][k], weights["reversed"][k]) for k in weights["true"])
    for side in ("student", "teacher"):
        assert a[side]["srcc"] == pytest.approx(-b[side]["srcc"]) and a[side]["srcc"] != 0
    # no scenes: the student's share of the teacher's SRCC is the global one
    assert a["ratios"]["srcc_scene_mean_kept"] is None
    assert a["ratios"]["srcc_kept"] == pytest.approx(a["student"]["srcc"] / a["teacher"]["srcc"], abs=1e-3)
