"""`edgeiqa score`: a folder of good and bad files -> one row per file, reasons for the bad ones, the rest
scored; decompression bombs refused before decoding; byte-identical CSVs across runs; exit codes."""

from __future__ import annotations

import csv
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeiqa.data.views import ViewSpec
from helpers import make_run

pytestmark = pytest.mark.usefixtures("one_thread")


def _astronaut() -> np.ndarray:
    import skimage

    return np.asarray(Image.open(Path(skimage.__file__).parent / "data" / "astronaut.png").convert("RGB"))


def export(run_dir: Path, calib: list[Path]) -> Path:
    from edgeiqa.export import export_model

    return export_model(run_dir, "onnx", calib=calib, imgs=len(calib), dynamic_batch=True, exporter="torchscript").path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_bomb_png(path: Path, side: int = 12000) -> None:
    """A 200-byte PNG whose header claims side x side pixels (144 MP by default): decoding would need
    gigabytes, so it must be refused from the header alone."""
    raw = zlib.compress(b"\0" * 64)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Every kind of file a user's photo folder holds."""
    d = tmp_path_factory.mktemp("photos")
    img = Image.fromarray(_astronaut()).resize((160, 120))
    img.save(d / "good.jpg", quality=90)
    (d / "nested" / "deeper").mkdir(parents=True)
    img.rotate(90, expand=True).save(d / "nested" / "deeper" / "good2.png")
    full = io.BytesIO()
    img.save(full, "JPEG", quality=90)
    (d / "truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (d / "empty.jpg").write_bytes(b"")
    img.convert("CMYK").save(d / "cmyk.jpg")
    gray16 = (np.linspace(0, 65535, 120 * 160).reshape(120, 160)).astype(np.uint16)
    Image.fromarray(gray16).save(d / "gray16.png")  # mode I;16
    rgba = img.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(d / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    img.save(d / "exif_rotated.jpg", exif=exif)
    Image.new("RGB", (1, 1), (200, 10, 10)).save(d / "tiny.png")
    (d / "notes.jpg").write_text("this is a text file with a .jpg name\n")
    (d / "readme.txt").write_text("a text file: listed with its reason, never dropped")
    write_bomb_png(d / "bomb.png")
    img.save(d / "anim.gif")  # any format Pillow opens is scored (GIF: the first frame)
    img.save(d / "noext", format="PNG")  # no extension at all, but a PNG inside
    (d / "album.jpg").mkdir()  # a folder named like an image: a row, and its contents are walked
    img.save(d / "album.jpg" / "inside.png")
    (d / "dangling.jpg").symlink_to(d / "gone.jpg")
    (d / "loop.jpg").symlink_to(d / "loop.jpg")
    (d / "nested" / "up").symlink_to(d)  # a symlinked folder that contains itself: not followed
    return d


EXPECTED = {
    "album.jpg": "is a folder, not an image",
    "album.jpg/inside.png": None,
    "anim.gif": None,
    "dangling.jpg": "dangling symlink",
    "loop.jpg": "symlink loop",
    "nested/up": "a loop",
    "noext": None,
    "readme.txt": "not an image",
    "bomb.png": "too large",
    "cmyk.jpg": None,
    "empty.jpg": "empty file",
    "exif_rotated.jpg": None,
    "good.jpg": None,
    "gray16.png": None,
    "nested/deeper/good2.png": None,
    "notes.jpg": "not an image",
    "rgba.png": None,
    "tiny.png": "too small",
    "truncated.jpg": "truncated",
}


@pytest.fixture(scope="module")
def model(tmp_path_factory, folder):
    run = make_run(tmp_path_factory.mktemp("run"), [ViewSpec("resize", (64, 64))])
    return export(run, [folder / "good.jpg", folder / "nested" / "deeper" / "good2.png"])


def _score(args, capsys=None):
    from edgeiqa.cli.main import main

    return main(["score", *map(str, args)])


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_folder_with_bad_files(folder, model, tmp_path):
    out = tmp_path / "scores.csv"
    rc = _score([folder, "--model", model, "--out", out, "--no-progress"])
    assert rc == 1  # some files failed
    rows = _read_csv(out)
    names = [Path(r["path"]).relative_to(folder).as_posix() for r in rows]
    assert names == sorted(EXPECTED)  # one row per entry, sorted; nothing dropped
    assert list(rows[0]) == ["path", "score", "status", "error"]
    for name, row in zip(names, rows):
        reason = EXPECTED[name]
        if reason is None:
            assert row["status"] == "ok" and row["error"] == "", row
            assert np.isfinite(float(row["score"])) and len(row["score"].split(".")[1]) == 6
        else:
            assert row["status"] == "error" and row["score"] == "", row
            assert reason in row["error"], row
    bomb = rows[names.index("bomb.png")]
    assert "refused before decoding" in bomb["error"]


def test_bomb_is_refused_without_decoding(folder, model):
    """The 144 MP header is refused from the header: the scorer never allocates the pixels."""
    import tracemalloc

    from edgeiqa.runtime import Scorer

    s = Scorer.load(model)
    tracemalloc.start()
    (res,) = s.score([folder / "bomb.png"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert not res.ok and "too large" in res.error
    assert peak < 50e6  # decoding 12000 x 12000 would need >= 144 MB


def test_same_folder_twice_is_byte_identical(folder, model, tmp_path):
    from edgeiqa.bounds import usable_cores

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    workers = str(min(3, usable_cores()))  # more than the usable cores is refused (issue 21)
    assert _score([folder, "--model", model, "--out", a, "--no-progress", "--workers", "1", "--batch", "3"]) == 1
    assert _score([folder, "--model", model, "--out", b, "--no-progress", "--workers", workers, "--batch", "3"]) == 1
    assert a.read_bytes() == b.read_bytes()


def test_all_ok_exit_zero_json_and_explicit_files(folder, model, tmp_path, capsys):
    odd = tmp_path / "photo.data"  # explicitly named files are tried whatever their extension
    odd.write_bytes((folder / "nested" / "deeper" / "good2.png").read_bytes())
    out = tmp_path / "scores.json"
    rc = _score([folder / "good.jpg", odd, folder / "good.jpg", "--model", model, "--out", out])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["files"] == 2 and doc["summary"]["failed"] == 0  # duplicates collapse
    assert [r["status"] for r in doc["results"]] == ["ok", "ok"]
    err = capsys.readouterr().err
    assert "scoring" in err and "img/s" in err  # the tqdm progress bar (with its rate) goes to stderr
    assert "scored 2/2 files" in err


def test_missing_path_is_a_usage_error(folder, model, tmp_path, capsys):
    """Issue 21 item 11: a PATH that does not exist is exit 2, one line, nothing written (not a CSV with an
    error row); a file that vanishes once the walk has it still gets its row (the walk's "file not found")."""
    out = tmp_path / "s.csv"
    rc = _score([folder / "good.jpg", folder / "nope.jpg", "--model", model, "--no-progress", "--out", out])
    assert rc == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"edgeiqa: error: {folder / 'nope.jpg'}: no such file or folder\n"
    assert list(tmp_path.iterdir()) == []


def test_face_view_adds_face_found_column(folder, tmp_path, capsys):
    import skimage

    run = make_run(tmp_path / "face_run", [ViewSpec("resize", (64, 64)), ViewSpec("face", (64, 64))])
    face_model = export(run, [folder / "good.jpg"])
    coffee = Path(skimage.__file__).parent / "data" / "coffee.png"
    astronaut = Path(skimage.__file__).parent / "data" / "astronaut.png"
    rc = _score([astronaut, coffee, "--model", face_model, "--no-progress", "--batch", "2"])
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["path", "score", "status", "error", "face_found"]
    by_name = {Path(r["path"]).name: r["face_found"] for r in rows}
    assert by_name == {"astronaut.png": "true", "coffee.png": "false"}


def test_bad_out_suffix_and_missing_model(folder, model, tmp_path, capsys):
    assert _score([folder, "--model", model, "--out", tmp_path / "x.txt"]) == 2
    assert ".csv, .jsonl or .json" in capsys.readouterr().err
    assert _score([folder, "--model", tmp_path / "none.onnx"]) == 2
    assert "model not found" in capsys.readouterr().err


def test_help_explains_flags(capsys):
    from edgeiqa.cli.main import main

    for cmd in ("score", "export"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        flags = ("--model", "--out", "--batch", "--workers", "--provider") if cmd == "score" else (
            "--format", "--dynamic-batch", "--calib", "--imgs", "--out", "--int8", "--workspace")
        for flag in flags:
            assert flag in text


def test_cli_with_onnx_model_imports_no_torch(folder, model):
    code = (
        "import sys\n"
        "from edgeiqa.cli.main import main\n"
        f"rc = main(['score', {str(folder / 'good.jpg')!r}, '--model', {str(model)!r}, '--no-progress'])\n"
        "bad = [m for m in ('torch', 'timm', 'edgeiqa.students', 'edgeiqa.teachers', 'edgeiqa.distill',\n"
        "                   'edgeiqa.cli.distill_cmd', 'edgeiqa.cli.bench_cmd', 'edgeiqa.cli.export_cmd',\n"
        # cold start: the exporter and its provenance code (importlib.metadata) are not the runtime's
        "                   'edgeiqa.export.exporter', 'edgeiqa.provenance', 'importlib.metadata') if m in sys.modules]\n"
        "assert rc == 0 and not bad, (rc, bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("path,score,status,error\n")


# --- issue 9 defect 4 / issue 11: empty input, streaming, resume ------------------------------------


def test_empty_input_is_an_error(model, tmp_path, capsys):
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    out = tmp_path / "s.csv"
    assert _score([empty, "--model", model, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing to score" in err
    assert not out.exists() and not Path(str(out) + ".part").exists()


def _many_photos(folder: Path, dest: Path, n: int) -> Path:
    """n distinct real images (crops of the astronaut at shifting offsets), in two sub-folders."""
    dest.mkdir()
    img = _astronaut()
    for i in range(n):
        sub = dest / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        y, x = (i * 3) % 300, (i * 7) % 270
        Image.fromarray(img[y: y + 200, x: x + 240]).save(sub / f"p{i:03d}.jpg", quality=88)
    (dest / "a" / "zz-not-an-image.jpg").write_text("text")
    return dest


def test_killed_run_plus_resume_equals_one_run(folder, model, tmp_path):
    """Kill `edgeiqa score` mid-way (SIGKILL: no cleanup), rerun with --resume: the same CSV, byte for byte,
    as one uninterrupted run; nothing scored before the kill is lost or scored twice."""
    import os
    import signal
    import time

    photos = _many_photos(folder, tmp_path / "many", 120)
    ref = tmp_path / "ref.csv"
    assert _score([photos, "--model", model, "--out", ref, "--no-progress", "--workers", "2", "--batch", "4"]) == 1
    out = tmp_path / "killed.csv"
    part = Path(str(out) + ".part")
    cmd = [sys.executable, "-m", "edgeiqa", "score", str(photos), "--model", str(model), "--out", str(out),
           "--no-progress", "--workers", "1", "--batch", "1", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if part.exists() and part.read_bytes().count(b"\n") >= 10:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = part.read_bytes().count(b"\n")
    assert 10 <= kept < 121 and not out.exists()
    rc = _score([photos, "--model", model, "--out", out, "--no-progress", "--workers", "2", "--batch", "4",
                 "--resume", "--json"])
    assert rc == 1
    assert out.read_bytes() == ref.read_bytes()
    assert not part.exists()
    # A second --resume on the finished file scores nothing new and changes nothing.
    assert _score([photos, "--model", model, "--out", out, "--no-progress", "--resume"]) == 1
    assert out.read_bytes() == ref.read_bytes()


def test_jsonl_output_and_json_summary(folder, model, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    rc = _score([folder / "good.jpg", folder / "nested" / "deeper", "--model", model, "--out", out, "--json",
                 "--no-progress"])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["good.jpg", "good2.png"]
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"] == 2 and summary["scored"] == 2 and summary["threads"] >= 1
    assert summary["workers"] == 2 and summary["batch"] == 8 and summary["images_per_s"] > 0


# --- issue 9 defects 6, 9, 11: arguments, metadata vs graph, threads --------------------------------


def test_misspelt_provider_suggests(folder, model, tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert _score([folder / "good.jpg", "--model", model, "--provider", "cpux", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'cpu'" in err
    assert not out.exists()
    assert _score([folder / "good.jpg", "--model", model, "--threads", "-1"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


def _with_metadata(model: Path, dest: Path, **changes) -> Path:
    import shutil

    from edgeiqa.export.metadata import embed_onnx_metadata, read_metadata

    shutil.copyfile(model, dest)
    meta = read_metadata(model)
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    embed_onnx_metadata(dest, meta)
    return dest


@pytest.mark.parametrize("changes, message", [
    ({"views": [{"kind": "resize", "size": [96, 96], "grid": 7}]}, "metadata view 'resize' is 96x96 but the graph input"),
    ({"views": [{"kind": "center", "size": [64, 64], "grid": 7}]}, "do not match its metadata views"),
    ({"edgeiqa_metadata": 99}, "metadata version 99, this runtime reads version 1"),
    ({"edgeiqa_metadata": None}, "no metadata version"),
])
def test_metadata_that_does_not_match_the_graph_is_refused(model, tmp_path, folder, capsys, changes, message):
    bad = _with_metadata(model, tmp_path / "bad.onnx", **changes)
    assert _score([folder / "good.jpg", "--model", bad, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_torch_model_defaults_to_one_thread_and_reports_it(folder, tmp_path, capsys):
    run = make_run(tmp_path / "run", [ViewSpec("resize", (64, 64))])
    rc = _score([folder / "good.jpg", "--model", run, "--out", tmp_path / "s.csv", "--json", "--no-progress"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 1
    rc = _score([folder / "good.jpg", "--model", run, "--out", tmp_path / "s.csv", "--json", "--no-progress",
                 "--threads", "2"])
    assert json.loads(capsys.readouterr().out)["threads"] == 2


def test_reduced_decode_by_default_and_full_decode_flag(model, tmp_path, capsys):
    """`edgeiqa score` decodes a large JPEG at a reduced scale for a resize-only model; --full-decode gives
    exactly the library's (training) pipeline."""
    from edgeiqa.runtime import Scorer

    big = tmp_path / "big.jpg"
    Image.fromarray(_astronaut()).resize((1024, 1024), Image.BICUBIC).save(big, quality=92)
    got = {}
    for extra in ((), ("--full-decode",)):
        assert _score([big, "--model", model, "--json", "--no-progress", *extra]) == 0
        doc = json.loads(capsys.readouterr().out)
        got[extra] = (doc["summary"]["fast_decode"], doc["results"][0]["score"])
    assert got[()][0] is True and got[("--full-decode",)][0] is False
    assert got[("--full-decode",)][1] == round(Scorer.load(model).score_one(big), 6)
    assert got[()][1] == round(Scorer.load(model, fast_decode=True).score_one(big), 6)


# --- issue 11: flat memory on huge folders, resume merges without loading every row ------------------


def _tiny_files(dest: Path, n: int) -> Path:
    """n tiny files (empty and text), 100 per sub-folder: rows with a reason, no decoding, no inference."""
    for i in range(n):
        sub = dest / f"d{i // 100:04d}"
        if i % 100 == 0:
            sub.mkdir(parents=True)
        (sub / f"f{i:06d}.jpg").write_bytes(b"" if i % 2 else b"not an image")
    return dest


def _peak_bytes(args) -> int:
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        assert _score(args) == 1
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_files(model, tmp_path, capsys):
    """Python memory peak of `edgeiqa score` on 4N files is within 0.5 MB of the peak on N files (before, the
    set of paths and the final in-memory sort grew by megabytes); the rows come out sorted and complete."""
    n = 1000
    peaks = {}
    for k in (n, 4 * n):
        d = _tiny_files(tmp_path / f"f{k}", k)
        out = tmp_path / f"s{k}.csv"
        _peak_bytes([d, "--model", model, "--out", out, "--no-progress", "--batch", "8"])  # warm imports/caches
        peaks[k] = _peak_bytes([d, "--model", model, "--out", out, "--no-progress", "--batch", "8"])
        rows = _read_csv(out)
        assert len(rows) == k and [r["path"] for r in rows] == sorted(r["path"] for r in rows)
        assert {r["status"] for r in rows} == {"error"} and {r["error"] for r in rows[:2]} == {"empty file (0 bytes)", "not an image (unrecognised format)"}
    capsys.readouterr()
    assert peaks[4 * n] - peaks[n] < 256 * 1024, peaks


def test_resume_after_new_files_equals_a_fresh_run(folder, model, tmp_path):
    """A finished OUT, new files added, --resume: only the new ones are scored and OUT equals a fresh run
    (the old rows are merged with the new ones in path order)."""
    photos = _many_photos(folder, tmp_path / "grow", 12)
    out = tmp_path / "s.csv"
    assert _score([photos, "--model", model, "--out", out, "--no-progress"]) == 1
    img = _astronaut()
    for name in ("a/p000b.jpg", "0first.jpg", "b/zlast.jpg"):
        Image.fromarray(img[:150, :180]).save(photos / name, quality=85)
    t0 = out.stat().st_mtime_ns
    assert _score([photos, "--model", model, "--out", out, "--no-progress", "--resume", "--json"]) == 1
    assert out.stat().st_mtime_ns >= t0
    ref = tmp_path / "ref.csv"
    assert _score([photos, "--model", model, "--out", ref, "--no-progress"]) == 1
    assert out.read_bytes() == ref.read_bytes()


# --- issue 21: output safety, odd names, torn resume, identical .json ---------------------------------


def test_out_that_is_an_input_or_inside_a_scanned_folder_is_refused(folder, model, tmp_path, capsys):
    """Item 2: `score data.csv --out data.csv` used to replace the user's CSV with one error row, and
    `score imgs --out imgs/s.csv` scored its own output on the next run."""
    data = tmp_path / "data.csv"
    data.write_text("image,score\nx.jpg,3\n")
    link = tmp_path / "link"
    link.symlink_to(folder)
    cases = [([data], data, "is also an input"),
             ([folder], folder / "s.csv", "lies inside"),
             ([link], folder / "s2.csv", "lies inside"),  # the scanned folder reached through a symlink
             ([folder / "good.jpg"], link / "good.jpg.json", None)]  # allowed: not inside a scanned folder
    for paths, out, message in cases:
        rc = _score([*paths, "--model", model, "--out", out, "--no-progress"])
        err = capsys.readouterr().err
        if message is None:
            assert rc == 0 and out.exists()
            out.unlink()
            continue
        assert rc == 2 and err.count("\n") == 1 and message in err, err
        assert out.exists() == (out == data) and not Path(f"{out}.part").exists()
    assert data.read_text() == "image,score\nx.jpg,3\n"


@pytest.mark.parametrize("name, foreign", [
    ("notes.csv", "my,notes\n1,2\n"),
    ("notes.json", '{"model": "mine", "results": []}\n'),
    ("notes.jsonl", '{"path": "a", "mine": 1}\n'),
])
def test_foreign_out_file_is_replaced_only_with_force(folder, model, tmp_path, capsys, name, foreign):
    """Item 3: an existing file edgeiqa did not write is refused unless --force; edgeiqa's own score file is
    replaced on a rerun without it."""
    out = tmp_path / name
    out.write_text(foreign)
    args = [folder / "good.jpg", "--model", model, "--out", out, "--no-progress"]
    assert _score(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "edgeiqa did not write it; pass --force" in err
    assert out.read_text() == foreign
    assert _score([*args, "--force"]) == 0
    first = out.read_bytes()
    assert first != foreign.encode()
    assert _score(args) == 0  # its own file now: replaced without --force
    assert out.read_bytes() == first


def test_foreign_part_file_is_not_deleted(folder, model, tmp_path, capsys):
    out = tmp_path / "s.csv"
    part = tmp_path / "s.csv.part"
    part.write_text("my own notes\n")
    assert _score([folder / "good.jpg", "--model", model, "--out", out, "--no-progress"]) == 2
    assert "s.csv.part exists and edgeiqa did not write it" in capsys.readouterr().err
    assert part.read_text() == "my own notes\n" and not out.exists()


def test_non_utf8_file_name_gets_its_row(folder, model, tmp_path, capsys):
    """Item 5: a name that is not UTF-8 crashed the CSV writer (UnicodeEncodeError, a .part left). It is
    written as its own bytes in CSV, escaped in JSON, and read back by --resume."""
    import os

    d = tmp_path / "odd"
    d.mkdir()
    raw = os.fsencode(d) + b"/bad\xff\xfename.jpg"
    with open(raw, "wb") as f:
        f.write((folder / "good.jpg").read_bytes())
    (d / "good.jpg").write_bytes((folder / "good.jpg").read_bytes())
    out = tmp_path / "s.csv"
    assert _score([d, "--model", model, "--out", out, "--no-progress"]) == 0
    lines = out.read_bytes().splitlines()
    assert lines[0] == b"path,score,status,error" and len(lines) == 3
    assert lines[1].startswith(raw + b",") and lines[1].endswith(b",ok,")
    assert not Path(f"{out}.part").exists()
    before = out.read_bytes()
    assert _score([d, "--model", model, "--out", out, "--no-progress", "--resume", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["new"] == 0  # both rows read back from the CSV, none rescored
    assert out.read_bytes() == before
    js = tmp_path / "s.json"
    assert _score([d, "--model", model, "--out", js, "--no-progress"]) == 0
    assert json.loads(js.read_text())["results"][0]["path"] == os.fsdecode(raw)


def test_resume_drops_a_torn_last_line_but_refuses_a_corrupt_middle(folder, model, tmp_path, capsys):
    """Item 12: what a crash leaves (a last line cut, even one followed by a newline) is dropped and its file
    scored again; a corrupt line with rows after it is refused before anything is loaded or rewritten."""
    ref = tmp_path / "ref.jsonl"
    args = [folder / "good.jpg", folder / "nested" / "deeper", "--model", model, "--no-progress"]
    assert _score([*args, "--out", ref]) == 0
    first, second = ref.read_bytes().splitlines(keepends=True)
    out = tmp_path / "s.jsonl"
    part = tmp_path / "s.jsonl.part"
    for torn in (second[:25], second[:25] + b"\n"):
        part.write_bytes(first + torn)
        assert _score([*args, "--out", out, "--resume"]) == 0
        assert out.read_bytes() == ref.read_bytes() and not part.exists()
        out.unlink()
    part.write_bytes(first + b"not a row\n" + second)
    assert _score([*args, "--out", out, "--resume"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"edgeiqa: error: --resume: {part} line 2 is corrupt (only a torn last line is dropped); " \
                      f"delete s.jsonl.part to start over"
    assert part.read_bytes() == first + b"not a row\n" + second and not out.exists()


def test_json_file_is_byte_identical_across_reruns(folder, model, tmp_path, capsys):
    """Item 13: timings, workers, batch and threads stay out of the written .json (they varied between
    reruns); they are in the --json summary on stdout."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    args = [folder / "good.jpg", folder / "nested" / "deeper", "--model", model, "--no-progress", "--json"]
    assert _score([*args, "--out", a, "--workers", "1", "--batch", "1", "--threads", "1"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert _score([*args, "--out", b, "--workers", "2", "--batch", "4"]) == 0
    assert a.read_bytes() == b.read_bytes()
    from edgeiqa.cli.score_cmd import FILE_SUMMARY_KEYS

    assert tuple(json.loads(a.read_text())["summary"]) == FILE_SUMMARY_KEYS
    assert said["images_per_s"] > 0 and said["workers"] == 1 and said["batch"] == 1 and said["threads"] == 1


def test_help_says_what_the_json_file_holds(capsys):
    from edgeiqa.cli.main import main

    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--force" in text
    assert "summary holds only files, scored, failed, backend, provider, device, precision and fast_decode" in text
    assert "(new, images_per_s, threads, workers, batch) is only in the --json summary on stdout" in text
