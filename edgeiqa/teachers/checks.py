"""Up-front checks shared by `teachers train|pretrain|label` and `distill`: run before any model is built, any
teacher trained or any file written, each failing with one line (EdgeIQAError, exit 2). Light: no torch."""

from __future__ import annotations

import math
from pathlib import Path

from edgeiqa.errors import EdgeIQAError, choose_names, did_you_mean

ENSEMBLE_FILE = "ensemble.json"  # teachers.ensemble's name for it (that module imports torch)


def spec_paths(spec: str | None, flag: str = "--data") -> list[Path]:
    """The file or folder a dataset spec reads (checked to exist: the loader's light checks, no image read)."""
    if not spec:
        return []
    from edgeiqa.data.datasets import parse_spec, require_target
    from edgeiqa.data.loading import expand_path

    try:
        parsed = parse_spec(spec)
        require_target(parsed)
    except EdgeIQAError as exc:
        raise EdgeIQAError(f"{flag}: {exc}") from None
    return [expand_path(parsed.target)] if parsed.target else []


def require_teachers_dir(path: str | Path, flag: str = "--teachers") -> Path:
    """A teachers folder given to read must exist and be one edgeiqa wrote (`teachers train` or a distill run)."""
    from edgeiqa.outsafe import folder_kind

    p = Path(path)
    if not p.is_dir():
        what = "is a file" if p.exists() else "does not exist"
        raise EdgeIQAError(f"{flag} {path} {what}; run `edgeiqa teachers train --out {path}` first, or name the "
                           f"folder it wrote")
    # ensemble.json is what readers need; folders written before the marker carry it beside a card.json
    if not (p / ENSEMBLE_FILE).is_file() and folder_kind(p) != "teachers":
        raise EdgeIQAError(f"{flag} {path} is not an edgeiqa teachers folder (no {ENSEMBLE_FILE}); run "
                           f"`edgeiqa teachers train` first")
    return p


def parse_member_weights(text: str | None, members: list[str], left_out: list[dict] = ()) -> dict | None:
    """`--ensemble-weights a=0.7,b=0.3` against the members that will train: names, finite weights >= 0, sum > 0."""
    if not text:
        return None
    out = {}
    dropped = {d["member"]: d["left_out"] for d in left_out}
    for part in text.split(","):
        name, _, value = (s.strip() for s in part.partition("="))
        try:
            w = float(value)
        except ValueError:
            raise EdgeIQAError(f"bad --ensemble-weights entry {part!r}: expected NAME=NUMBER") from None
        if name in dropped:
            raise EdgeIQAError(f"--ensemble-weights names {name}, which is left out ({dropped[name]})")
        if name not in members:
            raise EdgeIQAError(f"--ensemble-weights: {name!r} is not a member trained here (members: "
                               f"{', '.join(members)}){did_you_mean(name, members)}")
        if not math.isfinite(w) or w < 0:
            raise EdgeIQAError(f"--ensemble-weights {name}={value}: a weight must be a finite number >= 0")
        out[name] = w
    if not sum(out.values()) > 0:
        raise EdgeIQAError("--ensemble-weights: at least one weight must be > 0")
    return out


def check_split(text: str | None) -> list[str] | None:
    """`--split pool,test`: every name one of the dataset splits (did-you-mean otherwise)."""
    if text is None:
        return None
    from edgeiqa.data.records import SPLITS

    return choose_names(text, SPLITS, "--split", "split")
