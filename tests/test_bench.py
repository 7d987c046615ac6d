"""`edgeiqa bench`: every JSON column, outputs written, format typos, one failing format, the --min-srcc
gate, the teacher row, a bad --data. One tiny EfficientNet-Lite0 student (64x64 resize view) on 12
scikit-image photos, a one-member teacher ensemble (lite0_mv, random head) at 64x64 views."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeiqa.bench import COLUMNS, BenchOptions, exit_code, run_bench
from edgeiqa.cli.main import main
from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from helpers import make_run, make_teachers, skimage_photos, write_photo_csv

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--runs", "3", "--warmup", "1", "--threads", "1"]


def _write_predictions(teachers: Path, photos: list[Path], shift: float = 0.0) -> None:
    """predictions.csv as teacher training writes it: the member's raw score per image."""
    from edgeiqa.bench.teacher import TeacherEnsemble

    ens = TeacherEnsemble(teachers, threads=1)
    with open(teachers / "lite0_mv" / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "score", "error"])
        for p in photos:
            raw = ens.raw(ens.feeds([ens.preprocess(p)]))["lite0_mv"][0]
            w.writerow([str(p), f"{raw + shift:.8f}", ""])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    photos = skimage_photos(12, ("*.png",))
    # 9 test images in 3 scenes, 3 training images
    data = write_photo_csv(root / "data.csv", photos, scenes=3, split_of=lambda i: "test" if i < 9 else "train")
    teachers = make_teachers(root / "teachers")
    _write_predictions(teachers, photos)
    run = make_run(root / "run", [ViewSpec("resize", (64, 64))], teachers=teachers)
    from edgeiqa.export import export_model

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # an export already there: bench must reuse it
        export_model(run, "onnx", calib=f"csv:{data}", imgs=4)
    finally:
        torch.set_num_threads(old)
    return {"root": root, "run": run, "data": f"csv:{data}", "teachers": teachers, "photos": photos}


@pytest.fixture(scope="module")
def cli_report(env):
    """One CLI run: torch (exported: a copy), onnx (reused), onnx-int8 (exported) and the teacher."""
    out = env["root"] / "out"
    import contextlib
    import io

    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        rc = main(["bench", str(env["run"]), "--formats", "torch,onnx,onnx-int8", "--compare-teacher",
                   "--data", env["data"], "--calib-imgs", "8", "--json", "--out", str(out), *FAST])
    return {"rc": rc, "doc": json.loads(buf.getvalue()), "out": out, "stderr": err.getvalue()}


# ------------------------------------------------------------------------------------------ the report


def test_json_has_every_column(cli_report):
    doc = cli_report["doc"]
    assert [r["format"] for r in doc["rows"]] == ["torch", "onnx", "onnx-int8", "teacher"], cli_report["stderr"]
    for r in doc["rows"]:
        assert list(r) == COLUMNS
        assert r["batch"] == 1
        assert r["status"] in ("ok", "failed validation"), (r["format"], r["reason"])
        for key in ("p50_ms", "p95_ms", "images_per_s", "gmacs", "srcc", "plcc", "mae", "size_mb", "params_m",
                    "peak_rss_mb", "decode_ms", "views_ms", "achieved_gmacs_per_s", "ceiling_fraction",
                    "speedup_vs_teacher", "other_cpu_pct"):
            assert r[key] is not None, (r["format"], key)
        assert r["p95_ms"] >= r["p50_ms"] > 0 and r["images_per_s"] == pytest.approx(1e3 / r["p50_ms"])
        assert r["n_eval"] == 9 and r["threads"] == 1 and r["runs"] == 3
    rows = {r["format"]: r for r in doc["rows"]}
    assert rows["torch"]["status"] == "ok" and rows["onnx"]["status"] == "ok"
    assert rows["onnx"]["reused"] is True and rows["torch"]["reused"] is False
    assert rows["onnx-int8"]["reused"] is False and rows["onnx-int8"]["precision"] == "int8"
    assert rows["onnx"]["parity_max_abs"] <= 1e-4 and rows["torch"]["parity_max_abs"] == 0.0
    assert rows["onnx"]["srcc"] == pytest.approx(rows["torch"]["srcc"], abs=1e-6)
    # size against the float32 ONNX graph, from the export metadata
    assert rows["onnx"]["size_vs_fp32"] == 1.0 and 0 < rows["onnx-int8"]["size_vs_fp32"] < 0.5
    assert rows["torch"]["size_vs_fp32"] is None and rows["teacher"]["size_vs_fp32"] is None
    # the exit code follows the statuses (int8 of an untrained head may miss its parity bar)
    assert cli_report["rc"] == (0 if rows["onnx-int8"]["status"] == "ok" else 1)


