"""Issue 21: a crafted model file is never run. Every loader of .pt files refuses a pickle that needs more than
tensors and plain data, with one line naming the file, and the planted code does not run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgeiqa.cli.main import main
from edgeiqa.safeload import UntrustedFile, load_weights


class _Planted:
    """Unpickling this runs Path.touch(marker): what an attacker's payload would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _evil(path: Path, marker: Path) -> Path:
    torch.save({"format": "edgeiqa-student-v1", "state_dict": {}, "meta": _Planted(marker)}, path)
    return path


def test_plain_checkpoint_loads(tmp_path):
    p = tmp_path / "ok.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"views": ["resize"], "n": 3, "x": 0.5, "t": (1, 2)}}, p)
    assert load_weights(p)["meta"]["n"] == 3


def test_planted_code_is_not_run_by_any_loader(tmp_path):
    from edgeiqa.students.factory import load_student
    from edgeiqa.training import load_checkpoint

    marker = tmp_path / "pwned"
    evil = _evil(tmp_path / "student.pt", marker)
    for load in (load_weights, load_student, load_checkpoint):
        with pytest.raises(UntrustedFile, match=f"refused .*{evil.name}.*never unpickles"):
            load(evil)
    assert not marker.exists()


@pytest.mark.parametrize("argv", [
    ["score", "{img}", "--model", "{evil}", "--out", "{tmp}/s.csv"],
    ["export", "{evil}", "--format", "onnx", "--out", "{tmp}/x.onnx"],
    ["eval", "--model", "{evil}", "--data", "csv:{tmp}/none.csv"],
])
def test_cli_refuses_planted_model_in_one_line(tmp_path, capsys, argv):
    marker = tmp_path / "pwned"
    evil = _evil(tmp_path / "student.pt", marker)
    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(img)
    (tmp_path / "none.csv").write_text("image,score\na.png,0.5\n")
    args = [a.format(evil=evil, img=img, tmp=tmp_path) for a in argv]
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and "never unpickles" in err[0] and "Traceback" not in err[0], err
    assert not marker.exists()
