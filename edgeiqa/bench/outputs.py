"""Everything a bench run writes: bench.json, bench.csv and the two plots, in one folder."""

from __future__ import annotations

from pathlib import Path

from edgeiqa.bench.report import CSV_NAME, JSON_NAME, write_csv, write_json, write_plots
from edgeiqa.outsafe import check_out_dir, mark_dir


def write_outputs(report: dict, out: str | Path, plots: bool = True) -> list[Path]:
    """bench.json, bench.csv and (with plots) latency_vs_srcc.png + gmacs_vs_srcc.png in `out`.

    The paths are also recorded in report["files"]."""
    out = check_out_dir(out, "bench")  # never into a folder edgeiqa did not write, nor one of another kind
    mark_dir(out, "bench")
    files = [out / JSON_NAME, write_csv(report["rows"], out / CSV_NAME)]
    if plots:
        title = f"{report.get('student') or 'student'} on {(report.get('device') or {}).get('cpu_model', '')}"
        try:
            files += write_plots(report["rows"], out, title=title)
        except Exception as exc:  # noqa: BLE001 - plots never cost the numbers
            report.setdefault("warnings", []).append(f"plots not written: {type(exc).__name__}: {exc}")
    report["files"] = [str(p) for p in files]
    write_json(report, out / JSON_NAME)
    return files
