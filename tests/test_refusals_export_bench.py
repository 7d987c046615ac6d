"""Issue 21: every bad argument of `edgeiqa export` and `edgeiqa bench` is refused up front: exit 2, one stderr
line, no traceback, nothing written, within 3 s. One tiny run folder beside a few foreign files and folders."""

from __future__ import annotations

import json

import pytest
import torch

from edgeiqa.data.views import ViewSpec
from helpers import assert_refused, make_run, make_teachers


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A run folder and the user's own files around it (which no refusal may touch)."""
    root = tmp_path_factory.mktemp("refusals")
    make_run(root / "run", [ViewSpec("resize", (64, 64))])
    make_teachers(root / "teachers")
    (root / "notes.txt").write_text("the user's notes, not a checkpoint\n")
    (root / "existing.onnx").write_bytes(b"someone else's model")
    (root / "existing.json").write_text(json.dumps({"mine": True}))
    (root / "fresh.json").write_text(json.dumps({"mine": True}))  # sidecar name of --out fresh.onnx
    (root / "weights.bin").write_bytes(b"someone else's weights")  # the .bin beside --out weights.xml (OpenVINO)
    (root / "adir.onnx").mkdir()
    (root / "afile").write_text("a file where a folder is expected")
    (root / "userdir").mkdir()
    (root / "userdir" / "notes.txt").write_text("mine")
    (root / "empty").mkdir()
    torch.save({"format": "not-edgeiqa", "w": torch.zeros(2)}, root / "other.pt")
    return root


def _export(root, *extra, target="run"):
    return ["export", str(root / target), *extra]


def _bench(root, *extra, target="run"):
    return ["bench", str(root / target), "--formats", "onnx", *extra]


EXPORT_CASES = [
    # item 2: the output is an input (today SameFileError), or its sidecar would replace the card
    (lambda r: _export(r, "--format", "torch", "--out", str(r / "run" / "student.pt")), "also an input"),
    (lambda r: _export(r, "--out", str(r / "run" / "card.onnx")), "also an input"),
    # item 3: an unrelated file, or an unrelated file where the sidecar goes
    (lambda r: _export(r, "--out", str(r / "existing.onnx")), "did not write it; pass --force"),
    (lambda r: _export(r, "--out", str(r / "fresh.onnx")), r"fresh\.json exists and edgeiqa did not write it"),
    # item 7: unwritable and wrong-kind outputs
    (lambda r: _export(r, "--out", "/proc/edgeiqa-nope/a.onnx"), "cannot write"),
    (lambda r: _export(r, "--out", str(r / "adir.onnx")), "is a folder; a file name is expected"),
    (lambda r: _export(r, "--out", str(r / "afile" / "a.onnx")), "is a file, not a folder"),
    (lambda r: _export(r, "--out", str(r / "model.tflite")), "writes .onnx files"),
    # OpenVINO's IR is two files: the .bin beside the .xml is checked like the artefact (or, without the extra, the
    # one line naming it comes first)
    (lambda r: _export(r, "--format", "openvino", "--out", str(r / "model.onnx")), r"writes \.xml files|edgeiqa\[openvino\]"),
    (lambda r: _export(r, "--format", "openvino", "--out", str(r / "weights.xml")),
     r"weights\.bin exists and edgeiqa did not write it|edgeiqa\[openvino\]"),
    # Core ML's package is a folder: the suffix is checked like a file's (or the missing extra's line comes first)
    (lambda r: _export(r, "--format", "coreml", "--out", str(r / "model.onnx")), r"writes \.mlpackage files|edgeiqa\[coreml\]"),
    (lambda r: _export(r, "--format", "executorch", "--out", str(r / "model.onnx")),
     r"writes \.pte files|edgeiqa\[executorch\]"),
    (lambda r: _export(r, "--format", "executorch-int8", "--dynamic-batch"), "does not take --dynamic-batch"),
    # item 8: opset and calibration data
    (lambda r: _export(r, "--opset", "-1"), "--opset must be"),
    (lambda r: _export(r, "--opset", "999"), "--opset 999 is more than"),
    (lambda r: _export(r, "--opset", "22", "--exporter", "torchscript"), "torchscript"),
    (lambda r: _export(r, "--calib", "nope"), "--calib"),
    (lambda r: _export(r, "--calib", f"folder:{r / 'nope'}"), "no such file or folder"),
    (lambda r: _export(r, "--calib", "csv:"), "needs a path"),
    (lambda r: _export(r, "--imgs", "0"), "--imgs must be >= 1"),
    (lambda r: _export(r, "--format", "onnxx"), "did you mean 'onnx'"),
    (lambda r: _export(r, "--format", "torch", "--opset", "17"), "does not take --opset"),
    # item 10: not a run folder nor an edgeiqa student checkpoint
    (lambda r: _export(r, target="notes.txt"), "not a torch checkpoint"),
    (lambda r: _export(r, target="other.pt"), "not an edgeiqa student checkpoint"),
    (lambda r: _export(r, target="empty"), "no student.pt"),
    (lambda r: _export(r, target="no-such-run"), "not found"),
    (lambda r: ["export"], "needs RUN_DIR"),
]

