"""The package's import graph, read with `ast` (nothing is imported): no cycle among edgeiqa modules, no stage
importing a later stage, and a runtime that reaches no training code (issue 23; the layering rule of the design
notes: a stage may import earlier stages and the shared modules, never a later stage).

What counts as an import:
- every `import` and `from ... import` in a module, at module level or inside a function alike. A function-level
  (lazy) import only moves the cost of loading to the first call; the two modules still need each other, so a cycle
  through one is a cycle and a later stage imported lazily is still a later stage. (Measured when this test was
  written: counting them found one cycle, `runtime.pipeline` <-> `runtime.scorer`, which was removed; none is left
  that needs an exception.)
- `from edgeiqa.a import b` depends on the module `edgeiqa.a.b` when there is one, else on `edgeiqa.a` (the name
  is defined there). The parent packages Python initialises on the way do not count: every submodule would
  otherwise depend on the `__init__` that re-exports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgeiqa"

# The one table of the layering rule: every first-level module or subpackage of edgeiqa and its layer. A module may
# import modules of its own layer and of lower layers, never of a higher one. Layer 0 is the shared modules every
# stage uses (they import only each other); then the stages in pipeline order, the command line last.
LAYERS = {
    # shared: errors, tables, files, bounds, devices, metrics and losses, the trainer every training stage uses
    "edgeiqa": 0, "errors": 0, "registry": 0, "fileio": 0, "outsafe": 0, "bounds": 0, "provenance": 0,
    "safeload": 0, "runpaths": 0, "metrics": 0, "losses": 0, "accel": 0, "distributed": 0, "backbones": 0,
    "training": 0,
    # stages
    "data": 1,  # datasets, images, views, degradations, the sample set
    "profiles": 2,  # built-in TOML profiles (their views and copies are data's)
    "budget": 3,  # GMAC counting, any model
    "teachers": 4,
    "students": 5,
    "distill": 6,
    "export": 7,
    "runtime": 8,  # scores with an exported model; opens a `.pt` student through `students` (the torch backend)
    "bench": 9,
    "cli": 10, "__main__": 10,
}
# Training-side code the runtime must never reach, directly or through what it imports (a runtime-only install has
# no torch; the torch backend's `students` import is the deployed model itself, not training code).
TRAINING_SIDE = ("teachers", "budget", "distill", "training", "losses", "profiles")


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__) for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The edgeiqa module that defines `name` (a module, or an attribute of one)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> dict[str, int]:
    """{edgeiqa module imported: first line} for every import statement of `module`, lazy ones included."""
    path, is_pkg = MODULES[module]
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, one level up per extra dot
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        else:
            continue
        for name in names:
            owner = _owner(name) if name.split(".")[0] == "edgeiqa" else None
            if owner and owner != module:
                out.setdefault(owner, node.lineno)
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def _layer_name(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _cycles() -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_the_package():
    """Guards the walk itself: it finds the modules and the imports every reader knows are there."""
    assert len(MODULES) > 50 and "edgeiqa.runtime.scorer" in MODULES
    assert "edgeiqa.runtime.pipeline" in GRAPH["edgeiqa.runtime.scorer"]  # module level
    assert "edgeiqa.runtime" in GRAPH["edgeiqa.bench.runner"]  # function level (lazy)
    assert "edgeiqa.bench.accuracy" in GRAPH["edgeiqa.bench.runner"]  # `from edgeiqa.bench import accuracy`
    # the OpenVINO backend runs the IR through the export's runner (as TensorRT's does): checked like any import
    assert "edgeiqa.export.openvino_export" in GRAPH["edgeiqa.runtime.backends"]
    assert "edgeiqa.export.coreml_export" in GRAPH["edgeiqa.runtime.backends"]  # the Core ML runner, likewise
    assert "edgeiqa.export.litert_export" in GRAPH["edgeiqa.runtime.backends"]  # LiteRT's runner, the same way
    assert "edgeiqa.export.executorch_export" in GRAPH["edgeiqa.runtime.backends"]


def test_no_import_cycle():
    cycles = _cycles()
    detail = [" <-> ".join(c) + ": " + "; ".join(f"{a} imports {b} (line {GRAPH[a][b]})" for a in c for b in c
                                               if b in GRAPH[a]) for c in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_every_first_level_module_has_a_layer():
    missing = sorted({_layer_name(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"add these to LAYERS (shared = 0, or their stage): {missing}"


def test_no_stage_imports_a_later_stage():
    bad = [f"{a} (layer {LAYERS[_layer_name(a)]}) imports {b} (layer {LAYERS[_layer_name(b)]}), line {line}"
           for a, deps in sorted(GRAPH.items()) for b, line in sorted(deps.items())
           if LAYERS[_layer_name(b)] > LAYERS[_layer_name(a)]]
    assert not bad, "\n".join(bad)


def test_runtime_reaches_no_training_code():
    start = sorted(m for m in MODULES if _layer_name(m) == "runtime")
    seen, todo, via = set(start), list(start), {}
    while todo:
        m = todo.pop()
        for dep in GRAPH[m]:
            if dep not in seen:
                seen.add(dep)
                via[dep] = m
                todo.append(dep)
    bad = []
    for m in sorted(seen):
        if _layer_name(m) in TRAINING_SIDE:
            chain = [m]
            while chain[-1] in via:
                chain.append(via[chain[-1]])
            bad.append(" <- ".join(chain))
    assert not bad, "the runtime reaches training code:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    ("from edgeiqa.runtime.scorer import Scorer", {"edgeiqa.runtime.scorer"}),
    ("def f():\n    from edgeiqa.teachers import create_teacher\n", {"edgeiqa.teachers"}),
    ("from edgeiqa.bench import accuracy as acc", {"edgeiqa.bench.accuracy"}),
    ("import edgeiqa.data.views", {"edgeiqa.data.views"}),
    ("from . import scorer", {"edgeiqa.runtime.scorer"}),
    ("import numpy", set()),
])
def test_imports_are_resolved_to_the_module_that_defines_them(tmp_path, monkeypatch, source, expected):
    path = tmp_path / "probe.py"
    path.write_text(source)
    monkeypatch.setitem(MODULES, "edgeiqa.runtime.probe", (path, False))
    assert set(_imports("edgeiqa.runtime.probe")) == expected
