"""Issue 11: the runtime-only install (`pip install edgeiqa`, no extras) in a fresh venv: no torch, and
`edgeiqa score` gives exactly the scores of the full install; the training commands and a face model say
which extra to install.

Slow (builds a venv with pip from this repository: about a minute with a warm pip cache). The venv gets the
same onnxruntime/numpy/Pillow versions as the running (full) install, since exact score equality holds
for one version of each.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from edgeiqa.data.views import ViewSpec
from helpers import make_run, skimage_photos

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

ROOT = Path(__file__).resolve().parents[1]
PINNED = ("onnxruntime", "numpy", "pillow", "tqdm")


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                total += p.stat().st_size
    return total


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory):
    venv = tmp_path_factory.mktemp("runtime-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    constraints = venv.parent / "constraints.txt"
    constraints.write_text("".join(f"{d}=={importlib.metadata.version(d)}\n" for d in PINNED))
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(constraints), str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from edgeiqa.export import export_model

    photos = skimage_photos(2, ("*.png",))
    base = tmp_path_factory.mktemp("models")
    plain = make_run(base / "plain", [ViewSpec("resize", (96, 96)), ViewSpec("fragments", (56, 56), grid=7)])
    face = make_run(base / "face", [ViewSpec("resize", (64, 64)), ViewSpec("face", (64, 64))])
    return (export_model(plain, "onnx", calib=photos, imgs=2, dynamic_batch=True, exporter="torchscript").path,
            export_model(face, "onnx", calib=photos[:1], imgs=1, dynamic_batch=True, exporter="torchscript").path)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    for p in skimage_photos(8, ("*.png", "*.jpg")):
        Image.open(p).save(d / p.name)
    Image.open(skimage_photos(1, ("*.png",))[0]).convert("RGB").resize((1280, 960)).save(d / "large.jpg", quality=90)
    (d / "notes.txt").write_text("not an image")
    return d


def _run(exe: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_runtime_install_has_no_torch_and_scores_like_the_full_install(runtime_venv, models, photo_folder, tmp_path):
    py, edgeiqa = runtime_venv / "bin" / "python", runtime_venv / "bin" / "edgeiqa"
    no_torch = _run(py, "-c", "import torch")
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    dists = {d.metadata["Name"].lower() for d in importlib.metadata.distributions(path=[str(p) for p in (runtime_venv / "lib").glob("python*/site-packages")])}
    assert not dists & {"torch", "timm", "torchvision", "scipy", "opencv-python-headless", "scikit-learn"}, dists
    assert _du(runtime_venv) < 400e6  # the full install is ~6 GB

    plain, _ = models
    light, full = tmp_path / "light.csv", tmp_path / "full.csv"
    r = _run(edgeiqa, "score", photo_folder, "--model", plain, "--out", light, "--workers", "2", "--no-progress")
    assert r.returncode == 1, r.stderr  # notes.txt is listed as not an image
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    f = subprocess.run([sys.executable, "-m", "edgeiqa", "score", str(photo_folder), "--model", str(plain),
                        "--out", str(full), "--workers", "1", "--batch", "3", "--no-progress"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert f.returncode == 1, f.stderr
    assert light.read_text() == full.read_text()  # exactly the same scores, byte for byte
    assert light.read_text().count(",ok,") == 9


def test_runtime_install_names_the_extra_to_install(runtime_venv, models, photo_folder):
    edgeiqa = runtime_venv / "bin" / "edgeiqa"
    for args in (("distill", "--budget", "50"), ("export", "x", "--format", "onnx")):
        r = _run(edgeiqa, *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "pip install 'edgeiqa[train]'" in r.stderr, r.stderr
    r = _run(runtime_venv / "bin" / "distill", "--teacher", "ensemble", "--budget", "50")
    assert r.returncode == 2 and "edgeiqa[train]" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    _, face = models  # OpenCV is the `face` extra: a face model is refused at load, not per image
    r = _run(edgeiqa, "score", photo_folder, "--model", face, "--no-progress")
    assert r.returncode == 2 and "needs OpenCV" in r.stderr and "pip install 'edgeiqa[face]'" in r.stderr, r.stderr
    assert r.stdout == ""
