"""Dataset specs and loaders, on small fixture trees written in each public set's real layout."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeiqa.data.datasets import LOADERS, load_csv, load_dataset, parse_spec
from edgeiqa.data.images import load_image
from edgeiqa.errors import DatasetError

# --------------------------------------------------------------------------- fixture helpers

_JPEG: bytes | None = None


def _jpeg_bytes() -> bytes:
    global _JPEG
    if _JPEG is None:
        buf = io.BytesIO()
        arr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(arr).save(buf, "JPEG")
        _JPEG = buf.getvalue()
    return _JPEG


def write_image(path: Path) -> Path:
    """A real 32x32 image; the format follows the suffix (.tiff written as TIFF, anything else JPEG bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".tif", ".tiff", ".png"):
        Image.new("RGB", (32, 32), (90, 120, 150)).save(path)
    else:
        path.write_bytes(_jpeg_bytes())
    return path


def write_csv(path: Path, header: list[str], rows: list[list], quote_all: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
        w.writerow(header)
        w.writerows(rows)
    return path


PIQ_HEADER = ["IMAGE PATH", "JOD", "JOD STD", "CI LOW", "CI HIGH", "CI RANGE", "QUALITY LEVEL", "CLUSTER",
              "TOTAL COMPARISONS", "IMAGE", "SCENE", "ATTRIBUTE", "SCENE IDX", "CONDITION"]
# Indoor_Scene_1 is a *test* scene while Indoor_Scene_12/13 are *train* scenes: the substring trap.
PIQ_SCENES = {
    "Indoor_Scene_1": "Test",
    "Indoor_Scene_12": "Train",
    "Indoor_Scene_13": "Train",
    "Night_Scene_22": "Train",
    "Outdoor_Scene_33": "Test",
    "Outdoor_Scene_40": "Train",
}


def make_piq23(root: Path, attrs=("Overall", "Details"), per_scene: int = 3) -> Path:
    """PIQ23 layout: Scores/Scores_<Attr>.csv (Windows paths), Test split/{Scene,Device} Split.csv, images."""
    idx = 0
    device_rows = []
    rows_by_attr: dict[str, list] = {a: [] for a in attrs}
    for scene_idx, scene in enumerate(PIQ_SCENES):
        condition = scene.split("_")[0]
        for k in range(per_scene):
            ext = ".tiff" if k == 1 else (".JPG" if k == 2 else ".jpg")
            name = f"{idx}_{scene}{ext}"
            jod = -2.5 + 1.5 * k  # per-scene JOD: negative values are normal
            for attr in attrs:
                write_image(root / attr / name)
                rows_by_attr[attr].append(
                    [f"{attr}\\{name}", jod, 0.4, jod - 0.8, jod + 0.8, 1.6, k, 1.0, 120.0, name, scene, attr,
                     scene_idx, condition]
                )
            device_rows.append([name, "Test" if idx % 3 == 0 else "Train"])
            idx += 1
    for attr, rows in rows_by_attr.items():
        write_csv(root / "Scores" / f"Scores_{attr}.csv", PIQ_HEADER, rows)
    write_csv(root / "Test split" / "Scene Split.csv", ["SCENE", "SPLIT", "NB IMAGES"],
              [[s, sp, per_scene] for s, sp in PIQ_SCENES.items()])
    write_csv(root / "Test split" / "Device Split.csv", ["IMAGE", "SPLIT"], device_rows)
    return root


# --------------------------------------------------------------------------- spec parsing


def test_registry_has_every_prefix():
    assert {"sample", "csv", "piq23", "uhd-iqa", "koniq", "gfiqa", "folder"} <= set(LOADERS)


def test_parse_spec_options(tmp_path):
    s = parse_spec("piq23:/data/PIQ2023?attr=Details&split=device")
    assert (s.name, s.target, s.options) == ("piq23", "/data/PIQ2023", {"attr": "Details", "split": "device"})
    assert parse_spec("sample").name == "sample"
    assert parse_spec("CSV:a b/labels.csv").target == "a b/labels.csv"


def test_bare_path_shortcuts(tmp_path):
    csv_path = write_csv(tmp_path / "l.csv", ["image", "score"], [])
    assert parse_spec(str(csv_path)).name == "csv"
    assert parse_spec(str(tmp_path)).name == "folder"


def test_unknown_prefix_suggests_closest():
    with pytest.raises(DatasetError, match="did you mean 'piq23'"):
        parse_spec("piq2:/x")
    with pytest.raises(DatasetError, match="did you mean 'uhd-iqa'"):
        parse_spec("uhdiqa:/x")
    with pytest.raises(DatasetError, match="did you mean 'sample'"):
        parse_spec("smaple")


def test_bad_options_and_missing_target():
    with pytest.raises(DatasetError, match="unknown option 'atr'.*did you mean 'attr'"):
        parse_spec("piq23:/x?atr=details")
    with pytest.raises(DatasetError, match="must be one of"):
        parse_spec("piq23:/x?attr=colour")
    with pytest.raises(DatasetError, match="needs a path"):
        parse_spec("koniq:")
    with pytest.raises(DatasetError, match="empty"):
        parse_spec("  ")


# --------------------------------------------------------------------------- csv:PATH


def test_csv_loader(tmp_path):
    write_image(tmp_path / "imgs" / "a.jpg")
    write_image(tmp_path / "imgs" / "sub" / "b.png")
    absolute = write_image(tmp_path / "elsewhere" / "c.jpg")
    write_csv(tmp_path / "labels.csv", ["image", "score", "scene", "split", "kind", "extra"], [
        ["imgs/a.jpg", "3.5", "s1", "training", "blur", "x"],
        ["imgs\\sub\\b.png", "", "s1", "validation", "", "y"],  # Windows separators, unlabelled
        [str(absolute), "-1.25", "", "TEST", "noise", ""],
        ["imgs/a.jpg", "1", "s2", "pool", "", ""],
    ])
    ds = load_dataset(f"csv:{tmp_path / 'labels.csv'}")
    assert len(ds) == 4
    a, b, c, d = ds.records
    assert a.path == tmp_path / "imgs" / "a.jpg" and a.score == 3.5 and a.split == "train" and a.kind == "blur"
    assert b.path == tmp_path / "imgs" / "sub" / "b.png" and b.score is None and b.split == "val" and b.kind is None
    assert c.path == absolute and c.scene is None and c.split == "test"
    assert d.split == "pool"
    assert [r.line for r in ds.records] == [2, 3, 4, 5]
    assert ds.info["score_range"] == [-1.25, 3.5]
    assert ds.info["root"] == str(tmp_path)
    assert ds.info["n_labelled"] == 3
    assert len(ds.labelled()) == 3
    # the bare path shortcut gives the same records
    assert load_dataset(str(tmp_path / "labels.csv")).records == ds.records


def test_csv_missing_column_names_it(tmp_path):
    write_csv(tmp_path / "l.csv", ["image", "mos"], [["a.jpg", "1"]])
    with pytest.raises(DatasetError, match="missing column 'score'") as info:
        load_dataset(f"csv:{tmp_path / 'l.csv'}")
    assert "mos" in str(info.value)  # what was found is listed


def test_csv_missing_file_names_it(tmp_path):
    # the same message as a bare path (issue 9, defect 8)
    with pytest.raises(DatasetError, match="no such file or folder") as info:
        load_dataset(f"csv:{tmp_path / 'absent.csv'}")
    assert "absent.csv" in str(info.value)


def test_csv_missing_image_names_file_and_line(tmp_path):
    write_image(tmp_path / "a.jpg")
    write_csv(tmp_path / "l.csv", ["image", "score"], [["a.jpg", "1"], ["gone.jpg", "2"]])
    with pytest.raises(DatasetError) as info:
        load_dataset(f"csv:{tmp_path / 'l.csv'}")
    msg = str(info.value)
    assert "gone.jpg" in msg and "line 3" in msg
    # without the file check it loads
    assert len(load_dataset(f"csv:{tmp_path / 'l.csv'}", check_files=False)) == 2


def test_csv_bad_split_names_line(tmp_path):
    write_image(tmp_path / "a.jpg")
    write_csv(tmp_path / "l.csv", ["image", "score", "split"], [["a.jpg", "1", "train"], ["a.jpg", "2", "holdout"]])
    with pytest.raises(DatasetError, match=r"line 3.*'holdout'"):
        load_dataset(f"csv:{tmp_path / 'l.csv'}")


def test_csv_bad_score_names_line(tmp_path):
    write_image(tmp_path / "a.jpg")
    write_csv(tmp_path / "l.csv", ["image", "score"], [["a.jpg", "good"], ["a.jpg", "nan"]])
    with pytest.raises(DatasetError) as info:
        load_dataset(f"csv:{tmp_path / 'l.csv'}")
    msg = str(info.value)  # one line: the first problem, the count of the rest, where all are listed
    assert "line 2" in msg and "'good' is not a number" in msg and "(and 1 more)" in msg and "\n" not in msg
    from edgeiqa.data.check import check_dataset

    assert [2, 3] == [q["line"] for q in check_dataset(f"csv:{tmp_path / 'l.csv'}")["problems"] if q["line"]]


def test_load_csv_direct(tmp_path):
    write_csv(tmp_path / "l.csv", ["Image", " Score "], [["x.jpg", "0.5"]])  # header case/space tolerant
    ds = load_csv(tmp_path / "l.csv")
    assert ds.records[0].score == 0.5 and ds.info["csv"] == str(tmp_path / "l.csv")


# --------------------------------------------------------------------------- piq23:ROOT


def test_piq23_scene_split_exact_match(tmp_path):
    root = make_piq23(tmp_path / "PIQ2023")
    ds = load_dataset(f"piq23:{root}")
    by_scene = {}
    for r in ds.records:
        by_scene.setdefault(r.scene, set()).add(r.split)
    # the trap: Indoor_Scene_1 is test, Indoor_Scene_12/13 stay train
    assert by_scene["Indoor_Scene_1"] == {"test"}
    assert by_scene["Indoor_Scene_12"] == {"train"}
    assert by_scene["Indoor_Scene_13"] == {"train"}
    assert {s for s, sp in by_scene.items() if sp == {"test"}} == {"Indoor_Scene_1", "Outdoor_Scene_33"}
    assert ds.info["scenes_per_split"] == {"test": 2, "train": 4}
    assert len(ds) == 18


def test_piq23_layout_details(tmp_path):
    root = make_piq23(tmp_path / "PIQ2023")
    ds = load_dataset(f"piq23:{root}")
    # Windows separators resolved against ROOT
    assert all(r.path.is_file() and r.path.parent == root / "Overall" for r in ds.records)
    # .tiff images are listed and readable
    tiffs = [r for r in ds.records if r.path.suffix == ".tiff"]
    assert len(tiffs) == 6
    assert load_image(tiffs[0].path).shape == (32, 32, 3)
    # negative JOD kept as is
    assert ds.info["score_range"] == [-2.5, 0.5]
    assert min(r.score for r in ds.records) < 0
    # kind = CONDITION by default, ATTRIBUTE on request
    assert {r.kind for r in ds.records} == {"Indoor", "Night", "Outdoor"}
    assert {r.kind for r in load_dataset(f"piq23:{root}?kind=attribute").records} == {"Overall"}
    assert ds.info["attribute"] == "Overall" and ds.info["split"] == "scene"
    assert ds.records[0].line == 2


def test_piq23_details_device_split(tmp_path):
    root = make_piq23(tmp_path / "PIQ2023")
    ds = load_dataset(f"piq23:{root}?attr=details&split=device")
    assert ds.info["attribute"] == "Details"
    assert all(r.path.parent.name == "Details" for r in ds.records)
    for i, r in enumerate(ds.records):  # Device Split: every third image is Test
        assert r.split == ("test" if i % 3 == 0 else "train"), r.path.name
    none = load_dataset(f"piq23:{root}?split=none")
    assert {r.split for r in none.records} == {None}


def test_piq23_val_carved_deterministically(tmp_path):
    root = make_piq23(tmp_path / "PIQ2023")
    a = load_dataset(f"piq23:{root}?val=0.25")
    b = load_dataset(f"piq23:{root}?val=0.25")
    assert [r.split for r in a.records] == [r.split for r in b.records]
    val_scenes = {r.scene for r in a.records if r.split == "val"}
    assert len(val_scenes) == 1 and val_scenes <= {"Indoor_Scene_12", "Indoor_Scene_13", "Night_Scene_22", "Outdoor_Scene_40"}
    assert {r.scene for r in a.records if r.split == "test"} == {"Indoor_Scene_1", "Outdoor_Scene_33"}
    with pytest.raises(DatasetError, match="val"):
        load_dataset(f"piq23:{root}?val=1.5")


def test_piq23_scene_missing_from_split_file(tmp_path):
    root = make_piq23(tmp_path / "PIQ2023")
    write_csv(root / "Test split" / "Scene Split.csv", ["SCENE", "SPLIT", "NB IMAGES"],
              [[s, sp, 3] for s, sp in PIQ_SCENES.items() if s != "Indoor_Scene_12"] + [["Indoor_Scene_1", "Test", 3]])
    with pytest.raises(DatasetError, match="'Indoor_Scene_12' is not listed in Scene Split.csv"):
        load_dataset(f"piq23:{root}")


def test_piq23_errors_name_files(tmp_path):
    root = make_piq23(tmp_path / "PIQ2023", attrs=("Overall",))
    with pytest.raises(DatasetError, match="Scores_Details.csv"):
        load_dataset(f"piq23:{root}?attr=details")
    (root / "Overall" / "0_Indoor_Scene_1.jpg").unlink()
    with pytest.raises(DatasetError, match=r"Scores_Overall.csv line 2: image not found: .*0_Indoor_Scene_1.jpg"):
        load_dataset(f"piq23:{root}")
    with pytest.raises(DatasetError, match="no Scores/ folder"):
        load_dataset(f"piq23:{tmp_path}/..")


def test_piq23_root_wrapper_and_extension_fallback(tmp_path):
    root = make_piq23(tmp_path / "download" / "PIQ2023", attrs=("Overall",))
    # the CSV says .jpg but the file on disk is .jpeg: found by name without extension
    (root / "Overall" / "3_Indoor_Scene_12.jpg").rename(root / "Overall" / "3_Indoor_Scene_12.jpeg")
    ds = load_dataset(f"piq23:{tmp_path / 'download'}")
    assert any(r.path.name == "3_Indoor_Scene_12.jpeg" for r in ds.records)


# --------------------------------------------------------------------------- uhd-iqa:ROOT


def make_uhd(root: Path) -> Path:
    header = ["image_name", "quality_mos", "set", "orig_width", "orig_height", "aesthetic"]
    rows = []
    for i, (folder, set_name) in enumerate(
        [("training", "training"), ("training", "training"), ("validation", "validation"), ("test", "test")]
    ):
        name = f"{1000 + i}.jpg"
        write_image(root / "challenge" / folder / name)
        rows.append([name, f"{0.2 + 0.2 * i:.3f}", set_name, 3840, 2160, "x, y"])
    write_csv(root / "uhd-iqa-metadata.csv", header, rows, quote_all=True)
    return root


def test_uhd_iqa(tmp_path):
    root = make_uhd(tmp_path / "UHD-IQA")
    assert (root / "uhd-iqa-metadata.csv").read_text().startswith('"image_name","quality_mos"')
    ds = load_dataset(f"uhd-iqa:{root}")
    assert [r.split for r in ds.records] == ["train", "train", "val", "test"]
    assert ds.records[2].path == root / "challenge" / "validation" / "1002.jpg"
    assert all(0 <= r.score <= 1 for r in ds.records)
    assert not ds.has_scenes
    assert ds.info["source"] == "uhd-iqa" and ds.info["score_range"] == [0.2, 0.8]


def test_uhd_iqa_problems(tmp_path):
    root = make_uhd(tmp_path / "UHD-IQA")
    with open(root / "uhd-iqa-metadata.csv", "a") as f:
        f.write('"1004.jpg","7.5","training","1","1","-"\n"1001.jpg","0.5","holdout","1","1","-"\n')
    with pytest.raises(DatasetError) as info:
        load_dataset(f"uhd-iqa:{root}")
    msg = str(info.value)
    assert "line 6" in msg and "outside [0, 1]" in msg and "(and 1 more)" in msg and "data check" in msg
    from edgeiqa.data.check import check_dataset

    found = check_dataset(f"uhd-iqa:{root}")["problems"]
    assert any(q["line"] == 7 and "'holdout'" in q["message"] for q in found)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="metadata"):
        load_dataset(f"uhd-iqa:{tmp_path / 'empty'}")


