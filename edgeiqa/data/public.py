"""Loaders for public IQA sets that are one score per image with no scenes: UHD-IQA, KonIQ-10k, GFIQA.

Each CSV names images by file name only; the images are found by name in any subfolder of ROOT
(indexed once per load), so the various ways the archives unpack all work.

``uhd-iqa:ROOT``
    Metadata: every ``*metadata*.csv`` under ROOT (usually one; several are read in name order), quoted
    columns ``image_name,quality_mos,set,orig_width,orig_height,...``. ``set`` training / validation /
    test -> split train / val / test (no ``set`` column -> no split). Score = ``quality_mos``, which must
    lie in [0, 1]. Images anywhere under ROOT, e.g. ``ROOT/challenge/training/<name>``. No scenes.

``koniq:ROOT[?res=1024x768|512x384&score=mos|zscore]``
    Scores: ``koniq10k_scores_and_distributions.csv`` (at ROOT or below) with
    ``image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore``. Score = ``MOS`` (1-5; ``score=zscore``
    uses ``MOS_zscore``). Images in ``ROOT/1024x768/`` (preferred) or ``ROOT/512x384/`` or any subfolder;
    ``res`` picks which copy wins when both are present. Split: when
    ``koniq10k_distributions_sets.csv`` (``image_name,...,set``) exists, its ``set`` column
    (training / validation / test) gives train / val / test; otherwise there is no split (None).
    Images absent from the sets file get no split (counted in ``info["unsplit"]``).

``gfiqa:ROOT``
    A face IQA set. The labels CSV is the first CSV (shallowest, then by name) under ROOT whose header
    has an image column (``image``, ``img_name``, ``image_name`` or ``filename``) and a ``mos`` column
    (case-insensitive); an optional ``split`` or ``set`` column gives the split. A cell with a folder part
    is relative to the CSV's folder. A bare file name is looked for in ``ROOT/images/``, ``ROOT/image/``,
    beside the CSV, then anywhere under ROOT. No scenes.
"""

from __future__ import annotations

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

KONIQ_OPTIONS = {"res": ("1024x768", "512x384"), "score": ("mos", "zscore")}


def _csvs(root: Path, pattern: str) -> list[Path]:
    """CSV files matching `pattern` under root, shallowest first then by path."""
    found = [p for p in root.rglob(pattern) if p.is_file() and p.suffix.lower() == ".csv"]
    return sorted(found, key=lambda p: (len(p.relative_to(root).parts), str(p).lower()))


# ----------------------------------------------------------------------------------------------------
# UHD-IQA


def load_uhd_iqa(spec, ctx: LoadContext):
    root = require_dir(spec.target, "uhd-iqa")
    csvs = _csvs(root, "*metadata*")
    if not csvs:
        raise DatasetError(f"uhd-iqa: no metadata CSV (*metadata*.csv) under {root}")
    index = FileIndex(root)
    records: list[ImageRecord] = []
    for csv_path in csvs:
        table = Table(csv_path, "uhd-iqa")
        table.require("image_name", "quality_mos")
        for line, row in table.rows(ctx):
            name = row["image_name"]
            if not name:
                ctx.problem("empty image_name column", line=line, source=csv_path)
                continue
            ok, mos = parse_score(row["quality_mos"], ctx, line, csv_path, column="quality_mos")
            ok_split, split = parse_split(row.get("set", ""), ctx, line, csv_path, column="set")
            if not (ok and ok_split):
                continue
            if mos is not None and not 0.0 <= mos <= 1.0:
                ctx.problem(f"quality_mos {mos} is outside [0, 1]", line=line, source=csv_path)
                continue
            path = index.find(name) or image_path(name, root)
            ctx.check_image(path, line, csv_path)
            records.append(ImageRecord(path=path, score=mos, split=split, line=line))
    info = {
        "source": "uhd-iqa",
        "root": str(root),
        "csv": str(csvs[0]) if len(csvs) == 1 else [str(c) for c in csvs],
        "score_name": "MOS in [0, 1]",
    }
    return make_dataset(spec.text, records, info)


# ----------------------------------------------------------------------------------------------------
# KonIQ-10k

KONIQ_SCORES = "koniq10k_scores_and_distributions.csv"
KONIQ_SETS = "koniq10k_distributions_sets.csv"


