"""Datasets behind one spec string.

Spec syntax
-----------
``NAME`` or ``NAME:TARGET`` optionally followed by ``?key=value&key=value`` options::

    sample                                  the embedded sample set (built once into the cache)
    csv:labels.csv                          image,score[,scene,split,kind]; paths relative to the CSV
    piq23:/data/PIQ2023?attr=details&split=device
    uhd-iqa:/data/UHD-IQA
    koniq:/data/koniq10k
    gfiqa:/data/GFIQA
    biq2021:/data/BIQ2021?val=0.1           BIQ2021 as cloned (official split; val carved from train)
    folder:/photos                          every image below the folder, unlabelled

A bare path is accepted as a shortcut: an existing ``*.csv`` file means ``csv:PATH`` and an existing
folder means ``folder:PATH``. ``~`` and ``$VARS`` in paths are expanded. Option names and values are
case-insensitive; an unknown name or option is an error that lists what is accepted (and the closest
known name). The options each loader takes are in ``LOADERS`` (``edgeiqa data info --help`` lists them).

Every loader returns a `Dataset` of `ImageRecord`s; `Dataset.info` carries facts for cards and
manifests (``source``, ``root``/``csv``, ``score_name``, ``score_range``, ``n_images``, ``n_labelled``...).
Row-level faults are collected (see `edgeiqa.data.loading`) and raised together as one DatasetError
that names the file and line; `edgeiqa.data.check.check_dataset` reports them instead.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

from edgeiqa.data.images import IMAGE_EXTENSIONS, iter_image_files
from edgeiqa.data.loading import (
    LoadContext,
    Table,
    expand_path,
    image_path,
    make_dataset,
    parse_score,
    parse_split,
    require_dir,
)
from edgeiqa.data.records import Dataset, ImageRecord
from edgeiqa.data.valsplit import SPLIT_OPTIONS, with_train_splits
from edgeiqa.errors import DatasetError, did_you_mean
from edgeiqa.registry import Registry

Loader = Callable[["DatasetSpec", LoadContext], Dataset]


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # registry key: sample, csv, piq23, ...
    target: str  # path after the colon ('' for sample)
    options: dict = field(default_factory=dict)
    text: str = ""  # the spec as the user typed it

    def option(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)


@dataclass(frozen=True)
class LoaderInfo:
    name: str
    load: Loader
    usage: str
    help: str
    needs_target: bool = True
    options: dict = field(default_factory=dict)  # option -> allowed values (tuple) or a description (str)


LOADERS: Registry[LoaderInfo] = Registry("dataset", LoaderInfo)
register_loader = LOADERS.add  # one row per loader, at the end of this module; a name given twice is a ValueError


_OPTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*=[^&]*(&[A-Za-z_][A-Za-z0-9_-]*=[^&]*)*$")


def _known() -> str:
    return ", ".join(info.usage for info in LOADERS.values())


def _unknown(name: str, spec: str) -> DatasetError:
    hint = did_you_mean(name.lower(), LOADERS, cutoff=0.5)
    return DatasetError(f"unknown dataset {name!r} in spec {spec!r}{hint} Known: {_known()}")


def parse_spec(spec: str) -> DatasetSpec:
    """Split a spec string into name, target and options; validate the name and the options."""
    text = (spec or "").strip()
    if not text:
        raise DatasetError(f"empty dataset spec. Known: {_known()}")
    options: dict[str, str] = {}
    body = text
    if "?" in text:
        head, _, query = text.rpartition("?")
        if _OPTION_RE.match(query):
            body = head
            for key, value in parse_qsl(query, keep_blank_values=True):
                options[key.strip().lower()] = value.strip()
    name, sep, target = body.partition(":")
    # 'C:\data\x.csv' is a Windows path, not a dataset named 'c'.
    if sep and len(name) == 1 and target[:1] in ("\\", "/"):
        name, sep, target = body, "", ""
    if not sep:
        key = name.strip().lower()
        if key in LOADERS and not LOADERS[key].needs_target:
            return _validated(DatasetSpec(key, "", options, text))
        p = expand_path(body)
        if p.is_file() and p.suffix.lower() == ".csv":
            return _validated(DatasetSpec("csv", body, options, text))
        if p.is_dir():
            return _validated(DatasetSpec("folder", body, options, text))
        if key in LOADERS:
            raise DatasetError(f"dataset {key!r} needs a path: {LOADERS[key].usage}")
        if any(c in body for c in "/\\.") and not p.exists():
            raise DatasetError(f"dataset spec {text!r}: no such file or folder: {p}. Known: {_known()}")
        raise _unknown(name, text)
    key = name.strip().lower()
    if key not in LOADERS:
        raise _unknown(name, text)
    info = LOADERS[key]
    target = target.strip()
    if info.needs_target and not target:
        raise DatasetError(f"dataset {key!r} needs a path: {info.usage}")
    return _validated(DatasetSpec(key, target, options, text))


def unlabelled_pool(records: list[ImageRecord]) -> list[ImageRecord]:
    """The one rule for the images teachers pseudo-label (distill's student pool, `teachers train --self-train`):
    every `pool` record (its ground truth, if any, is held back), and every unlabelled record outside val and
    test (no split, or `train`). Val and test images are never pseudo-labelled: they judge the models."""
    return [r for r in records if r.split == "pool" or (r.score is None and r.split not in ("val", "test"))]


def require_target(spec: DatasetSpec) -> None:
    """A spec's file or folder must exist: the same error (exit 2) as a bare path that does not exist."""
    if LOADERS[spec.name].needs_target and not expand_path(spec.target).exists():
        raise DatasetError(f"dataset spec {spec.text!r}: no such file or folder: {expand_path(spec.target)}")


def _validated(spec: DatasetSpec) -> DatasetSpec:
    allowed = LOADERS[spec.name].options
    for key, value in spec.options.items():
        if key not in allowed:
            hint = did_you_mean(key, allowed, cutoff=0.5)
            accepted = ", ".join(allowed) if allowed else "none"
            raise DatasetError(f"dataset {spec.name!r}: unknown option {key!r}{hint} (accepted: {accepted})")
        choices = allowed[key]
        if isinstance(choices, tuple) and value.lower() not in choices:
            raise DatasetError(
                f"dataset {spec.name!r}: option {key}={value!r} must be one of {', '.join(choices)}"
            )
    return spec


def load_dataset(spec: str, check_files: bool = True) -> Dataset:
    """Load a dataset from its spec string.

    With `check_files` every image path must exist (a missing one is an error naming it and its CSV
    line). Bad rows are collected; one DatasetError names the first and counts the rest, on one line.
    """
    dataset, ctx = load_with_problems(spec, check_files=check_files)
    if ctx.problems:  # one line (issue 21): the first problem, how many more, and where the full list is
        more = f" (and {len(ctx.problems) - 1} more)" if len(ctx.problems) > 1 else ""
        first = " ".join(str(ctx.problems[0]).split())
        raise DatasetError(f"{spec}: {first}{more}; `edgeiqa data check {spec}` lists every problem")
    return dataset


def load_with_problems(spec: str, check_files: bool = True) -> tuple[Dataset, LoadContext]:
    """Load without raising on bad rows or missing images: they are returned in `ctx.problems`.

    Raises DatasetError only for faults that stop loading altogether (bad spec, missing CSV or column).
    """
    parsed = parse_spec(spec)
    require_target(parsed)
    ctx = LoadContext(spec=parsed.text, check_files=check_files)
    dataset = LOADERS[parsed.name].load(parsed, ctx)
    return dataset, ctx


# ----------------------------------------------------------------------------------------------------
# csv:PATH


def load_csv(path: str | Path, spec: str | None = None, ctx: LoadContext | None = None) -> Dataset:
    """Read a labels CSV: `image,score` required; `scene`, `split`, `kind` optional; other columns ignored.

    Image paths are relative to the CSV's folder (absolute paths and Windows separators allowed).
    An empty score means unlabelled (score None). Split must be train/val/test/pool (training and
    validation are accepted as aliases). Does not check that images exist (`load_dataset` does).
    """
    strict = ctx is None
    ctx = ctx or LoadContext(spec=spec or f"csv:{path}", check_files=False)
    csv_path = expand_path(str(path))
    table = Table(csv_path, "csv")
    table.require("image", "score")
    base = csv_path.parent
    records: list[ImageRecord] = []
    for line, row in table.rows(ctx):
        cell = row.get("image", "")
        if not cell:
            ctx.problem("empty image column", line=line, source=csv_path)
            continue
        ok_score, score = parse_score(row.get("score", ""), ctx, line, csv_path)
        ok_split, split = parse_split(row.get("split", ""), ctx, line, csv_path)
        if not (ok_score and ok_split):
            continue
        path = image_path(cell, base)
        ctx.check_image(path, line, csv_path)
        records.append(
            ImageRecord(
                path=path,
                score=score,
                scene=row.get("scene") or None,
                split=split,
                kind=row.get("kind") or None,
                line=line,
            )
        )
    if strict and ctx.problems:
        raise DatasetError(f"{csv_path}: " + "; ".join(str(p) for p in ctx.problems[:5]))
    return make_dataset(spec or f"csv:{path}", records, {"source": "csv", "csv": str(csv_path), "root": str(base)})


def _load_csv_spec(spec: DatasetSpec, ctx: LoadContext) -> Dataset:
    """A CSV: `labels=` keeps some train labels, and without a val split val is carved from train (edgeiqa.data.valsplit)."""
    ds = load_csv(spec.target, spec=spec.text, ctx=ctx)
    ds.records, split_info = with_train_splits(spec, ds.records)
    ds.info.update(split_info)
    return ds


# ----------------------------------------------------------------------------------------------------
# folder:DIR


def _load_folder(spec: DatasetSpec, ctx: LoadContext) -> Dataset:
    root = require_dir(spec.target, "folder")
    records = [ImageRecord(path=p) for p in iter_image_files([root], recursive=True)]
    if not records:
        raise DatasetError(f"folder: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    return make_dataset(spec.text, records, {"source": "folder", "root": str(root)})


# ----------------------------------------------------------------------------------------------------
# sample


def _load_sample(spec: DatasetSpec, ctx: LoadContext) -> Dataset:
    try:
        from edgeiqa.data.sample import build_sample
    except ImportError as exc:  # pragma: no cover - only while the sample builder is missing
        raise DatasetError(f"the sample set builder is not available: {exc}") from None
    csv_path = build_sample(progress=sys.stderr.isatty())
    ds = load_csv(csv_path, spec=spec.text, ctx=ctx)
    ds.info.update({"source": "sample", "score_name": "severity-derived quality (higher is better)"})
    return ds


# ----------------------------------------------------------------------------------------------------
# registry
# (piq23/public import only edgeiqa.data.loading, so registering them here makes no import cycle)

from edgeiqa.data import biq2021, piq23, public  # noqa: E402

register_loader(LoaderInfo("sample", _load_sample, "sample", "the embedded sample set (offline, built once, cached)",
                           needs_target=False))
register_loader(LoaderInfo("csv", _load_csv_spec, "csv:PATH[?val=0.1&val_seed=0&labels=N&labels_seed=0]",
                           "a CSV with image,score[,scene,split,kind]", options=dict(SPLIT_OPTIONS)))
register_loader(LoaderInfo("piq23", piq23.load_piq23, "piq23:ROOT[?attr=overall|details|exposure&split=scene|device]",
                           "PIQ23 portraits with the official scene or device split", options=piq23.OPTIONS))
register_loader(LoaderInfo("uhd-iqa", public.load_uhd_iqa, "uhd-iqa:ROOT", "UHD-IQA (4K photos, MOS in [0, 1])"))
register_loader(LoaderInfo("koniq", public.load_koniq, "koniq:ROOT[?res=1024x768|512x384]", "KonIQ-10k (MOS 1-5)",
                           options=public.KONIQ_OPTIONS))
register_loader(LoaderInfo("gfiqa", public.load_gfiqa, "gfiqa:ROOT", "GFIQA face images (MOS)"))
register_loader(LoaderInfo("biq2021", biq2021.load_biq2021, "biq2021:ROOT[?val=0.1&val_seed=0&labels=N]",
                           "BIQ2021 real photos (MOS in [0, 1]; official train/test, val carved from train; subsets "
                           "ss01/ss02/ss03)", options=biq2021.OPTIONS))
register_loader(LoaderInfo("folder", _load_folder, "folder:DIR", "every image under DIR, unlabelled"))