def test_report_device_ceiling_and_method(cli_report):
    doc = cli_report["doc"]
    dev = doc["device"]
    for key in ("name", "cpu_model", "cpu_logical_cores", "threads", "versions", "platform"):
        assert dev[key] is not None, key
    assert {"torch", "onnxruntime", "numpy"} <= set(dev["versions"])
    for backend in ("torch", "onnxruntime"):
        c = doc["ceiling"][backend]
        assert c["best_gmacs_per_s"] == max(c["gemm_gmacs_per_s"], c["conv_gmacs_per_s"]) > 0
    onnx = next(r for r in doc["rows"] if r["format"] == "onnx")
    assert onnx["ceiling_gmacs_per_s"] == doc["ceiling"]["onnxruntime"]["best_gmacs_per_s"]
    assert onnx["ceiling_fraction"] == pytest.approx(onnx["achieved_gmacs_per_s"] / onnx["ceiling_gmacs_per_s"])
    s = doc["settings"]
    assert s["threads"] == 1 and s["warmup"] == 1 and s["runs"] == 3 and s["gc_disabled_while_timing"]
    assert doc["data"]["split"] == "test" and doc["data"]["n_images"] == 9
    assert doc["preprocess"] and all(v["decode_ms"] > 0 for v in doc["preprocess"].values())


def test_teacher_row_and_speedup(cli_report):
    rows = {r["format"]: r for r in cli_report["doc"]["rows"]}
    t = rows["teacher"]
    assert t["status"] == "ok" and t["backend"] == "torch"
    assert t["gmacs"] > 0 and t["params_m"] > 1 and t["srcc"] is not None
    assert t["speedup_vs_teacher"] == pytest.approx(1.0)
    onnx = rows["onnx"]
    assert onnx["speedup_vs_teacher"] == pytest.approx(t["p50_ms"] / onnx["p50_ms"])
    assert "teacher" in cli_report["doc"]["preprocess"]
    # accuracy from the saved predictions (they cover every image and match a live run)
    assert any("saved predictions.csv" in w for w in t["warnings"]), t["warnings"]


def test_stale_teacher_predictions_are_not_trusted(env, tmp_path):
    import shutil

    teachers = tmp_path / "teachers"
    shutil.copytree(env["teachers"], teachers)
    _write_predictions(teachers, env["photos"], shift=0.5)  # as if teacher.pt changed after training
    opts = dict(formats=["teacher"], data=env["data"], warmup=0, runs=1, threads=1, teachers=str(teachers),
                ceiling_seconds=0.05)
    logs = []
    live = run_bench(env["run"], BenchOptions(**opts), log=logs.append)["rows"][0]
    assert live["status"] == "ok" and live["srcc"] is not None
    assert not any("saved predictions" in w for w in live["warnings"])
    assert any("differ from a live run" in m for m in logs)
    strict = run_bench(env["run"], BenchOptions(**opts, teacher_scores="saved"))["rows"][0]
    assert strict["status"] == "benchmark failed" and "differ from a live run" in strict["reason"]


def test_weight_zero_teacher_member_is_not_run_nor_counted(env, tmp_path):
    """issue 12, req. 5: a member with weight 0 is not built, run or counted (its folder is not even needed)."""
    import shutil

    from edgeiqa.bench.teacher import TeacherEnsemble

    teachers = tmp_path / "teachers"
    shutil.copytree(env["teachers"], teachers)
    ens = json.loads((teachers / "ensemble.json").read_text())
    ens["members"].append("lite1_mv")  # trained once, weighted 0 on val; its folder is gone
    ens["weights"]["lite1_mv"] = 0.0
    ens["znorm"]["lite1_mv"] = [0.0, 1.0]
    ens["member_calibration"]["lite1_mv"] = {"type": "linear", "beta": [1.0, 0.0]}
    (teachers / "ensemble.json").write_text(json.dumps(ens))
    two, one = TeacherEnsemble(teachers, threads=1), TeacherEnsemble(env["teachers"], threads=1)
    assert [m.name for m in two.members] == ["lite0_mv"] and two.describe()["not_run"] == ["lite1_mv"]
    assert two.gmacs() == one.gmacs()
    row = run_bench(env["run"], BenchOptions(formats=["teacher"], data=env["data"], warmup=0, runs=1, threads=1,
                                             teachers=str(teachers), ceiling_seconds=0.05))["rows"][0]
    assert row["status"] == "ok" and row["gmacs"] == one.gmacs()["total"] and row["mae"] is not None


