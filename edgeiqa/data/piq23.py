"""PIQ23 (portrait IQA, DXOMARK, CVPR 2023) in its released layout.

Spec: ``piq23:ROOT`` with options after ``?``, joined by ``&`` (names and values case-insensitive)::

    piq23:/data/PIQ2023                          Overall attribute, official scene split
    piq23:/data/PIQ2023?attr=details&split=device
    piq23:/data/PIQ2023?split=scene&val=0.2      20 % of the train scenes become `val`

Options
    attr   overall (default) | details | exposure    -> Scores/Scores_<Attr>.csv
    split  scene (default) | device | none           -> Test split/Scene Split.csv or Device Split.csv
    val    fraction in (0, 1); default 0 = every official train scene/image stays `train`. The val part
           is chosen deterministically (smallest SHA-1 of the scene name, or image name for the device
           split), so the same spec always gives the same split.
    kind   condition (default: Indoor/Lowlight/Night/Outdoor) | attribute   -> ImageRecord.kind

Layout read (ROOT may also be a folder with exactly one subfolder holding it)::

    ROOT/Scores/Scores_{Overall,Details,Exposure}.csv
        IMAGE PATH,JOD,JOD STD,CI LOW,CI HIGH,CI RANGE,QUALITY LEVEL,CLUSTER,TOTAL COMPARISONS,
        IMAGE,SCENE,ATTRIBUTE,SCENE IDX,CONDITION
    ROOT/Test split/Scene Split.csv    SCENE,SPLIT,NB IMAGES   (SPLIT = Train/Test)
    ROOT/Test split/Device Split.csv   IMAGE,SPLIT

`IMAGE PATH` is relative to ROOT with Windows separators (``Overall\\66_Indoor_Scene_0.jpg``); some
images are .tiff/.JPG/.jpeg. When the listed path is absent the image is looked up by file name (and
then by name without extension) anywhere under ROOT. The score is the JOD: it is defined per scene
(negative values are normal) so only comparisons within a scene are meaningful.

Scene names are matched **exactly**: a test scene ``Indoor_Scene_1`` must not pull in the train scenes
``Indoor_Scene_12`` / ``Indoor_Scene_13`` (a substring match would). A scene of the scores file that the
split file does not list is a problem reported once with its first line.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from edgeiqa.data.loading import (
    FileIndex,
    LoadContext,
    Table,
    image_path,
    make_dataset,
    parse_score,
    parse_split,
    require_dir,
)
from edgeiqa.data.records import ImageRecord
from edgeiqa.errors import DatasetError

ATTRIBUTES = {"overall": "Overall", "details": "Details", "exposure": "Exposure"}
OPTIONS = {
    "attr": tuple(ATTRIBUTES),
    "split": ("scene", "device", "none"),
    "val": "fraction of the train part moved to val (deterministic), default 0",
    "kind": ("condition", "attribute"),
}


def find_root(root: Path) -> Path:
    """ROOT itself when it holds Scores/, else its single subfolder that does (an unzipped archive)."""
    if (root / "Scores").is_dir():
        return root
    inner = [d for d in sorted(root.iterdir()) if d.is_dir() and (d / "Scores").is_dir()]
    if len(inner) == 1:
        return inner[0]
    raise DatasetError(
        f"piq23: {root} does not look like PIQ23: no Scores/ folder (expected Scores/Scores_Overall.csv)"
    )


def _val_fraction(text: str | None) -> float:
    if text in (None, ""):
        return 0.0
    try:
        frac = float(text)
    except ValueError:
        raise DatasetError(f"piq23: option val={text!r} must be a number in [0, 1)") from None
    if not 0.0 <= frac < 1.0:
        raise DatasetError(f"piq23: option val={text!r} must be in [0, 1)")
    return frac


def _carve_val(keys: list[str], frac: float) -> set[str]:
    """Deterministic choice of round(frac * n) keys (at least one when frac > 0) by SHA-1 order."""
    if frac <= 0 or not keys:
        return set()
    n = max(1, round(frac * len(keys)))
    ranked = sorted(keys, key=lambda k: hashlib.sha1(k.encode("utf-8")).hexdigest())
    return set(ranked[:n])


def _read_split(path: Path, key_col: str, ctx: LoadContext) -> dict[str, tuple[str, int]]:
    """{key: (split, line)} from an official split CSV; conflicting duplicates are problems."""
    table = Table(path, "piq23")
    table.require(key_col, "SPLIT")
    out: dict[str, tuple[str, int]] = {}
    for line, row in table.rows(ctx):
        key = row[key_col.lower()]
        if not key:
            ctx.problem(f"empty {key_col} column", line=line, source=path)
            continue
        ok, split = parse_split(row["split"], ctx, line, path, column="SPLIT")
        if not ok or split is None:
            if ok:
                ctx.problem("empty SPLIT column", line=line, source=path)
            continue
        if key in out and out[key][0] != split:
            ctx.problem(f"{key_col} {key!r} is listed as {out[key][0]} on line {out[key][1]} and as {split}",
                        line=line, source=path)
            continue
        out.setdefault(key, (split, line))
    return out


def load_piq23(spec, ctx: LoadContext):
    root = find_root(require_dir(spec.target, "piq23"))
    attr = ATTRIBUTES[(spec.option("attr") or "overall").lower()]
    split_mode = (spec.option("split") or "scene").lower()
    kind_mode = (spec.option("kind") or "condition").lower()
    val_frac = _val_fraction(spec.option("val"))

    scores_csv = root / "Scores" / f"Scores_{attr}.csv"
    table = Table(scores_csv, "piq23")
    table.require("IMAGE PATH", "JOD", "SCENE")
    index = FileIndex(root)

    split_file: Path | None = None
    scene_split: dict[str, tuple[str, int]] = {}
    image_split: dict[str, tuple[str, int]] = {}
    if split_mode == "scene":
        split_file = root / "Test split" / "Scene Split.csv"
        scene_split = _read_split(split_file, "SCENE", ctx)
    elif split_mode == "device":
        split_file = root / "Test split" / "Device Split.csv"
        image_split = _read_split(split_file, "IMAGE", ctx)
        image_split_lower = {Path(k).stem.lower(): v for k, v in image_split.items()}

    records: list[ImageRecord] = []
    unlisted_scenes: set[str] = set()
    for line, row in table.rows(ctx):
        rel = row["image path"]
        scene = row["scene"]
        if not rel:
            ctx.problem("empty IMAGE PATH column", line=line, source=scores_csv)
            continue
        if not scene:
            ctx.problem("empty SCENE column", line=line, source=scores_csv)
            continue
        ok, jod = parse_score(row["jod"], ctx, line, scores_csv, column="JOD")
        if not ok:
            continue
        path = image_path(rel, root)
        if not path.is_file():
            path = index.find(rel) or path
        ctx.check_image(path, line, scores_csv)
        name = row.get("image") or rel.replace("\\", "/").rsplit("/", 1)[-1]

        split = None
        if split_mode == "scene":
            hit = scene_split.get(scene)  # exact: Indoor_Scene_1 never matches Indoor_Scene_12
            if hit is None:
                if scene not in unlisted_scenes:
                    unlisted_scenes.add(scene)
                    ctx.problem(f"scene {scene!r} is not listed in {split_file.name}", line=line, source=scores_csv)
            else:
                split = hit[0]
        elif split_mode == "device":
            hit = image_split.get(name) or image_split_lower.get(Path(name).stem.lower())
            if hit is None:
                ctx.problem(f"image {name!r} is not listed in {split_file.name}", line=line, source=scores_csv)
            else:
                split = hit[0]

        if kind_mode == "attribute":
            kind = row.get("attribute") or attr
        else:
            kind = row.get("condition") or row.get("attribute") or attr
        records.append(ImageRecord(path=path, score=jod, scene=scene, split=split, kind=kind, line=line))

    if val_frac > 0 and split_mode != "none":
        if split_mode == "scene":
            val_keys = _carve_val(sorted({r.scene for r in records if r.split == "train"}), val_frac)
            records = [_with_split(r, "val") if r.split == "train" and r.scene in val_keys else r for r in records]
        else:
            val_keys = _carve_val(sorted(str(r.path.name) for r in records if r.split == "train"), val_frac)
            records = [_with_split(r, "val") if r.split == "train" and r.path.name in val_keys else r for r in records]

    scenes_by_split: dict[str, int] = {}
    for split in sorted({r.split or "-" for r in records}):
        scenes_by_split[split] = len({r.scene for r in records if (r.split or "-") == split})
    info = {
        "source": "piq23",
        "root": str(root),
        "csv": str(scores_csv),
        "attribute": attr,
        "split": split_mode,
        "split_file": None if split_file is None else str(split_file),
        "val_fraction": val_frac,
        "score_name": "JOD (per scene: compare images within a scene only)",
        "scenes_per_split": scenes_by_split,
    }
    return make_dataset(spec.text, records, info)


def _with_split(record: ImageRecord, split: str) -> ImageRecord:
    return replace(record, split=split)
