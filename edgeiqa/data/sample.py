"""The embedded `sample` dataset: real photos shipped inside dependency wheels, degraded by a ladder.

Nothing is downloaded. The source photos are files inside installed packages (scikit-image's
`skimage/data`, matplotlib's `mpl-data/sample_data`, scikit-learn's `datasets/images`), read straight from
the package folders; the packages are located with `importlib.util.find_spec`, never imported, and
`skimage.data` functions (which may fetch with pooch) are never called.

Each photo is shrunk so its longer side is at most 512 px (never enlarged: upscaling would soften the
reference), then centre-cropped so both sides are multiples of 32. For every photo x distortion kind there
is one *scene*: the original plus severities 1..6 of that kind (7 rows). The original is written once per
photo (`images/<photo>/original.png`) and referenced by every scene of that photo, so the CSV has more
rows than unique files. Scores come from the severity on a MOS-like scale, `score = 5 - 4 * severity / 6`
(original 5.0, worst 1.0); as in PIQ23 only the order within a scene is meaningful.

Which kinds (decision, sample-v2): the kinds come from the degradation library
(`edgeiqa.data.degradations`, 36 kinds in 8 groups). Every photo still gets SCENES_PER_PHOTO = 9 scenes,
so the main job's size and time stay those of sample-v1: one kind from each of the 8 groups, plus a
ninth from group number `photo index mod 8` (a second kind of that group). Inside a group the kinds are
tried in a rotation that starts at `photo index mod len(group)`, so neighbouring photos get different
kinds and, over the 12 photos, every kind of the library appears at least once (the tests check it on
the built set); test, val and pool photos see all 8 groups. A ladder is kept only if it is measurable on
that photo: PSNR to the original below MAX_PSNR_DB at severity 1 and falling by at least MIN_STEP_DB at
every step (a colour kind cannot act on a greyscale photo); otherwise the rotation moves on to the
group's next kind. The manifest lists every photo's kinds and the ones skipped.

Splits are by photo and fixed in the table below, so test scenes show photos no model has seen:
test (3 photos, one a portrait), val (2), pool (2; the unlabelled pool that teachers pseudo-label: its
true scores stay in the CSV so the pseudo-labels can be checked, loaders drop them) and train (the rest).

Build guarantees:
- deterministic: every scene uses a seed derived from (photo, kind), the same at each severity, and
  images are written as PNG; two builds give byte-identical files, recorded with their sha256 in `manifest.json`;
- cached: a root whose `labels.csv` and `manifest.json` (same BUILDER_VERSION) exist is returned at once;
- atomic: the set is built in a temporary sibling folder and renamed into place (`edgeiqa.fileio.atomic_path`),
  so an interrupted build never leaves a partial set (leftover temp folders of dead processes are removed by the
  next build);
- never deletes what it did not write (docs/security.md): the set carries edgeiqa's `.edgeiqa.json` marker
  (kind `sample`), and a `<root>` that is neither new, empty, marked nor a sample manifest's folder is refused
  (one line, exit 2) before any work, with or without `force`; only temp folders holding nothing but the
  builder's files are cleaned up.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image

import edgeiqa.data.degradations  # noqa: F401  registers the library's kinds (OpenCV: the [train] extra)
from edgeiqa.data import distortions
from edgeiqa.data.degradations.groups import GROUPS
from edgeiqa.data.images import load_image
from edgeiqa.errors import DatasetError

BUILDER_VERSION = "sample-v2.0"
SAMPLE_DIRNAME = "sample-v2"
MAX_SIDE = 512
MULTIPLE = 32
SEED = 20240611
SCENES_PER_PHOTO = 9  # one per group (8) plus one: the size of sample-v1, so the main job's time stays
MAX_PSNR_DB = 50.0  # severity 1 must differ measurably from the original ...
MIN_STEP_DB = 0.1  # ... and every further severity be measurably further from it
SEVERITIES = tuple(range(1, distortions.SEVERITIES + 1))
COLUMNS = ("image", "score", "scene", "split", "kind", "photo", "severity")


@dataclass(frozen=True)
class Photo:
    name: str
    package: str  # the installed package that ships the file
    relpath: str  # path inside that package's folder
    split: str
    portrait: bool
    content: str


# Fixed split by photo. test: a portrait, a close-up still life, a landscape with architecture.
# val: a (greyscale) person outdoors and an outdoor scene. pool: an animal and a flower close-up.
PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "skimage", "data/astronaut.png", "train", True, "portrait, studio flag background"),
    Photo("motorcycle_left", "skimage", "data/motorcycle_left.png", "train", False, "motorbike, indoor product shot"),
    Photo("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg", "train", False, "astronomy, dark sky"),
    Photo("grass", "skimage", "data/grass.png", "train", False, "grass texture, greyscale"),
    Photo("brick", "skimage", "data/brick.png", "train", False, "brick wall texture, greyscale"),
    Photo("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "test", True, "portrait, uniform"),
    Photo("coffee", "skimage", "data/coffee.png", "test", False, "cup of coffee, still life"),
    Photo("china", "sklearn", "datasets/images/china.jpg", "test", False, "temple and landscape"),
    Photo("camera", "skimage", "data/camera.png", "val", True, "cameraman outdoors, greyscale"),
    Photo("rocket", "skimage", "data/rocket.jpg", "val", False, "rocket launch pad, outdoor"),
    Photo("chelsea", "skimage", "data/chelsea.png", "pool", False, "cat, close-up"),
    Photo("flower", "sklearn", "datasets/images/flower.jpg", "pool", False, "flower close-up"),
)
# A photo's place in the table picks its kinds; taken once here, so a build of a subset gives the same scenes.
PHOTO_INDEX = {p.name: i for i, p in enumerate(PHOTOS)}


def score_for(severity: int) -> float:
    """MOS-like score from the ladder position: 5.0 for the original down to 1.0 at severity 6."""
    return round(5.0 - 4.0 * severity / distortions.SEVERITIES, 4)


def sample_root() -> Path:
    """`$EDGEIQA_CACHE/sample-v2`, default `~/.cache/edgeiqa/sample-v2`."""
    cache = os.environ.get("EDGEIQA_CACHE")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache" / "edgeiqa"
    return base / SAMPLE_DIRNAME


def photo_source(photo: Photo) -> Path:
    """Where the installed package keeps the photo; DatasetError naming the file if it is missing."""
    spec = find_spec(photo.package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"sample photo {photo.name!r}: package {photo.package!r} is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / photo.relpath
    if not path.is_file():
        raise DatasetError(f"sample photo {photo.name!r}: {path} is missing from the installed {photo.package!r}")
    return path


def prepare_photo(path: Path) -> np.ndarray:
    """RGB uint8, longer side at most MAX_SIDE (Lanczos, never enlarged), sides cropped to a multiple of 32."""
    img = load_image(path)
    h, w = img.shape[:2]
    scale = min(1.0, MAX_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(MULTIPLE, int(round(w * scale))), max(MULTIPLE, int(round(h * scale))))
        img = np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS))
        h, w = img.shape[:2]
    ch, cw = max(MULTIPLE, h // MULTIPLE * MULTIPLE), max(MULTIPLE, w // MULTIPLE * MULTIPLE)
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(img[top : top + ch, left : left + cw])


def scene_seed(photo: str, kind: str) -> int:
    """One seed per scene, reused at every severity: the levels share their random draws (a motion blur's
    direction, a noise field, the shuffled patches) and differ only in amount, as a ladder should."""
    digest = hashlib.sha256(f"{SEED}/{photo}/{kind}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _write(dest: Path, rel: str, data: bytes, hashes: dict[str, str]) -> None:
    path = dest / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    hashes[rel] = hashlib.sha256(data).hexdigest()


def kind_rotation(index: int, group: str) -> list[str]:
    """The group's kinds in the order photo number `index` tries them: the group's list, started at index mod size."""
    kinds = GROUPS[group]
    start = index % len(kinds)
    return list(kinds[start:] + kinds[:start])


def ladder_is_measurable(original: np.ndarray, ladder: list[np.ndarray]) -> bool:
    """PSNR to the original below MAX_PSNR_DB at severity 1 and falling by >= MIN_STEP_DB at every step."""
    psnrs = [_psnr(original, img) for img in ladder]
    return psnrs[0] < MAX_PSNR_DB and all(a - b >= MIN_STEP_DB for a, b in zip(psnrs, psnrs[1:]))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    with np.errstate(divide="ignore"):  # identical images: inf, which the checks above read as "no change"
        return float(peak_signal_noise_ratio(a, b, data_range=255))


def _ladder(img: np.ndarray, photo: str, kind: str) -> list[np.ndarray]:
    return [distortions.apply(img, kind, sev, np.random.default_rng(scene_seed(photo, kind))) for sev in SEVERITIES]


def build_photo(photo: Photo, dest: Path, on_image=None) -> tuple[list[dict], dict[str, str], dict]:
    """Write one photo's original and its SCENES_PER_PHOTO degraded ladders under `dest`.

    Returns (CSV rows, {relpath: sha256}, {"kinds": [...], "skipped": {kind: reason}}) — the plan the
    manifest records. Kinds follow the group rotation of the module docstring.
    """
    img = prepare_photo(photo_source(photo))
    index = PHOTO_INDEX[photo.name]
    hashes: dict[str, str] = {}
    original = f"images/{photo.name}/original.png"
    _write(dest, original, _png_bytes(img), hashes)
    if on_image:
        on_image()
    groups = list(GROUPS)
    extra = groups[index % len(groups)]  # the group that gives this photo its ninth scene
    wanted = {g: 1 + (g == extra) for g in groups}
    assert sum(wanted.values()) == SCENES_PER_PHOTO
    rows: list[dict] = []
    plan: dict = {"kinds": [], "skipped": {}}
    for group in groups:
        kept = 0
        for kind in kind_rotation(index, group):
            if kept == wanted[group]:
                break
            ladder = _ladder(img, photo.name, kind)
            if not ladder_is_measurable(img, ladder):
                plan["skipped"][kind] = "PSNR to the original does not fall measurably with severity on this photo"
                continue
            kept += 1
            plan["kinds"].append(kind)
            scene = f"{photo.name}-{kind}"
            base = {"scene": scene, "split": photo.split, "kind": kind, "photo": photo.name}
            rows.append({"image": original, "score": score_for(0), **base, "severity": 0})
            for sev, out in zip(SEVERITIES, ladder):
                rel = f"images/{photo.name}/{kind}_{sev}.png"
                _write(dest, rel, _png_bytes(out), hashes)
                rows.append({"image": rel, "score": score_for(sev), **base, "severity": sev})
                if on_image:
                    on_image()
        if kept < wanted[group]:
            raise DatasetError(f"sample photo {photo.name!r}: only {kept} measurable kind(s) of group {group!r}, "
                               f"{wanted[group]} needed")
    return rows, hashes, plan


def _manifest(photos, rows, hashes, plans) -> dict:
    used = {k for plan in plans.values() for k in plan["kinds"]}
    return {
        "builder_version": BUILDER_VERSION,
        "score": "5 - 4 * severity / 6 (original 5.0, severity 6 -> 1.0); order within a scene is what counts",
        "scene": "<photo>-<kind>: the original plus severities 1..6",
        "kind_choice": f"{SCENES_PER_PHOTO} per photo from the degradation library: one per group plus one from group "
                       "(photo index mod 8), each group's kinds tried in a rotation started at photo index mod group size; "
                       f"a ladder is kept when PSNR to the original is < {MAX_PSNR_DB:g} dB at severity 1 and falls by "
                       f">= {MIN_STEP_DB:g} dB per step",
        "kinds": [k for ks in GROUPS.values() for k in ks if k in used],
        "groups": {g: list(ks) for g, ks in GROUPS.items()},
        "severities": list(SEVERITIES),
        "photos": [
            {"name": p.name, "source": f"{p.package}/{p.relpath}", "split": p.split, "portrait": p.portrait,
             "content": p.content, "kinds": plans[p.name]["kinds"], "skipped": plans[p.name]["skipped"]}
            for p in photos
        ],
        "n_rows": len(rows),
        "files": dict(sorted(hashes.items())),
    }


def _is_complete(root: Path) -> bool:
    csv_path, man_path = root / "labels.csv", root / "manifest.json"
    if not (csv_path.is_file() and man_path.is_file()):
        return False
    try:
        manifest = json.loads(man_path.read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("builder_version") != BUILDER_VERSION:
        return False
    return all((root / rel).is_file() for rel in manifest.get("files", {}))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# What a build writes into its folder: a temp folder holding nothing else is an interrupted build.
BUILD_ENTRIES = frozenset({"images", "labels.csv", "manifest.json", ".edgeiqa.json"})


def is_own_sample(root: Path) -> bool:
    """edgeiqa wrote `root` as a sample set: its marker says so, or (sets built before the marker) its manifest."""
    from edgeiqa.outsafe import MARKER, folder_kind

    if (root / MARKER).is_file():
        return folder_kind(root) == "sample"
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("builder_version", "")).startswith("sample-")


def _is_build_temp(tmp: Path) -> bool:
    try:
        return tmp.is_dir() and not tmp.is_symlink() and {e.name for e in tmp.iterdir()} <= BUILD_ENTRIES
    except OSError:
        return False


def check_sample_root(root: Path) -> None:
    """Before any work: `root` is new, empty or an edgeiqa sample set, and its parent is writable; else one line."""
    from edgeiqa.outsafe import OutputRefused, check_writable

    flag = "sample set folder"
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        what = "a link" if root.is_symlink() else "a file"
        raise OutputRefused(f"{flag} {root} is {what}, not a folder edgeiqa wrote; set EDGEIQA_CACHE to another place")
    if root.is_dir() and any(root.iterdir()) and not is_own_sample(root):
        raise OutputRefused(f"{flag} {root} exists and edgeiqa did not write it; edgeiqa never replaces a folder it "
                            f"did not write: move it, or set EDGEIQA_CACHE to another place")
    check_writable(root, flag=flag)


def _remove_stale_temps(root: Path) -> None:
    """Remove what interrupted builds left beside `root` (a dead process, or an earlier one with this pid): temporary
    folders holding nothing but the builder's files (`atomic_path`'s, and the `<root>.tmp-<pid>` ones of builds
    before it) and swapped-out sample sets. Anything else under such a name is kept."""
    from edgeiqa.fileio import sibling

    patterns = ((sibling(root, "tmp", "*").name, False), (f"{root.name}.tmp-*", False), (sibling(root, "old", "*").name, True))
    for pattern, swapped_out in patterns:
        for left in root.parent.glob(pattern):
            pid = left.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or (int(pid) != os.getpid() and _pid_alive(int(pid))):
                continue
            if _is_build_temp(left) or (swapped_out and left.is_dir() and not left.is_symlink() and is_own_sample(left)):
                shutil.rmtree(left, ignore_errors=True)


class _BuiltMeanwhile(Exception):
    """A concurrent build of the same version finished first: its files are identical, so it is kept."""


def build_sample(root: Path | None = None, force: bool = False, progress: bool = True) -> Path:
    """Build (or reuse) the sample set under `root` (default `sample_root()`); return its `labels.csv`."""
    from edgeiqa.fileio import atomic_path, sibling
    from edgeiqa.outsafe import OutputRefused, mark_dir

    root = Path(root) if root is not None else sample_root()
    if not force and _is_complete(root):
        return root / "labels.csv"
    check_sample_root(root)
    if root.is_dir() and any(root.iterdir()):
        mark_dir(root, "sample")  # a set from before the marker: atomic_path replaces only a folder marked as its kind
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root)
    if sibling(root, "tmp").exists() or sibling(root, "tmp").is_symlink():  # atomic_path would delete it
        raise OutputRefused(f"{sibling(root, 'tmp')} exists and edgeiqa did not write it: move it, then build again")
    photos = PHOTOS
    for p in photos:  # fail before any work if a source photo is missing
        photo_source(p)
    per_photo = 1 + SCENES_PER_PHOTO * len(SEVERITIES)
    swapping = False
    try:
        with atomic_path(root, kind="sample") as tmp:
            tmp.mkdir()
            rows: list[dict] = []
            hashes: dict[str, str] = {}
            plans: dict[str, dict] = {}
            from tqdm.auto import tqdm

            with tqdm(total=len(photos) * per_photo, desc="building sample set", unit="img", disable=not progress) as bar:
                for photo in photos:
                    bar.set_postfix_str(photo.name, refresh=False)
                    photo_rows, photo_hashes, plans[photo.name] = build_photo(photo, tmp, on_image=lambda: bar.update(1))
                    rows += photo_rows
                    hashes.update(photo_hashes)
            with open(tmp / "labels.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
            (tmp / "manifest.json").write_text(json.dumps(_manifest(photos, rows, hashes, plans), indent=1) + "\n")
            if not force and _is_complete(root):
                raise _BuiltMeanwhile
            if root.exists() or root.is_symlink():
                check_sample_root(root)  # again: the folder may have changed while the set was built
            swapping = True
    except _BuiltMeanwhile:
        pass
    except OSError:
        # Another process installed a set while this one was moved into place: keep theirs if it is complete.
        if not (swapping and _is_complete(root)):
            raise
    return root / "labels.csv"


def describe_sample(csv_path: Path | str) -> dict:
    """Counts of a sample labels.csv: images (unique files), rows, photos, scenes, per split, kinds."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: sample labels file not found (build it with build_sample())")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise DatasetError(f"{csv_path}: missing column(s) {', '.join(missing)}")
    splits: dict[str, dict[str, set]] = {}
    kinds: list[str] = []
    for r in rows:
        s = splits.setdefault(r["split"], {"images": set(), "scenes": set(), "photos": set()})
        s["images"].add(r["image"])
        s["scenes"].add(r["scene"])
        s["photos"].add(r["photo"])
        if r["kind"] not in kinds:
            kinds.append(r["kind"])
    photos = {r["photo"] for r in rows}
    return {
        "n_images": len({r["image"] for r in rows}),
        "n_rows": len(rows),
        "n_photos": len(photos),
        "n_scenes": len({r["scene"] for r in rows}),
        "splits": {k: {n: len(v) for n, v in s.items()} for k, s in splits.items()},
        "kinds": kinds,
        "portraits": [p.name for p in PHOTOS if p.portrait and p.name in photos],
        "root": str(csv_path.parent),
    }