# --------------------------------------------------------------------------- koniq:ROOT


def make_koniq(root: Path, sets: bool) -> Path:
    header = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"]
    rows = []
    for i in range(4):
        name = f"{826373 + i}.jpg"
        write_image(root / "1024x768" / name)
        write_image(root / "512x384" / name)
        rows.append([name, 0, 1, 2, 3, 4, 10, 2.5 + 0.5 * i, 0.6, 40 + 10 * i])
    write_csv(root / "koniq10k_scores_and_distributions.csv", header, rows)
    if sets:
        write_csv(root / "koniq10k_distributions_sets.csv", header[:-1] + ["set"],
                  [r[:-1] + [s] for r, s in zip(rows[:3], ["training", "validation", "test"])])
    return root


def test_koniq_without_split(tmp_path):
    root = make_koniq(tmp_path / "koniq10k", sets=False)
    ds = load_dataset(f"koniq:{root}")
    assert len(ds) == 4 and {r.split for r in ds.records} == {None}
    assert all(r.path.parent.name == "1024x768" for r in ds.records)
    assert ds.info["score_range"] == [2.5, 4.0] and ds.info["split_file"] is None
    small = load_dataset(f"koniq:{root}?res=512x384&score=zscore")
    assert all(r.path.parent.name == "512x384" for r in small.records)
    assert small.records[0].score == 40


