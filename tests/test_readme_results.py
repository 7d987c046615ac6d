"""The README's results table quotes its results files exactly, and the docs' links lead somewhere.

Each row of the table under `## Results` is named by its bold text. ROWS maps that name to the results file the row
quotes and, in order, the JSON path of every number in its "numbers" column. A number is compared as printed: the
file's value rounded to the printed decimals must read the same. A README number that drifts from its file, a number
without a path, or a row without an entry fails.

Adding a row: add it to the README table and one entry here. A path is dotted keys; `rows[NAME]` picks the element of
the list `rows` whose "row" is NAME. A row that quotes no numbers yet (to be measured) has an empty path list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results/"

ROWS: dict[str, tuple[str, list[str]]] = {
    "Main job, sample set": ("distill_fresh_clone.json", [
        "student.srcc_scene_mean", "teacher.srcc_scene_mean", "student.srcc", "teacher.srcc",
        "student.gmacs", "teacher.gmacs", "distill_s"]),
    "Leave-kinds-out": ("generalise.json", [
        "rows[teacher_ensemble].srcc_scene_mean", "rows[teacher_ensemble].srcc_scene_mean_std",
        "rows[student_distilled].srcc_scene_mean", "rows[student_distilled].srcc_scene_mean_std",
        "rows[student_small_distilled].gmacs",
        "rows[student_small_distilled].srcc_scene_mean", "rows[student_small_distilled].srcc_scene_mean_std",
        "rows[student_labels_only].srcc_scene_mean", "rows[student_labels_only].srcc_scene_mean_std"]),
    "Export parity, sample student": ("export_parity_sample.json", [
        "onnx-int8.srcc_vs_torch", "onnx.vs_truth.srcc_scene_mean", "onnx-int8.vs_truth.srcc_scene_mean",
        "onnx-int8.latency_ms_p50", "onnx-int8.speedup_vs_fp32"]),
    "Bench speed, sample student": ("bench_sample_must_hold.json", [
        "speedup.onnx_p50_ms", "speedup.teacher_p50_ms", "speedup.speedup_vs_teacher", "speedup.gmacs_ratio"]),
    "ONNX session speed": ("onnx_speed.json", [
        "rows.runtime.p50_ms", "rows.runtime.pct_ceiling", "rows.ort_default.p50_ms", "rows.no_spinning.p50_ms"]),
    "Every format, sample student": ("export_parity_formats_sample.json", [
        "n_images", "formats.openvino-int8.srcc_vs_torch", "formats.litert-int8.srcc_vs_torch",
        "formats.executorch-int8.srcc_vs_torch", "formats.onnx-int8.srcc_vs_torch", "formats.openvino-int8.bar.min_srcc",
        "formats.litert-int8.bar.min_srcc", "formats.executorch-int8.bar.min_srcc", "formats.onnx-int8.bar.min_srcc"]),
    "Every format's latency, sample student": ("export_formats_sample.json", [
        "p50_ms_batch1.onnx", "p50_ms_batch1.openvino", "p50_ms_batch1.litert", "p50_ms_batch1.executorch",
        "p50_ms_batch1.onnx-int8", "p50_ms_batch1.openvino-int8", "p50_ms_batch1.litert-int8",
        "p50_ms_batch1.executorch-int8", "p50_ms_batch1.onnx-fp16", "p50_ms_batch1.litert-fp16"]),
    "BIQ2021 student": ("real_biq2021.json", [
        "rows[student_distilled].srcc", "rows[student_distilled].plcc", "rows[student_distilled].gmacs",
        "rows[student_distilled].n_seeds", "rows[teacher_ensemble].srcc", "rows[teacher_ensemble].gmacs",
        "rows[teacher_ensemble].n_seeds",
        "rows[student_distilled].srcc_per_subset.ss02", "rows[teacher_ensemble].srcc_per_subset.ss02",
        "published[published_DeepEns].srcc"]),
    "Every format, BIQ2021 student": ("export_parity_formats_biq2021.json", [
        "n_images", "formats.onnx-int8.srcc_vs_torch", "formats.openvino-int8.srcc_vs_torch",
        "formats.litert-int8.srcc_vs_torch", "formats.executorch-int8.srcc_vs_torch", "torch_vs_truth.srcc",
        "formats.executorch-int8.vs_truth.srcc"]),
    "BIQ2021 export parity and speed": ("real_biq2021_runtime.json", [
        "rows[onnx].srcc", "rows[onnx].p50_ms_batch1", "rows[onnx-int8].srcc", "int8_srcc_over_fp32",
        "rows[onnx-int8].p50_ms_batch1"]),
}

# A quoted number: not part of a word or a name (ss02, Lite0, 2-core), optionally negative.
NUMBER = re.compile(r"(?<![\w.\-])[-−]?\d+(?:\.\d+)?(?![\w.\-])")
COLUMNS = ["result", "numbers", "command", "results file", "explained in"]


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row; `\\|` inside a cell is a literal bar."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _results_table() -> list[dict[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert _cells(lines[0]) == COLUMNS, lines[0]
    return [dict(zip(COLUMNS, _cells(line))) for line in lines[2:]]


def _name(row: dict[str, str]) -> str:
    m = re.match(r"\*\*(.+?)\*\*", row["result"])
    assert m, f"a results row starts with its name in bold: {row['result']!r}"
    return m.group(1)


def _lookup(data, path: str):
    for part in path.split("."):
        m = re.fullmatch(r"(\w+)\[(.+)\]", part)
        if m:
            key, name = m.groups()
            matches = [r for r in data[key] if r.get("row") == name]
            assert len(matches) == 1, f"{path}: {len(matches)} rows named {name!r}"
            data = matches[0]
        else:
            data = data[part]
    return data


def _as_printed(value, printed: str) -> str:
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return f"{float(value):.{decimals}f}"


def test_every_row_has_a_mapping_and_every_mapping_a_row():
    assert [_name(r) for r in _results_table()] == list(ROWS)


@pytest.mark.parametrize("name", list(ROWS))
def test_row_numbers_equal_its_results_file(name):
    row = next(r for r in _results_table() if _name(r) == name)
    file, paths = ROWS[name]
    named = list(dict.fromkeys(re.findall(r"[\w.-]+\.json", row["results file"])))
    assert named == [file], f"{name}: the row names {named}, the mapping {file}"
    for target in re.findall(r"\]\(([^)]+)\)", row["results file"]):
        assert target == RESULTS + file, f"{name}: the results link goes to {target}"
    assert row["command"].startswith("`"), f"{name}: the command column holds the command that made the file"
    printed = [n.replace("−", "-") for n in NUMBER.findall(row["numbers"])]
    assert len(printed) == len(paths), f"{name}: the row quotes {printed}, the mapping has {len(paths)} paths"
    if not paths:
        assert "not measured" in row["numbers"], f"{name}: a row without numbers says it is not measured"
        return
    data = json.loads((ROOT / RESULTS / file).read_text())
    for number, path in zip(printed, paths):
        assert _as_printed(_lookup(data, path), number) == number, (
            f"{name}: README says {number}, {file} {path} = {_lookup(data, path)}")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                                                       for p in (ROOT / "docs").glob("*.md"))])
def test_relative_links_resolve(page):
    """Every relative link of the README and docs/ leads to a file that exists, and to a heading it has."""
    path = ROOT / page
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{page}: link to {target} goes nowhere"
        if anchor:
            assert anchor in _anchors(dest), f"{page}: {target}: no heading with that anchor"
