"""benchmarks/export_formats.py: what it reads from the exports' sidecars, how it lists a format it cannot run, and
that a bad argument is refused before any export."""

from __future__ import annotations

import json

import pytest

from edgeiqa.data.views import ViewSpec
from helpers import load_benchmark, make_run, skimage_photos, write_photo_csv

pytestmark = pytest.mark.usefixtures("one_thread")

def _script():
    return load_benchmark("export_formats")


def test_collect_reads_each_exports_sidecar_and_names_a_missing_extra(tmp_path, monkeypatch):
    import sys

    from edgeiqa.export import export_model

    run = make_run(tmp_path / "run", [ViewSpec("resize", (64, 64))])
    photos = skimage_photos(8, ("*.png",))
    export_model(run, "onnx", calib=photos[:4], imgs=4, exporter="torchscript")
    export_model(run, "onnx-int8", calib=photos[:4], imgs=4, exporter="torchscript")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on this machine: not importable
    out = tmp_path / "formats.json"
    assert _script().main([str(run), "--formats", "onnx,onnx-int8,onnx-fp16,tensorrt", "--collect", "--out", str(out),
                           "--machine", "test"]) == 0
    doc = json.loads(out.read_text())
    rows = {r["format"]: r for r in doc["rows"]}
    assert doc["machine"] == "test" and doc["commit"] and doc["date"]
    onnx = json.loads((run / "export" / "student.json").read_text())
    assert rows["onnx"]["parity"]["max_abs_diff"] == onnx["parity"]["max_abs_diff"] <= 1e-4
    assert rows["onnx"]["size_bytes"] == (run / "export" / "student.onnx").stat().st_size
    assert rows["onnx-int8"]["precision"] == "int8" and rows["onnx-int8"]["parity"]["n_images"] == 4
    assert rows["onnx-fp16"]["not_run"].startswith("no export at")  # not exported: said, not invented
    assert rows["tensorrt"]["not_run"] == "needs tensorrt, not installed here"

    # A real `edgeiqa bench` of the same artefacts: its latency rows join each format's row.
    from edgeiqa.cli.main import main as cli

    data = write_photo_csv(tmp_path / "data.csv", photos[:6], scenes=2)
    assert cli(["bench", str(run), "--formats", "onnx,onnx-int8", "--data", f"csv:{data}", "--out", str(tmp_path / "b"),
                "--runs", "2", "--warmup", "0", "--threads", "1", "--batch", "1,2", "--no-plots"]) == 0
    bench = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert _script().main([str(run), "--formats", "onnx,onnx-int8", "--collect", "--bench", str(tmp_path / "b" / "bench.json"),
                           "--out", str(out), "--machine", "test"]) == 0
    rows = {r["format"]: r for r in json.loads(out.read_text())["rows"]}
    for name in ("onnx", "onnx-int8"):
        want = {(r["batch"], r["p50_ms"]) for r in bench["rows"] if r["format"] == name}
        assert {(b["batch"], b["p50_ms"]) for b in rows[name]["bench"]} == want and len(want) == 2
    summary = json.loads(out.read_text())["p50_ms_batch1"]
    assert set(summary) == {"onnx", "onnx-int8"} and all(v > 0 for v in summary.values())


def test_bad_arguments_are_refused_before_any_export(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _script().main([str(tmp_path), "--formats", "onnx,onnxx"])
    assert e.value.code == 2 and "unknown format 'onnxx'; did you mean 'onnx'?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        _script().main([str(tmp_path)])
    assert e.value.code == 2 and "no student.pt" in capsys.readouterr().err
    (tmp_path / "student.pt").write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        _script().main([str(tmp_path), "--collect", "--bench", str(tmp_path / "missing.json")])
    assert e.value.code == 2 and "missing.json: no such file" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()