def test_koniq_with_sets_file(tmp_path):
    root = make_koniq(tmp_path / "koniq10k", sets=True)
    ds = load_dataset(f"koniq:{root}")
    assert [r.split for r in ds.records] == ["train", "val", "test", None]
    assert ds.info["unsplit"] == 1


def test_koniq_missing_image_named(tmp_path):
    root = make_koniq(tmp_path / "koniq10k", sets=False)
    for sub in ("1024x768", "512x384"):
        (root / sub / "826374.jpg").unlink()
    with pytest.raises(DatasetError, match=r"line 3: image not found: .*826374.jpg"):
        load_dataset(f"koniq:{root}")


# --------------------------------------------------------------------------- gfiqa:ROOT


def test_gfiqa(tmp_path):
    root = tmp_path / "GFIQA"
    for i in range(3):
        write_image(root / "images" / f"face_{i}.png")
    write_csv(root / "mos_rating.csv", ["img_name", "mos"], [[f"face_{i}.png", 0.3 * i] for i in range(3)])
    write_csv(root / "readme.csv", ["something", "else"], [["a", "b"]])
    ds = load_dataset(f"gfiqa:{root}")
    assert len(ds) == 3 and ds.records[1].path == root / "images" / "face_1.png"
    assert ds.info["csv"] == str(root / "mos_rating.csv")
    (tmp_path / "images_only").mkdir()
    with pytest.raises(DatasetError, match="mos"):
        load_dataset(f"gfiqa:{tmp_path / 'images_only'}")


