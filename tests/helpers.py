"""Builders shared by the test modules: real shipped photos, tiny run folders, tiny profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError


def skimage_photos(n: int, patterns=("*.png", "*.jpg")) -> list[Path]:
    """The first n real photos shipped with scikit-image that load_image accepts, sorted by name.

    The project ships on these wheel photos (the sample set is built from them), so fewer than n is a failure of
    the install or of load_image, never a reason to skip."""
    import skimage

    from edgeiqa.data.images import load_image

    root = Path(skimage.__file__).parent / "data"
    out = []
    for p in sorted(q for pattern in patterns for q in root.glob(pattern)):
        try:
            load_image(p)
        except EdgeIQAError:
            continue
        out.append(p)
        if len(out) == n:
            return out
    pytest.fail(f"only {len(out)} of {n} scikit-image photos under {root} could be loaded: the wheel photos the "
                f"project ships on are missing or unreadable")


def write_photo_csv(path: Path, photos: list[Path], scenes: int, split_of=lambda i: "test") -> Path:
    """A labelled CSV over real photos: score 1..5 by index, photo i in scene s{i % scenes}, split `split_of(i)`."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "score", "scene", "split"])
        for i, p in enumerate(photos):
            w.writerow([str(p), 1 + (i * 7) % 5, f"s{i % scenes}", split_of(i)])
    return path


def make_run(run_dir: Path, views: list[ViewSpec], name: str = "efficientnet_lite0", logistic=None,
             teachers: Path | None = None) -> Path:
    """A run folder as distill writes it: student.pt + card.json, GMACs counted with fvcore."""
    from fvcore.nn import FlopCountAnalysis

    from edgeiqa.students import create_student, save_student

    torch.manual_seed(0)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = create_student(name, views).drop_training_heads().eval()
    fa = FlopCountAnalysis(model, tuple(torch.zeros(1, 3, *v.size) for v in views))
    fa.unsupported_ops_warnings(False)
    fa.uncalled_modules_warnings(False)
    gmacs = fa.total() / 1e9  # what distill writes on the card; export recounts it on the graph
    save_student(model, run_dir / "student.pt", views, {"profile": "test", "gmacs": gmacs, "logistic": logistic, "seed": 0})
    card = {"profile": "test", "views": [v.to_dict() for v in views],
            "student": {"name": name, "gmacs": gmacs, "params_m": 3.4},
            "teacher": {"members": ["lite0_mv"], "gmacs": 0.1, "dir": str(teachers) if teachers else None}}
    (run_dir / "card.json").write_text(json.dumps(card))
    return run_dir


def write_profile(path, *, members=("lite0_mv",), epochs=2, losses="{ mse = 1.0, plcc = 0.5, fidelity = 1.0, feature = 0.2 }"):
    """A test profile: tiny student views so distillation takes seconds."""
    members_toml = ", ".join(f'"{m}"' for m in members)
    path.write_text(f"""
name = "tiny"
data = "sample"
budget_gmacs = 50.0
seed = 0

[student]
name = "efficientnet_lite0"
views = [{{ kind = "resize", size = [64, 64] }}, {{ kind = "fragments", size = [56, 56], grid = 7 }}]
hidden = 32

[teacher]
ensemble = [{members_toml}]
head_epochs = 15
epochs = 1
batch_size = 8
lr = 1e-3
losses = {{ mse = 1.0, plcc = 1.0, fidelity = 1.0 }}

[distill]
epochs = {epochs}
batch_size = 8
lr = 1e-3
losses = {losses}
pseudo_weight = 1.0
""")
    return path


def make_teachers(root: Path) -> Path:
    """A one-member ensemble folder as `edgeiqa teachers train` writes it (weights untrained)."""
    from edgeiqa.teachers import create_teacher

    member = root / "lite0_mv"
    member.mkdir(parents=True)
    torch.manual_seed(0)
    t = create_teacher("lite0_mv")
    torch.save({"format": "edgeiqa-teacher/1", "teacher": "lite0_mv", "state_dict": t.state_dict()}, member / "teacher.pt")
    views = [ViewSpec("resize", (64, 64)).to_dict(), ViewSpec("fragments", (63, 63)).to_dict()]
    (member / "member.json").write_text(json.dumps({"teacher": "lite0_mv", "views": views}))
    ens = {"members": ["lite0_mv"], "weights": {"lite0_mv": 1.0}, "znorm": {"lite0_mv": [0.0, 1.0]},
           "calibration": {"type": "linear", "beta": [1.0, 3.0]},
           "member_calibration": {"lite0_mv": {"type": "linear", "beta": [1.0, 0.0]}}, "weights_fitted_on": "uniform"}
    (root / "ensemble.json").write_text(json.dumps(ens))
    return root