def load_koniq(spec, ctx: LoadContext):
    root = require_dir(spec.target, "koniq")
    found = _csvs(root, KONIQ_SCORES)
    if not found:
        raise DatasetError(f"koniq: {KONIQ_SCORES} not found under {root}")
    scores_csv = found[0]
    res = (spec.option("res") or "1024x768").lower()
    prefer = (res,) + tuple(r for r in KONIQ_OPTIONS["res"] if r != res)
    score_col = "mos_zscore" if (spec.option("score") or "mos").lower() == "zscore" else "mos"
    index = FileIndex(root, prefer=prefer)

    sets: dict[str, str] = {}
    sets_found = _csvs(root, KONIQ_SETS)
    sets_csv = sets_found[0] if sets_found else None
    if sets_csv is not None:
        st = Table(sets_csv, "koniq")
        st.require("image_name", "set")
        for line, row in st.rows(ctx):
            ok, split = parse_split(row["set"], ctx, line, sets_csv, column="set")
            if ok and split and row["image_name"]:
                sets[row["image_name"]] = split

    table = Table(scores_csv, "koniq")
    table.require("image_name", "MOS" if score_col == "mos" else "MOS_zscore")
    records: list[ImageRecord] = []
    unsplit = 0
    for line, row in table.rows(ctx):
        name = row["image_name"]
        if not name:
            ctx.problem("empty image_name column", line=line, source=scores_csv)
            continue
        ok, score = parse_score(row[score_col], ctx, line, scores_csv, column="MOS" if score_col == "mos" else "MOS_zscore")
        if not ok:
            continue
        split = sets.get(name)
        if sets_csv is not None and split is None:
            unsplit += 1
        path = index.find(name) or image_path(name, root / res)
        ctx.check_image(path, line, scores_csv)
        records.append(ImageRecord(path=path, score=score, split=split, line=line))
    info = {
        "source": "koniq",
        "root": str(root),
        "csv": str(scores_csv),
        "split_file": None if sets_csv is None else str(sets_csv),
        "score_name": "MOS (1-5)" if score_col == "mos" else "MOS z-score",
        "resolution": res,
    }
    if sets_csv is not None:
        info["unsplit"] = unsplit
    return make_dataset(spec.text, records, info)


# ----------------------------------------------------------------------------------------------------
# GFIQA

_GF_IMAGE_COLS = ("image", "img_name", "image_name", "filename")


def load_gfiqa(spec, ctx: LoadContext):
    root = require_dir(spec.target, "gfiqa")
    table = None
    for csv_path in _csvs(root, "*.csv"):
        try:
            candidate = Table(csv_path, "gfiqa")
        except DatasetError:
            continue
        if candidate.first_of(*_GF_IMAGE_COLS) and candidate.has("mos"):
            table = candidate
            break
    if table is None:
        raise DatasetError(
            f"gfiqa: no labels CSV under {root} with an image column ({', '.join(_GF_IMAGE_COLS)}) and a 'mos' column"
        )
    csv_path = table.path
    image_col = table.first_of(*_GF_IMAGE_COLS)
    split_col = table.first_of("split", "set")
    index = FileIndex(root)
    folders = [root / "images", root / "image", csv_path.parent]
    records: list[ImageRecord] = []
    for line, row in table.rows(ctx):
        cell = row[image_col]
        if not cell:
            ctx.problem(f"empty {image_col} column", line=line, source=csv_path)
            continue
        ok, mos = parse_score(row["mos"], ctx, line, csv_path, column="mos")
        ok_split, split = parse_split(row.get(split_col, "") if split_col else "", ctx, line, csv_path,
                                      column=split_col or "split")
        if not (ok and ok_split):
            continue
        if "/" in cell.replace("\\", "/"):
            path = image_path(cell, csv_path.parent)
        else:
            path = next((f / cell for f in folders if (f / cell).is_file()), None)
            path = path or index.find(cell) or (root / "images" / cell)
        ctx.check_image(path, line, csv_path)
        records.append(ImageRecord(path=path, score=mos, split=split, line=line))
    info = {"source": "gfiqa", "root": str(root), "csv": str(csv_path), "score_name": "MOS"}
    return make_dataset(spec.text, records, info)
