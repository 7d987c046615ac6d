"""``biq2021:ROOT[?val=0.1&val_seed=0&labels=N&labels_seed=0]``: BIQ2021 exactly as its repository ships it.

BIQ2021 (Ahmed & Asif, J. Electronic Imaging 31(5) 053010, 2022): 12,000 real photos scored by 30 observers
in a lab. ROOT holds ``Images/`` and two CSVs, the official split:

- ``Train (Images and MOS).csv``: 10,000 rows, header ``Image Name,MOS,,`` (two empty trailing columns);
- ``Test (Images and MOS).csv``: 2,000 rows, ``Image Name,MOS``.

Names carry spaces and parentheses (``ss03 (3753).jpg``); one row names ``ss02 (1014).jpg`` for the file
``ss02 (1014).JPG``, so images are looked up by name case-insensitively. MOS is in [0, 1], higher is better.
The subset is the name's prefix, recorded per image as its group: ss01 (personal gallery, authentic flaws),
ss02 (deliberate capture faults), ss03 (Unsplash). No scenes (reports are global, broken down by subset).
BIQ2021 ships no val split: val is carved from the official train split (edgeiqa.data.valsplit); `labels=N`
keeps N train labels and makes the rest an unlabelled pool (edgeiqa.data.fewlabels).
"""

from __future__ import annotations

import re

from edgeiqa.data.loading import FileIndex, LoadContext, Table, make_dataset, parse_score, require_dir
from edgeiqa.data.records import ImageRecord
from edgeiqa.data.valsplit import SPLIT_OPTIONS, with_train_splits
from edgeiqa.errors import DatasetError

CSVS = {"train": "Train (Images and MOS).csv", "test": "Test (Images and MOS).csv"}
OPTIONS = dict(SPLIT_OPTIONS)
SUBSETS = {"ss01": "personal gallery (authentic camera and processing flaws)",
           "ss02": "deliberate capture faults (ISO, shutter, focus, motion, light)",
           "ss03": "Unsplash"}
_SUBSET = re.compile(r"^(ss0[123])\b", re.IGNORECASE)


def subset_of(name: str) -> str | None:
    m = _SUBSET.match(name.strip())
    return m.group(1).lower() if m else None


def load_biq2021(spec, ctx: LoadContext):
    root = require_dir(spec.target, "biq2021")
    missing = [name for name in CSVS.values() if not (root / name).is_file()]
    if missing:
        raise DatasetError(f"biq2021: {root} lacks {' and '.join(repr(m) for m in missing)}; expected the repository "
                           f"as cloned: Images/, {CSVS['train']!r}, {CSVS['test']!r}")
    index = FileIndex(root / "Images" if (root / "Images").is_dir() else root)
    records: list[ImageRecord] = []
    for split, name in CSVS.items():
        table = Table(root / name, "biq2021")
        table.require("Image Name", "MOS")
        for line, row in table.rows(ctx):
            image = row["image name"]
            if not image:
                ctx.problem("empty Image Name column", line=line, source=table.path)
                continue
            ok, mos = parse_score(row["mos"], ctx, line, table.path, column="MOS")
            if not ok or mos is None:
                if ok:
                    ctx.problem("empty MOS", line=line, source=table.path)
                continue
            path = index.find(image) or (index.root / image)
            ctx.check_image(path, line, table.path)
            records.append(ImageRecord(path=path, score=mos, split=split, group=subset_of(image), line=line))
    records, split_info = with_train_splits(spec, records)
    info = {"source": "biq2021", "root": str(root), "csv": [str(root / n) for n in CSVS.values()],
            "score_name": "MOS in [0, 1] (higher is better)", "groups": "subset (ss01 gallery, ss02 capture "
            "faults, ss03 Unsplash)", "citation": "Ahmed & Asif, J. Electronic Imaging 31(5) 053010, 2022", **split_info}
    return make_dataset(spec.text, records, info)