def test_files_written(cli_report):
    out = cli_report["out"]
    for name in ("bench.json", "bench.csv", "latency_vs_srcc.png", "gmacs_vs_srcc.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "latency_vs_srcc.png").read_bytes()[:4] == b"\x89PNG"
    with open(out / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS and [r["format"] for r in rows] == ["torch", "onnx", "onnx-int8", "teacher"]
    saved = json.loads((out / "bench.json").read_text())
    assert saved["rows"] == cli_report["doc"]["rows"]
    from edgeiqa.outsafe import folder_kind

    assert folder_kind(out) == "bench"  # marked: a rerun may replace it, nothing else is ever replaced
    assert folder_kind(Path(cli_report["doc"]["model_dir"]) / "export") == "export"


# ------------------------------------------------------------------------------------------ errors and gates


@pytest.mark.parametrize("typo, near", [("onxx", "onnx"), ("onnx-int9", "onnx-int8"), ("teachr", "teacher")])
def test_misspelt_format_suggests_closest(env, capsys, typo, near):
    assert main(["bench", str(env["run"]), "--formats", f"torch,{typo}"]) == 2
    err = capsys.readouterr().err
    assert f"did you mean '{near}'" in err and "Traceback" not in err


def test_export_failure_gives_a_failed_row_and_the_others_run(env, monkeypatch):
    from edgeiqa.bench import artefacts

    real = artefacts.export_model

    def flaky(run_dir, fmt, **kw):
        if fmt == "onnx-int8":
            raise RuntimeError("simulated quantiser crash")
        return real(run_dir, fmt, **kw)

    monkeypatch.setattr(artefacts, "export_model", flaky)
    report = run_bench(env["run"], BenchOptions(formats=["onnx-int8", "torch"], data=env["data"], warmup=1, runs=3,
                                                threads=1, reuse=False, ceiling_seconds=0.05))
    rows = {r["format"]: r for r in report["rows"]}
    assert rows["onnx-int8"]["status"] == "export failed"
    assert "simulated quantiser crash" in rows["onnx-int8"]["reason"] and rows["onnx-int8"]["p50_ms"] is None
    assert rows["torch"]["status"] == "ok" and rows["torch"]["p50_ms"] > 0
    assert [r["format"] for r in report["rows"]] == ["onnx-int8", "torch"]  # the order asked for
    assert exit_code(report) == 1


def test_min_srcc_gate(env, tmp_path, capsys):
    args = ["bench", str(env["run"]), "--formats", "onnx", "--data", env["data"], "--no-plots", *FAST]
    assert main([*args, "--out", str(tmp_path / "a"), "--min-srcc", "1.0"]) == 1  # an untrained head is no perfect ranker
    err = capsys.readouterr().err
    assert "--min-srcc 1.0 not met" in err and "onnx" in err
    assert main([*args, "--out", str(tmp_path / "a"), "--min-srcc", "-1.0"]) == 0  # its own bench folder: rewritten
    doc = json.loads((tmp_path / "a" / "bench.json").read_text())
    assert doc["gate"] == {"min_srcc": -1.0, "passed": True, "failing": []}


def test_foreign_file_in_the_export_folder_is_kept_and_the_row_says_why(env, tmp_path):
    """issue 21: bench exports through the same output check as `edgeiqa export`; a user's file is never replaced."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(env["run"], run, ignore=shutil.ignore_patterns("export", "bench"))
    (run / "export").mkdir()
    (run / "export" / "student-int8.onnx").write_bytes(b"the user's own model")
    report = run_bench(run, BenchOptions(formats=["onnx-int8"], data=env["data"], warmup=0, runs=1, threads=1,
                                         ceiling_seconds=0.05))
    (row,) = report["rows"]
    assert row["status"] == "export failed" and "edgeiqa did not write it" in row["reason"], row["reason"]
    assert (run / "export" / "student-int8.onnx").read_bytes() == b"the user's own model"


def test_bad_data_path_is_a_clean_error(env, capsys):
    assert main(["bench", str(env["run"]), "--data", "csv:/nonexistent/labels.csv", "--formats", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeiqa: error:") and "/nonexistent/labels.csv" in err and "Traceback" not in err
    assert main(["bench", str(env["root"] / "no-such-run")]) == 2
    assert "not found" in capsys.readouterr().err


def test_tensorrt_asked_without_it_is_unavailable(env):
    from edgeiqa.export.tensorrt_export import tensorrt_missing

    if not tensorrt_missing():
        pytest.skip("TensorRT and a GPU are present here")
    report = run_bench(env["run"], BenchOptions(formats=["tensorrt"], data=env["data"], threads=1, ceiling_seconds=0.05))
    (row,) = report["rows"]
    assert row["status"] == "unavailable" and "TensorRT needs" in row["reason"]
    assert exit_code(report) == 0


# ------------------------------------------------------------------------------------------ pieces


def test_time_runs_median_and_gc_restored():
    import gc

    from edgeiqa.bench.measure import time_runs

    calls = []
    t = time_runs(lambda: calls.append(1), warmup=2, runs=7)
    assert len(calls) == 9 and t["runs"] == 7 and t["warmup"] == 2 and not t["truncated"]
    assert 0 <= t["min_ms"] <= t["p50_ms"] <= t["p95_ms"] and gc.isenabled()
    import time

    t = time_runs(lambda: time.sleep(0.01), warmup=0, runs=100, max_seconds=0.05)
    assert t["truncated"] and 5 <= t["runs"] < 100


def test_peak_rss_sees_an_allocation():
    from edgeiqa.bench.measure import PeakRSS

    with PeakRSS() as mem:
        a = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del a
        assert mem.peak_delta_mb() > 50


def test_pareto_front():
    from edgeiqa.bench.report import pareto_front

    pts = [(10.0, 0.9), (2.0, 0.8), (3.0, 0.7), (1.0, 0.5), (50.0, 0.95)]
    assert pareto_front(pts) == [3, 1, 0, 4]


def test_reuse_needs_the_same_checkpoint(env):
    from edgeiqa.bench.artefacts import find_reusable
    from edgeiqa.export.formats import get_format
    from edgeiqa.provenance import sha256_file

    sha = sha256_file(env["run"] / "student.pt")
    onnx = get_format("onnx")
    assert find_reusable(env["run"], onnx, sha, need_dynamic=False) is not None
    assert find_reusable(env["run"], onnx, "0" * 64, need_dynamic=False) is None
    assert find_reusable(env["run"], onnx, sha, need_dynamic=True) is None  # exported with a fixed batch


def test_max_images_keeps_whole_scenes(env):
    from edgeiqa.bench.accuracy import select_eval

    full = select_eval(env["data"])
    assert full.split == "test" and len(full.paths) == 9
    capped = select_eval(env["data"], max_images=6)
    scenes = {}
    for r in capped.records:
        scenes.setdefault(r.scene, []).append(r)
    assert len(capped.paths) == 6 and all(len(v) == 3 for v in scenes.values())


def test_fixed_batch_model_is_fed_in_chunks():
    """A batch-1 export timed at batch 3: three pre-built single-image chunks (the last one padded if needed)."""
    from types import SimpleNamespace

    from edgeiqa.bench.runner import _student_feeds, parse_batches

    views = [ViewSpec("resize", (32, 32))]
    prepared = [{"resize": np.full((32, 32, 3), i, np.uint8)} for i in range(3)]
    fixed = SimpleNamespace(views=views, backend=SimpleNamespace(fixed_batch=1))
    chunks = _student_feeds(fixed, prepared, 3)
    assert len(chunks) == 3 and all(c["resize"].shape == (1, 3, 32, 32) for c in chunks)
    dynamic = SimpleNamespace(views=views, backend=SimpleNamespace(fixed_batch=None))
    (one,) = _student_feeds(dynamic, prepared, 3)
    assert one["resize"].shape == (3, 3, 32, 32) and one["resize"].dtype == np.float32
    assert parse_batches("1, 8,1") == (1, 8)
    with pytest.raises(EdgeIQAError, match="batch size"):
        parse_batches("0")