BENCH_CASES = [
    (lambda r: _bench(r, "--max-seconds", "-5"), "--max-seconds must be"),
    (lambda r: _bench(r, "--max-seconds", "nan"), "--max-seconds must be"),
    (lambda r: _bench(r, "--min-srcc", "2"), r"--min-srcc must be in \[-1, 1\]"),
    (lambda r: _bench(r, "--min-srcc", "-1.5"), r"--min-srcc must be in \[-1, 1\]"),
    (lambda r: _bench(r, "--calib-imgs", "0"), "--calib-imgs must be >= 1"),
    (lambda r: _bench(r, "--teachers", "/nope"), "--teachers /nope"),
    (lambda r: _bench(r, "--teachers", str(r / "userdir")), "no ensemble.json"),
    (lambda r: _bench(r, "--batch", "100000000"), "100000000 is more than"),
    (lambda r: _bench(r, "--batch", "0"), "batch size must be >= 1"),
    (lambda r: _bench(r, "--batch", "one"), "bad batch size"),
    (lambda r: _bench(r, "--threads", "100000"), "--threads 100000 is more than"),
    (lambda r: _bench(r, "--threads", "0"), "--threads must be >= 1"),
    (lambda r: _bench(r, "--warmup", "-1"), "--warmup must be >= 0"),
    (lambda r: _bench(r, "--runs", "0"), "--runs must be >= 1"),
    (lambda r: _bench(r, "--max-images", "0"), "--max-images must be >= 1"),
    (lambda r: _bench(r, "--data", f"csv:{r / 'nope.csv'}"), "no such file or folder"),
    (lambda r: _bench(r, "--data", "nope"), "--data"),
    (lambda r: _bench(r, "--calib", f"folder:{r / 'nope'}"), "--calib"),
    (lambda r: _bench(r, "--formats", "onxx"), "did you mean 'onnx'"),
    (lambda r: _bench(r, "--teacher-scores", "sometimes"), "invalid choice"),
    # item 7 and 10: outputs and the model folder, validated before any benchmarking
    (lambda r: _bench(r, "--out", str(r / "afile")), "is a file; a folder is expected"),
    (lambda r: _bench(r, "--out", str(r / "userdir")), "edgeiqa did not write it"),
    (lambda r: _bench(r, "--out", str(r / "teachers")), "is an edgeiqa teachers folder"),
    (lambda r: _bench(r, "--out", str(r / "run")), "holds an input"),
    (lambda r: _bench(r, "--out", "/proc/edgeiqa-nope/bench"), "cannot write"),
    (lambda r: _bench(r, target="notes.txt"), "not a torch checkpoint"),
    (lambda r: _bench(r, target="other.pt"), "not an edgeiqa student checkpoint"),
    (lambda r: _bench(r, target="empty"), "no student.pt"),
    (lambda r: _bench(r, target="no-such-run"), "not found"),
]


@pytest.mark.parametrize("case", range(len(EXPORT_CASES)))
def test_bad_export_arguments_are_refused_up_front(root, capsys, case):
    argv, match = EXPORT_CASES[case]
    assert_refused(argv(root), capsys, root, match)


@pytest.mark.parametrize("case", range(len(BENCH_CASES)))
def test_bad_bench_arguments_are_refused_up_front(root, capsys, case):
    argv, match = BENCH_CASES[case]
    assert_refused(argv(root), capsys, root, match)


def test_refusals_left_the_users_files_alone(root):
    assert (root / "existing.onnx").read_bytes() == b"someone else's model"
    assert (root / "weights.bin").read_bytes() == b"someone else's weights"
    assert json.loads((root / "existing.json").read_text()) == {"mine": True}
    assert (root / "userdir" / "notes.txt").read_text() == "mine"
    assert not (root / "export").exists() and not (root / "bench").exists()
