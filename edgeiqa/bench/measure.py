"""Timing and memory measurement for the bench: stable latency on a busy machine, peak RSS per model.

Latency (`time_runs`): `warmup` untimed calls, then up to `runs` timed calls of the same function on the
same pre-built input, with the garbage collector collected once and then disabled while timing. The
reported latency is the median (p50) and the 95th percentile of those calls; the median is what stays
put when another process steals the CPU for a moment. `max_seconds` caps a slow model's measurement
(the teacher ensemble): timing stops once that much time has been spent and at least `MIN_RUNS` calls
are in; warm-up stops after a third of it (at least one call). Whether a cap cut a measurement short is
recorded (`truncated`).

Memory (`PeakRSS`): resident set size above the level before the model was loaded (after garbage
collection and glibc's malloc_trim, so pages an earlier model freed are not silently reused). On Linux the
kernel's high-water mark (VmHWM) is reset through /proc/self/clear_refs and read back, which sees every
peak however short; elsewhere a thread samples the RSS every 2 ms (psutil).
"""

from __future__ import annotations

import gc
import statistics
import sys
import threading
import time
from typing import Callable

import numpy as np

MIN_RUNS = 5
SAMPLE_INTERVAL_S = 0.002


def time_runs(fn: Callable[[], object], *, warmup: int, runs: int, max_seconds: float | None = None,
              min_runs: int = MIN_RUNS) -> dict:
    """Time `fn()`: milliseconds per call (p50, p95, mean, min) over the timed runs; see the module doc."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    done_warm = 0
    start = time.perf_counter()
    for _ in range(max(0, warmup)):
        fn()
        done_warm += 1
        if max_seconds and time.perf_counter() - start > max_seconds / 3:
            break
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    times: list[float] = []
    try:
        start = time.perf_counter()
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if max_seconds and len(times) >= min(min_runs, runs) and time.perf_counter() - start > max_seconds:
                break
    finally:
        if was_enabled:
            gc.enable()
    ms = np.asarray(times) * 1e3
    return {
        "p50_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "runs": len(times),
        "warmup": done_warm,
        "truncated": len(times) < runs,
    }


def time_each(fn: Callable[[object], object], items) -> tuple[list[float], list]:
    """Milliseconds of `fn(item)` for each item (one call each) and the results."""
    out, ms = [], []
    for it in items:
        t0 = time.perf_counter()
        out.append(fn(it))
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms, out


def median_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else None


# ----------------------------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _read_hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc malloc_trim), so memory a previous
    model freed but the allocator kept does not hide the next model's growth."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _reset_hwm() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _read_hwm_bytes() is not None
    except OSError:
        return False


class PeakRSS:
    """Peak resident memory above a baseline taken at construction (before the model is loaded).

        mem = PeakRSS()          # baseline now
        ...load, run...
        mem.peak_delta_mb()      # peak since the baseline (or since the last reset_peak())
        mem.reset_peak()         # next window: the baseline stays, the peak restarts from now
    """

    def __init__(self):
        release_free_memory()
        self.baseline = _rss_bytes()
        self.method = "VmHWM" if _reset_hwm() else "sampled"
        self._peak = self.baseline
        self._stop = threading.Event()
        self._thread = None
        if self.method == "sampled":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self):
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            try:
                self._peak = max(self._peak, _rss_bytes())
            except Exception:  # noqa: BLE001 - the process is going away
                return

    def reset_peak(self) -> None:
        if self.method == "VmHWM":
            _reset_hwm()
        self._peak = _rss_bytes()

    def peak_bytes(self) -> int:
        now = _rss_bytes()
        peak = max(self._peak, now)
        if self.method == "VmHWM":
            peak = max(peak, _read_hwm_bytes() or 0)
        return peak

    def peak_delta_mb(self) -> float:
        return max(0.0, (self.peak_bytes() - self.baseline) / 2**20)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OtherLoad:
    """Share of the machine's CPU time that *other* processes used while the block ran (percent of all
    cores), from system-wide and own CPU times (psutil). On a shared machine it says when a latency was
    measured under contention: torch's thread pool in particular slows down by orders of magnitude when
    another process holds one of the cores it counts on.

        with OtherLoad() as load:
            ...timed calls...
        load.percent
    """

    def __enter__(self):
        import psutil

        self._proc = psutil.Process()
        self._sys0 = psutil.cpu_times()
        self._own0 = self._proc.cpu_times()
        self._t0 = time.perf_counter()
        self.percent = None
        return self

    def __exit__(self, *exc):
        import psutil

        wall = time.perf_counter() - self._t0
        sys1, own1 = psutil.cpu_times(), self._proc.cpu_times()

        def busy(t):
            return sum(t) - t.idle - getattr(t, "iowait", 0.0)

        other = (busy(sys1) - busy(self._sys0)) - ((own1.user + own1.system) - (self._own0.user + self._own0.system))
        cores = psutil.cpu_count() or 1
        if wall > 0:
            self.percent = round(max(0.0, min(100.0, 100.0 * other / (wall * cores))), 1)