# --------------------------------------------------------------------------- folder:DIR


def test_folder(tmp_path):
    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "deep" / "b.tiff")
    (tmp_path / "notes.txt").write_text("x")
    ds = load_dataset(f"folder:{tmp_path}")
    assert [r.path.name for r in ds.records] == ["a.jpg", "b.tiff"]
    assert all(r.score is None and r.split is None for r in ds.records)
    assert ds.info["n_labelled"] == 0 and "score_range" not in ds.info
    (tmp_path / "deep" / "nothing").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        load_dataset(f"folder:{tmp_path / 'deep' / 'nothing'}")
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


# --------------------------------------------------------------------------- sample


def test_sample_loads(sample_csv):
    ds = load_dataset("sample")
    assert ds.info["source"] == "sample"
    assert len(ds) > 0 and ds.has_scenes
    assert set(ds.splits) <= {"train", "val", "test", "pool"}
    assert {"train", "val", "test"} <= set(ds.splits)
    with open(sample_csv, newline="") as f:
        photo_of = {str(Path(sample_csv).parent / row["image"]): row["photo"] for row in csv.DictReader(f)}
    photos: dict[str, set] = {}
    scenes: dict[str, set] = {}
    for r in ds.records:
        photos.setdefault(r.split, set()).add(photo_of[str(r.path)])
        scenes.setdefault(r.split, set()).add(r.scene)
    names = ["train", "val", "test"]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not photos[a] & photos[b], f"{a}/{b} share photos"
            assert not scenes[a] & scenes[b], f"{a}/{b} share scenes"
    # test scenes are unseen by every other split (pool included)
    others = set().union(*(scenes[s] for s in scenes if s != "test"))
    assert not scenes["test"] & others


def test_unlabelled_pool_rule():
    """One rule for the images teachers pseudo-label (distill and teachers train --self-train)."""
    from pathlib import Path

    from edgeiqa.data.datasets import unlabelled_pool
    from edgeiqa.data.records import ImageRecord

    recs = {name: ImageRecord(Path(f"/x/{name}.png"), score, split=split) for name, score, split in [
        ("pool_labelled", 1.0, "pool"), ("pool", None, "pool"), ("train_unlabelled", None, "train"),
        ("no_split", None, None), ("train", 2.0, "train"), ("val_unlabelled", None, "val"),
        ("test_unlabelled", None, "test"), ("labelled_no_split", 3.0, None)]}
    got = {r.path.stem for r in unlabelled_pool(list(recs.values()))}
    assert got == {"pool_labelled", "pool", "train_unlabelled", "no_split"}