def assert_refused(argv: list[str], capsys, watch: Path, match: str, seconds: float = 3.0) -> str:
    """Issue 21's contract for a bad argument: exit 2, one stderr line (no traceback) matching `match`, nothing
    written under `watch`, refused within `seconds`. Returns the line."""
    import re
    import time

    from edgeiqa.cli.main import main

    def snapshot():
        return sorted((str(p.relative_to(watch)), p.stat().st_size if p.is_file() else -1) for p in watch.rglob("*"))

    before = snapshot()
    capsys.readouterr()
    t0 = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    took = time.perf_counter() - t0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("usage:")
           and not line.startswith("  ")]
    assert code == 2, (argv, code, err)
    assert len(err) == 1 and "Traceback" not in err[0], (argv, err)
    assert re.search(match, err[0]), (argv, err[0], match)
    assert snapshot() == before, (argv, "wrote files")
    assert took < seconds, (argv, f"refused after {took:.1f} s")
    return err[0]


def format_fixtures(float_format: str, int8_format: str, *, float_name: str = "fp32", float_kwargs=None,
                    int8_kwargs=None):
    """The module fixtures each export format's tests share: `photos` (16 wheel photos), `run_dir` (a 64 px
    EfficientNet-Lite0 run) and its two exports, named `float_name` and `int8`. Assign them at module level:
    `photos, run_dir, fp32, int8 = format_fixtures("litert", "litert-int8")`."""

    @pytest.fixture(scope="module", name="photos")
    def photos_():
        return skimage_photos(16)

    @pytest.fixture(scope="module", name="run_dir")
    def run_dir_(tmp_path_factory):
        return make_run(tmp_path_factory.mktemp(float_format), [ViewSpec("resize", (64, 64))])

    @pytest.fixture(scope="module", name=float_name)
    def float_(run_dir, photos):
        from edgeiqa.export import export_model

        return export_model(run_dir, float_format, calib=photos, imgs=16, **(float_kwargs or {}))

    @pytest.fixture(scope="module", name="int8")
    def int8_(run_dir, photos):
        from edgeiqa.export import export_model

        return export_model(run_dir, int8_format, calib=photos, imgs=16, **(int8_kwargs or {}))

    return photos_, run_dir_, float_, int8_


def score_folder_with(artefact: Path, photos: list[Path], tmp_path: Path, capsys, backend: str) -> tuple[Path, Path]:
    """`edgeiqa score` of a folder of 5 photos with an exported artefact at --threads 1: every file gets an ok row
    and the summary names the backend. Returns the folder and the scores CSV."""
    from PIL import Image

    from edgeiqa.cli.main import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos[:5]:
        Image.open(p).save(folder / p.name)
    out = tmp_path / "scores.csv"
    rc = main(["score", str(folder), "--model", str(artefact), "--out", str(out), "--threads", "1", "--json",
               "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["scored"] == 5 and summary["backend"] == backend and summary["threads"] == 1
    rows = out.read_text().splitlines()
    assert len(rows) == 6 and all(",ok," in r for r in rows[1:])
    return folder, out


def bench_reused_exports(run_dir: Path, fp32, photos: list[Path], tmp_path: Path, capsys, float_format: str,
                         int8_format: str, provider: str) -> tuple[dict, dict]:
    """`edgeiqa bench` of torch and a format's two exports on 9 photos: both exports reused, one ok row each at
    batch 1 and one thread, the float row within 1e-4 of torch, the int8 row's parity SRCC >= 0.9; then `eval`
    takes the float artefact and names `float_format`'s backend. Returns the report and its rows by format."""
    from edgeiqa.cli.main import main

    data = write_photo_csv(tmp_path / "data.csv", photos[:9], scenes=3)
    rc = main(["bench", str(run_dir), "--formats", f"torch,{float_format},{int8_format}", "--data", f"csv:{data}",
               "--json", "--runs", "3", "--warmup", "1", "--threads", "1"])
    doc = json.loads(capsys.readouterr().out)
    rows = {r["format"]: r for r in doc["rows"]}
    assert rc == 0 and list(rows) == ["torch", float_format, int8_format], doc["rows"]
    for name in (float_format, int8_format):
        r = rows[name]
        assert r["status"] == "ok" and r["reused"] is True and r["threads"] == 1 and r["batch"] == 1, r
        assert r["p50_ms"] > 0 and r["p95_ms"] >= r["p50_ms"] and r["srcc"] is not None
        assert r["provider"].startswith(provider)
    assert rows[float_format]["parity_max_abs"] <= 1e-4 and rows[int8_format]["parity_srcc"] >= 0.9
    assert main(["eval", "--model", str(fp32.path), "--data", f"csv:{data}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["compute"]["backend"] == float_format  # the float row names its backend
    return doc, rows


def load_benchmark(name: str):
    """A script of benchmarks/ (not a package) as a module, e.g. load_benchmark("real").main([...])."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", Path(__file__).resolve().parents[1] / "benchmarks"
                                                  / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
