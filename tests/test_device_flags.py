"""`--device` and `--precision` on every command that runs a model (eval, bench, teachers pretrain, score with a
torch artefact): what this machine lacks is refused with one line (exit 2) before anything is written, and the
device and precision used are recorded in what each command writes. Tiny: a 64x64 EfficientNet-Lite0 student,
a one-member teacher ensemble and 6 scikit-image photos."""

from __future__ import annotations

import json

import pytest
import torch

from edgeiqa.cli.main import main
from edgeiqa.data.views import ViewSpec
from helpers import make_run, make_teachers, skimage_photos, write_photo_csv

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("devflags")
    photos = skimage_photos(6, ("*.png",))
    data = write_photo_csv(root / "data.csv", photos, scenes=2)
    folder = root / "photos"
    folder.mkdir()
    for p in photos[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    teachers = make_teachers(root / "teachers")
    run = make_run(root / "run", [ViewSpec("resize", (64, 64))], teachers=teachers)
    return {"root": root, "run": run, "data": f"csv:{data}", "teachers": teachers, "folder": folder}


def _cli(args, capsys):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _commands(env, out):
    return {
        "eval": ["eval", "--model", env["run"], "--data", env["data"], "--quiet"],
        "eval-teacher": ["eval", "--model", env["teachers"], "--data", env["data"], "--quiet"],
        "bench": ["bench", env["run"], "--formats", "torch", "--data", env["data"], "--out", out, "--runs", "1"],
        "pretrain": ["teachers", "pretrain", "--teacher", "lite0_mv", "--data", f"folder:{env['folder']}", "--out", out,
                     "--steps", "1", "--quiet"],
        "score": ["score", env["folder"], "--model", env["run"], "--out", out / "s.csv", "--no-progress"],
    }


@NO_CUDA
@pytest.mark.parametrize("command", ["eval", "eval-teacher", "bench", "pretrain", "score"])
def test_cuda_refused_with_one_line_and_nothing_written(env, command, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = _cli(_commands(env, out)[command] + ["--device", "cuda"], capsys)
    assert rc == 2, err
    assert err.strip().splitlines() == ["edgeiqa: error: CUDA is not available on this machine "
                                        "(use --device cpu or --device auto)"]
    assert not out.exists()


@pytest.mark.parametrize("command", ["eval", "bench", "pretrain", "score"])
def test_gpu_precision_refused_on_the_cpu(env, command, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = _cli(_commands(env, out)[command] + ["--device", "cpu", "--precision", "bf16"], capsys)
    assert rc == 2 and "--precision bf16 needs a GPU" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_eval_records_device_and_precision(env, tmp_path, capsys):
    rc, out, err = _cli(_commands(env, tmp_path)["eval"] + ["--device", "cpu", "--json"], capsys)
    assert rc == 0, err
    compute = json.loads(out)["compute"]
    assert (compute["device"], compute["precision"], compute["backend"]) == ("cpu", "fp32", "torch")
    rc, out, err = _cli(_commands(env, tmp_path)["eval-teacher"] + ["--json"], capsys)  # auto: the CPU here
    assert rc == 0, err
    want = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert json.loads(out)["compute"]["device"] == want and json.loads(out)["compute"]["precision"] == "fp32"


def test_score_torch_artefact_records_device(env, tmp_path, capsys):
    out = tmp_path / "s.json"
    rc, stdout, err = _cli(["score", env["folder"], "--model", env["run"], "--out", out, "--device", "cpu",
                            "--json", "--no-progress"], capsys)
    assert rc == 0, err
    summary = json.loads(stdout)
    assert (summary["device"], summary["precision"], summary["backend"]) == ("cpu", "fp32", "torch")
    assert json.loads(out.read_text())["summary"]["precision"] == "fp32"


@pytest.mark.slow  # ~50 s: a lite0_mv teacher at its full views
def test_pretrain_records_device_in_report_and_weights(env, tmp_path, capsys):
    out = tmp_path / "pre"
    rc, stdout, err = _cli(_commands(env, out)["pretrain"] + ["--device", "cpu", "--json"], capsys)
    assert rc == 0, err
    assert json.loads(stdout)["compute"] == {"device": "cpu", "device_name": "cpu", "precision": "fp32"}
    assert torch.load(out / "pretrained.pt", weights_only=False)["compute"]["device"] == "cpu"


def test_bench_records_device_and_precision(env, tmp_path, capsys):
    out = tmp_path / "bench"
    rc, stdout, err = _cli(_commands(env, out)["bench"] + ["--warmup", "0", "--threads", "1", "--no-plots", "--json"],
                           capsys)
    assert rc == 0, err
    doc = json.loads(stdout)
    assert (doc["settings"]["device"], doc["settings"]["precision"]) == ("cpu", "fp32")
    assert json.loads((out / "bench.json").read_text())["settings"]["precision"] == "fp32"


@pytest.mark.slow  # ~25 s: an ONNX export
def test_onnx_model_refuses_torch_precision_and_missing_cuda_provider(env, tmp_path, capsys):
    import onnxruntime as ort

    from edgeiqa.export import export_model

    onnx = export_model(env["run"], "onnx", calib=env["data"], imgs=2).path
    rc, _, err = _cli(["score", env["folder"], "--model", onnx, "--precision", "fp16", "--no-progress"], capsys)
    assert rc == 2 and "applies to torch models" in err, err
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA")
    out = tmp_path / "s.csv"
    rc, _, err = _cli(["score", env["folder"], "--model", onnx, "--device", "cuda", "--out", out, "--no-progress"], capsys)
    assert rc == 2 and "CUDAExecutionProvider" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
