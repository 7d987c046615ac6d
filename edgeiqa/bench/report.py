"""The bench's outputs: the row columns, a rich table on screen, bench.csv, bench.json and two plots
(latency vs SRCC with the Pareto front, GMACs vs SRCC) written with matplotlib's Agg backend."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from edgeiqa.fileio import atomic_path, write_text_atomic

# Every row carries every column (None where it does not apply), in this order (CSV header too).
COLUMNS = [
    "format", "batch", "status", "reason", "backend", "provider", "precision", "threads",
    "artefact", "reused", "export_s", "size_mb", "size_vs_fp32", "gmacs", "params_m",
    "p50_ms", "p95_ms", "mean_ms", "p50_call_ms", "images_per_s", "runs", "warmup", "truncated", "other_cpu_pct",
    "peak_rss_mb", "decode_ms", "views_ms", "preprocess_ms",
    "srcc", "plcc", "mae", "srcc_scene_median", "srcc_scene_mean", "original_score_mean", "n_eval", "n_failed", "eval_s",
    "parity_max_abs", "parity_mean_abs", "parity_srcc", "export_parity_max_abs", "gmacs_match",
    "achieved_gmacs_per_s", "ceiling_gmacs_per_s", "ceiling_fraction",
    "speedup_vs_teacher", "srcc_kept_vs_teacher", "warnings",
]

JSON_NAME, CSV_NAME = "bench.json", "bench.csv"
PLOT_LATENCY, PLOT_GMACS = "latency_vs_srcc.png", "gmacs_vs_srcc.png"


def empty_row(fmt: str, **values) -> dict:
    row = {c: None for c in COLUMNS}
    row["format"] = fmt
    row["warnings"] = []
    row.update(values)
    return row


def _clean(obj):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (TypeError, ValueError):
            return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json(report: dict) -> str:
    return json.dumps(_clean(report), indent=2, default=str)


def write_json(report: dict, path: Path) -> Path:
    return write_text_atomic(path, to_json(report) + "\n")


def write_csv(rows: list[dict], path: Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            out = []
            for c in COLUMNS:
                v = _clean(r.get(c))
                if isinstance(v, list):
                    v = " | ".join(str(x) for x in v)
                elif isinstance(v, float):
                    v = f"{v:.6g}"
                out.append("" if v is None else v)
            w.writerow(out)
    return path


# ----------------------------------------------------------------------------------------------- plots


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x = faster, higher y = better),
    sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _plot_rows(rows: list[dict]) -> list[dict]:
    """One point per format: its row at the smallest batch, when it has a latency and an SRCC."""
    seen, out = set(), []
    for r in sorted(rows, key=lambda r: (r["batch"] or 0)):
        if r["format"] in seen or r.get("p50_ms") is None or r.get("srcc") is None:
            continue
        seen.add(r["format"])
        out.append(r)
    return out


def write_plots(rows: list[dict], out: Path, title: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    pts = _plot_rows(rows)
    paths = []
    for name, xkey, xlabel in ((PLOT_LATENCY, "p50_ms", "latency p50 (ms / image)"),
                               (PLOT_GMACS, "gmacs", "GMACs / image")):
        fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
        usable = [r for r in pts if r.get(xkey) is not None]
        for r in usable:
            teacher = r["format"] == "teacher"
            ax.scatter(r[xkey], r["srcc"], s=60, marker="*" if teacher else "o",
                       color="tab:red" if teacher else ("tab:blue" if r["status"] == "ok" else "tab:orange"), zorder=3)
            ax.annotate(f"{r['format']}", (r[xkey], r["srcc"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if xkey == "p50_ms" and len(usable) > 1:
            front = [usable[i] for i in pareto_front([(r[xkey], r["srcc"]) for r in usable])]
            ax.plot([r[xkey] for r in front], [r["srcc"] for r in front], "--", color="gray", lw=1, zorder=2,
                    drawstyle="steps-post", label="Pareto front (faster and better)")
            ax.legend(loc="lower right", fontsize=8)
        xs = [r[xkey] for r in usable if r[xkey] and r[xkey] > 0]
        if xs and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("SRCC (pooled over the eval images)")
        ax.set_title(title or "edgeiqa bench", fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / name
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------- screen


def _f(v, spec=".2f", none="-"):
    if v is None:
        return none
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def render(report: dict, console=None) -> None:
    """The rows as a rich table, then device, preprocessing, ceiling and any failure reasons."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped into a file or a log: do not squeeze the table into 80 columns
            console = Console(width=200)
    t = Table(title=f"edgeiqa bench: {report.get('model_dir')}", title_style="bold", show_lines=False)
    cols = [("format", "left"), ("batch", "right"), ("status", "left"), ("MB", "right"), ("× fp32", "right"),
            ("GMACs", "right"),
            ("p50 ms", "right"), ("p95 ms", "right"), ("img/s", "right"), ("peak MB", "right"), ("SRCC", "right"),
            ("PLCC", "right"), ("MAE", "right"), ("SRCC scene mean", "right"), ("|Δ| vs torch", "right"), ("% ceiling", "right"), ("× teacher", "right"),
            ("busy %", "right")]
    for name, just in cols:
        t.add_column(name, justify=just, no_wrap=name in ("format", "status"))
    for r in report["rows"]:
        status = r["status"]
        style = {"ok": "green", "failed validation": "yellow", "unavailable": "dim"}.get(status, "red")
        t.add_row(
            r["format"], _f(r["batch"], "d"), f"[{style}]{status}[/{style}]", _f(r["size_mb"], ".1f"),
            _f(r["size_vs_fp32"], ".2f"), _f(r["gmacs"], ".3f"), _f(r["p50_ms"], ".2f"), _f(r["p95_ms"], ".2f"),
            _f(r["images_per_s"], ".1f"),
            _f(r["peak_rss_mb"], ".0f"), _f(r["srcc"], ".4f"), _f(r["plcc"], ".4f"), _f(r["mae"], ".3f"),
            _f(r["srcc_scene_mean"], ".4f"), _f(r["parity_max_abs"], ".2g"),
            _f(None if r["ceiling_fraction"] is None else 100 * r["ceiling_fraction"], ".1f"),
            _f(r["speedup_vs_teacher"], ".1f"), _f(r["other_cpu_pct"], ".0f"),
        )
    console.print(t)
    dev = report.get("device") or {}
    console.print(f"device: {dev.get('name')}; {dev.get('platform')}")
    settings = report.get("settings") or {}
    console.print(f"method: {settings.get('threads')} threads, {settings.get('warmup')} warm-up + up to "
                  f"{settings.get('runs')} timed runs per batch (median), gc off while timing, "
                  f"max {settings.get('max_seconds')} s per measurement")
    data = report.get("data") or {}
    console.print(escape(f"accuracy data: {data.get('spec')} [{data.get('split')}], {data.get('n_images')} images, "
                         f"{data.get('n_scenes')} scenes"), highlight=False)
    busy = [r["other_cpu_pct"] for r in report["rows"] if r.get("other_cpu_pct") is not None]
    if busy and max(busy) >= 20:
        console.print(f"[yellow]note[/yellow]: other processes used up to {max(busy):.0f}% of the CPU while timing "
                      "(busy %); latencies measured then are slower and noisier than on an idle machine")
    for key, pre in (report.get("preprocess") or {}).items():
        console.print(f"preprocessing ({key}): decode {_f(pre.get('decode_ms'))} ms + views "
                      f"{_f(pre.get('views_ms'))} ms per image (median over {pre.get('n_images')} images), "
                      "not included in the model latency")
    ceil = report.get("ceiling") or {}
    parts = [f"{k} {v['best_gmacs_per_s']:.1f} GMAC/s (GEMM {v['gemm_gmacs_per_s']:.1f}, conv {v['conv_gmacs_per_s']:.1f})"
             for k, v in ceil.items() if isinstance(v, dict) and "best_gmacs_per_s" in v]
    if parts:
        console.print("machine ceiling: " + "; ".join(parts))
    told = set()
    for r in report["rows"]:
        if r["reason"] and (r["format"], r["reason"]) not in told:
            told.add((r["format"], r["reason"]))
            console.print(f"[bold]{escape(r['format'])}[/bold]: {r['status']}: {escape(str(r['reason']))}", highlight=False)
    gate = report.get("gate")
    if gate and gate.get("min_srcc") is not None:
        verdict = "[green]passed[/green]" if gate["passed"] else f"[red]FAILED[/red]: {escape('; '.join(gate['failing']))}"
        console.print(f"--min-srcc {gate['min_srcc']}: {verdict}")
    for p in report.get("files") or []:
        console.print(f"wrote {p}", highlight=False)
