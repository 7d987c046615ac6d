"""`run_bench`: every requested format of one trained student (and optionally the teacher ensemble)
measured the same way, one row per format and batch size. See `edgeiqa.bench` for the method."""

from __future__ import annotations

import gc
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeiqa.bench import accuracy as acc
from edgeiqa.bench.artefacts import check_run, obtain, validation_problems
from edgeiqa.bench.measure import OtherLoad, PeakRSS, median_or_none, time_each, time_runs
from edgeiqa.bench.report import empty_row
from edgeiqa.bounds import MAX_BATCH, check_cores, check_count, check_positive, usable_cores
from edgeiqa.errors import EdgeIQAError, did_you_mean
from edgeiqa.export.formats import FORMATS, Format, get_format, missing_modules

TEACHER = "teacher"
DEFAULT_FORMATS = ("torch", "onnx", "onnx-int8")
BENCH_VERSION = 1
PREPROCESS_IMAGES = 8
BAD_STATUSES = ("export failed", "benchmark failed", "failed validation")
ACCURACY_BATCH = 8  # images per call while scoring the eval set (scores do not depend on it)
TEACHER_CHECK_IMAGES = 4  # images scored live to check the teacher's saved predictions
TEACHER_SCORES = ("auto", "live", "saved")


@dataclass
class BenchOptions:
    formats: list[str] | None = None  # None: torch, onnx, onnx-int8 (+ tensorrt when it can run here)
    data: str | None = None  # dataset spec; None: the card's dataset
    batches: tuple[int, ...] = (1,)
    warmup: int = 5
    runs: int = 30
    threads: int | None = None  # None: all cores
    compare_teacher: bool = False
    teachers: str | None = None  # teachers folder; None: the card's
    calib: str | None = None  # calibration/parity data for new exports; None: the bench data
    calib_imgs: int | None = None
    max_images: int | None = None
    max_seconds: float = 15.0
    reuse: bool = True
    device: str = "cpu"
    precision: str = "fp32"  # autocast of the torch rows (student, teacher) on a GPU; ONNX/TensorRT run as exported
    min_srcc: float | None = None
    ceiling_seconds: float = 0.4
    teacher_scores: str = "auto"  # auto: saved predictions when complete and confirmed live; live; saved


def default_formats() -> list[str]:
    from edgeiqa.export.tensorrt_export import tensorrt_missing

    return list(DEFAULT_FORMATS) + ([] if tensorrt_missing() else ["tensorrt"])


def parse_formats(spec, teacher: bool = True) -> list[str]:
    """'onnx,onnx-int8' or a list -> canonical names (table order kept as given, duplicates dropped).
    `teacher` is accepted too unless `teacher=False` (export formats only). A misspelt name is an error that suggests
    the closest one."""
    if spec is None:
        return default_formats()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for raw in items:
        name = str(raw).strip().lower()
        if not name:
            continue
        if name == TEACHER and teacher:
            canon = TEACHER
        else:
            try:
                canon = get_format(name).name
            except EdgeIQAError:
                choices = [*FORMATS, TEACHER] if teacher else list(FORMATS)
                raise EdgeIQAError(f"unknown format {raw.strip()!r}{did_you_mean(name, choices, cutoff=0.4)} "
                                   f"(formats: {', '.join(choices)})") from None
        if canon not in out:
            out.append(canon)
    if not out:
        raise EdgeIQAError("--formats is empty")
    return out


def export_formats_arg(spec: str) -> list[str]:
    """argparse `type=` for a --formats of export formats only: parse_formats(teacher=False), its error argparse's."""
    import argparse

    try:
        return parse_formats(spec, teacher=False)
    except EdgeIQAError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_batches(spec) -> tuple[int, ...]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for raw in items:
        try:
            b = int(str(raw).strip())
        except ValueError:
            raise EdgeIQAError(f"bad batch size {raw!r}: expected integers such as 1,8") from None
        if b < 1:
            raise EdgeIQAError(f"batch size must be >= 1, got {b}")
        check_count("--batch", b, high=MAX_BATCH, what=f"{MAX_BATCH} images per batch (more fits no device here)")
        if b not in out:
            out.append(b)
    if not out:
        raise EdgeIQAError("--batch is empty")
    return tuple(out)


def check_options(opts: BenchOptions) -> None:
    """Every option's value, before anything is loaded, exported or written (one line, exit 2 each)."""
    from edgeiqa.bench.teacher import resolve_teachers_dir
    from edgeiqa.export.parity import check_spec

    parse_formats(opts.formats)
    opts.batches = parse_batches(opts.batches)
    check_count("--warmup", opts.warmup, low=0)
    check_count("--runs", opts.runs)
    check_cores("--threads", opts.threads)
    check_positive("--max-seconds", opts.max_seconds)
    check_count("--calib-imgs", opts.calib_imgs)
    check_count("--max-images", opts.max_images)
    if opts.min_srcc is not None and not -1.0 <= opts.min_srcc <= 1.0:  # NaN fails the comparison too
        raise EdgeIQAError(f"--min-srcc must be in [-1, 1] (an SRCC), got {opts.min_srcc}")
    if opts.teacher_scores not in TEACHER_SCORES:
        raise EdgeIQAError(f"--teacher-scores must be one of {', '.join(TEACHER_SCORES)}, got {opts.teacher_scores!r}")
    if opts.teachers:
        resolve_teachers_dir({}, Path("."), opts.teachers)
    check_spec("--data", opts.data)
    check_spec("--calib", opts.calib)


def _reason(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    if len(text) > 400:
        text = text[:400] + " ..."
    if isinstance(exc, EdgeIQAError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


@dataclass
class _Ctx:
    run: Path
    ckpt: Path
    card: dict
    sha: str
    opts: BenchOptions
    evalset: acc.EvalSet
    threads: int
    log: Callable[[str], None]
    params_m: float | None = None
    card_gmacs: float | None = None
    reference: dict | None = None  # torch raw scores {path: raw}
    preprocess: dict = field(default_factory=dict)  # views key -> {decode_ms, views_ms, n_images}


# ----------------------------------------------------------------------------------------------- helpers


def _views_key(views) -> str:
    return ",".join(f"{v.kind}@{v.size[0]}x{v.size[1]}" for v in views)


def _batch_items(ctx: _Ctx, prepare: Callable[[str], dict], batch: int) -> list[dict]:
    """`batch` prepared real images (the first eval images that load; repeated when there are fewer)."""
    prepared = []
    for p in ctx.evalset.paths:
        try:
            prepared.append(prepare(p))
        except EdgeIQAError:
            continue
        if len(prepared) >= batch:
            break
    if not prepared:
        raise EdgeIQAError(f"none of the images of {ctx.evalset.spec} could be loaded for timing")
    while len(prepared) < batch:
        prepared.append(prepared[len(prepared) % max(1, len(prepared))])
    return prepared


def _student_feeds(scorer, prepared: list[dict], batch: int) -> list[dict[str, np.ndarray]]:
    """Pre-built float32 inputs for one call at `batch` (chunks when the model has a fixed batch)."""
    from edgeiqa.data.views import to_batch
    from edgeiqa.runtime.pipeline import shape_key

    shapes = {shape_key(p) for p in prepared}
    if len(shapes) > 1:  # `full` views differ in shape per image: time one image repeated
        prepared = [prepared[0]] * batch
    feeds = {v.name: to_batch([p[v.name] for p in prepared]) for v in scorer.views}
    fixed = scorer.backend.fixed_batch
    if fixed is None or fixed == batch:
        return [feeds]
    chunks = []
    for i in range(0, batch, fixed):
        part = {k: a[i:i + fixed] for k, a in feeds.items()}
        n = next(iter(part.values())).shape[0]
        if n < fixed:
            part = {k: np.concatenate([a] + [a[-1:]] * (fixed - n)) for k, a in part.items()}
        chunks.append(part)
    return chunks


def _timing_columns(t: dict, batch: int) -> dict:
    return {"p50_call_ms": t["p50_ms"], "p50_ms": t["p50_ms"] / batch, "p95_ms": t["p95_ms"] / batch,
            "mean_ms": t["mean_ms"] / batch, "images_per_s": 1e3 * batch / t["p50_ms"] if t["p50_ms"] > 0 else None,
            "runs": t["runs"], "warmup": t["warmup"], "truncated": t["truncated"]}


def _scores_from(results) -> tuple[dict, dict, dict]:
    """(scores, raw scores, failures) by path from runtime ScoreResults."""
    scores, raw, failed = {}, {}, {}
    for r in results:
        if r.ok:
            scores[r.path] = r.score
            raw[r.path] = float(r.info.get("raw_score", r.score))
        else:
            failed[r.path] = r.error
    return scores, raw, failed


def _torch_reference(ctx: _Ctx) -> dict | None:
    """Raw torch scores on the eval images (the parity reference), computed once."""
    if ctx.reference is None:
        from edgeiqa.runtime import Scorer

        try:
            scorer = Scorer.load(ctx.ckpt, threads=ctx.threads, device=ctx.opts.device, precision=ctx.opts.precision)
            _, raw, _ = _scores_from(scorer.score(ctx.evalset.paths, batch_size=ACCURACY_BATCH))
            ctx.reference = raw
        except Exception as exc:  # noqa: BLE001 - parity is then unknown, the rest goes on
            ctx.log(f"torch reference for parity failed: {_reason(exc)}")
            ctx.reference = {}
    return ctx.reference


# ----------------------------------------------------------------------------------------------- rows


class _Model:
    """One model as `_measure` sees it: the student in one format (`_Student`) or the teacher ensemble (`_Teacher`).
    `open` loads it (and fills the row's facts into `base`), `views` is one decoded image's batched inputs (timed as
    views_ms), `prepare` a path's inputs, `timed_call` the call timed at a batch size, `evaluate` its scores of the
    eval set; `after_eval` gives columns counted while it is loaded, `finish` columns computed once it is closed."""

    key = ""  # preprocessing is measured once per key (the same views cost the same)

    def __init__(self, ctx: _Ctx, name: str, base: dict):
        self.ctx, self.name, self.base = ctx, name, base
        self.warnings: list[str] = []

    def after_eval(self) -> dict:
        return {}

    def finish(self) -> dict:
        return {}


def _preprocess_cost(ctx: _Ctx, model: _Model) -> dict:
    """Decode and views+normalisation cost per image (median over the first eval images), measured once per key."""
    from edgeiqa.data.images import load_image

    if model.key not in ctx.preprocess:
        dec_ms, imgs = [], []
        for p in ctx.evalset.paths[:PREPROCESS_IMAGES]:
            try:
                t0 = time.perf_counter()
                img = load_image(p)
                dec_ms.append((time.perf_counter() - t0) * 1e3)
                imgs.append(img)
            except EdgeIQAError:
                continue
        view_ms, _ = time_each(model.views, imgs)
        ctx.preprocess[model.key] = {"decode_ms": median_or_none(dec_ms), "views_ms": median_or_none(view_ms),
                                     "n_images": len(imgs)}
    return ctx.preprocess[model.key]


def _measure(ctx: _Ctx, model: _Model) -> list[dict]:
    """The rows of one model, measured the same way for every format and the teacher: preprocessing cost, one timed
    row per batch size (peak memory, other processes' load), then accuracy on the eval set. Any failure on the way
    is one `benchmark failed` row with the reason; the model is released before the next one is loaded."""
    opts, base, name = ctx.opts, model.base, model.name
    rows = []
    mem = PeakRSS()
    try:
        model.open()
        pre = _preprocess_cost(ctx, model)
        base.update(decode_ms=pre["decode_ms"], views_ms=pre["views_ms"],
                    preprocess_ms=None if pre["decode_ms"] is None else pre["decode_ms"] + (pre["views_ms"] or 0.0))
        for b in opts.batches:
            call = model.timed_call(_batch_items(ctx, model.prepare, b), b)
            with OtherLoad() as load:
                t = time_runs(call, warmup=opts.warmup, runs=opts.runs, max_seconds=opts.max_seconds)
            rows.append({**base, "batch": b, **_timing_columns(t, b), "peak_rss_mb": round(mem.peak_delta_mb(), 1),
                         "other_cpu_pct": load.percent})
            ctx.log(f"{name}: batch {b}: p50 {t['p50_ms'] / b:.2f} ms/image over {t['runs']} runs")
            mem.reset_peak()
            del call
        mem.close()
        t0 = time.perf_counter()
        scores, failed = model.evaluate()
        eval_s = round(time.perf_counter() - t0, 2)
        extra = model.after_eval()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - one model failing never stops the others
        ctx.log(f"{name}: benchmark failed: {_reason(exc)}")
        reason = "; ".join(x for x in (base["reason"], _reason(exc)) if x)
        return [{**base, "batch": None, "status": "benchmark failed", "reason": reason}]
    finally:
        mem.close()
        model.close()
        gc.collect()
    extra.update(model.finish())
    accuracy = acc.accuracy(ctx.evalset, scores)
    warn = list(model.warnings)
    if failed:
        warn.append(f"{len(failed)} image(s) failed, e.g. {next(iter(failed))}: {next(iter(failed.values()))}")
    for r in rows:
        r.update(accuracy, **extra, n_failed=len(failed), eval_s=eval_s)
        r["warnings"] = r["warnings"] + warn
    ctx.log(f"{name}: SRCC {accuracy['srcc']} on {accuracy['n_eval']} images ({eval_s:.1f} s)")
    return rows


class _Student(_Model):
    """The student exported to one format, run by the runtime Scorer (deployment preprocessing)."""

    def __init__(self, ctx: _Ctx, fmt: Format, artefact: Path, base: dict):
        super().__init__(ctx, fmt.name, base)
        self.fmt, self.artefact = fmt, artefact
        self.scorer = None
        self.raw: dict = {}

    def open(self) -> None:
        from edgeiqa.runtime import Scorer

        opts = self.ctx.opts
        torch_row = self.fmt.backend == "torch"
        self.scorer = Scorer.load(self.artefact, threads=self.ctx.threads, device=opts.device,
                                  precision=opts.precision if torch_row else None)
        self.base["provider"] = self.scorer.backend.provider
        if torch_row and opts.precision != "fp32":
            self.base["precision"] = f"{opts.precision} autocast"
        self.key = _views_key(self.scorer.views)

    def views(self, img) -> dict:
        from edgeiqa.data.views import make_views, to_batch

        v, _ = make_views(img, self.scorer.views, rng=None)
        return {name: to_batch([a]) for name, a in v.items()}

    def prepare(self, path: str) -> dict:
        return self.scorer.preprocess(path)[0]

    def timed_call(self, prepared: list[dict], batch: int) -> Callable[[], object]:
        chunks = _student_feeds(self.scorer, prepared, batch)
        run = self.scorer.backend.run
        return lambda: [run(c) for c in chunks]

    def evaluate(self) -> tuple[dict, dict]:
        scores, self.raw, failed = _scores_from(self.scorer.score(self.ctx.evalset.paths, batch_size=ACCURACY_BATCH))
        return scores, failed

    def close(self) -> None:
        self.scorer = None

    def finish(self) -> dict:
        """Parity with the torch student's raw scores (this row's own when it is the torch row: the reference)."""
        if self.fmt.name == "torch":
            self.ctx.reference = self.raw
            return {"parity_max_abs": 0.0, "parity_mean_abs": 0.0, "parity_srcc": 1.0}
        return acc.parity(_torch_reference(self.ctx), self.raw)


class _Teacher(_Model):
    """The teacher ensemble in torch: every active member on its own views, the ensemble mapping applied."""

    key = TEACHER

    def __init__(self, ctx: _Ctx, tdir: Path, base: dict):
        super().__init__(ctx, TEACHER, base)
        self.tdir = tdir
        self.ens = None

    def open(self) -> None:
        from edgeiqa.bench.teacher import TeacherEnsemble

        opts = self.ctx.opts
        self.ens = TeacherEnsemble(self.tdir, threads=self.ctx.threads, device=opts.device, precision=opts.precision)
        self.base.update(artefact=str(self.tdir), size_mb=round(self.ens.size_mb(), 3),
                         params_m=round(self.ens.params_m(), 3), status="ok")

    def views(self, img) -> dict:
        from edgeiqa.data.views import to_batch

        return {k: {n: to_batch([a]) for n, a in vs.items()} for k, vs in self.ens.views_of(img).items()}

    def prepare(self, path: str) -> dict:
        return self.ens.preprocess(path)

    def timed_call(self, prepared: list[dict], batch: int) -> Callable[[], object]:
        feeds, run = self.ens.feeds(prepared), self.ens.run
        return lambda: run(feeds)

    def evaluate(self) -> tuple[dict, dict]:
        scores, failed, note = _teacher_scores(self.ctx, self.ens)
        if note:
            self.warnings.append(note)
        return scores, failed

    def after_eval(self) -> dict:
        try:
            return {"gmacs": self.ens.gmacs()["total"]}
        except Exception as exc:  # noqa: BLE001 - fall back to the card's count
            self.warnings.append(f"fvcore could not count the teacher ({_reason(exc)}); GMACs from the card")
            return {"gmacs": (self.ctx.card.get("teacher") or {}).get("gmacs")}

    def close(self) -> None:
        self.ens = None


def _bench_format(ctx: _Ctx, fmt: Format) -> list[dict]:
    opts = ctx.opts
    base = empty_row(fmt.name, backend=fmt.backend, threads=ctx.threads, params_m=ctx.params_m, gmacs=ctx.card_gmacs)

    def one(**kw) -> list[dict]:
        return [{**base, "batch": None, **kw}]

    if fmt.backend == "tensorrt":
        from edgeiqa.export.tensorrt_export import tensorrt_missing

        missing = tensorrt_missing()
        if missing:
            return one(status="unavailable", reason="TensorRT needs " + " and ".join(missing))
    elif fmt.requires:
        from edgeiqa.export.formats import require_modules

        try:
            require_modules(fmt)
        except EdgeIQAError as exc:
            return one(status="unavailable", reason=str(exc))
    ctx.log(f"{fmt.name}: {'looking for an export of this checkpoint' if opts.reuse else 'exporting'}")
    try:
        art = obtain(ctx.run, fmt, ctx.sha, need_dynamic=max(opts.batches) > 1, calib=opts.calib or ctx.evalset.spec,
                     imgs=opts.calib_imgs, reuse=opts.reuse)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - one format failing never stops the others
        ctx.log(f"{fmt.name}: export failed: {_reason(exc)}")
        return one(status="export failed", reason=_reason(exc))
    meta = art.metadata
    g = meta.get("gmacs") or {}
    par = meta.get("parity") or {}
    problems = validation_problems(meta, fmt)
    base.update(artefact=str(art.path), reused=art.reused, export_s=art.export_s, size_mb=round(art.size_mb, 3),
                size_vs_fp32=(meta.get("size") or {}).get("ratio_to_fp32"),
                precision=meta.get("precision"), gmacs=g.get("card") or g.get("onnx_fvcore_convention") or ctx.card_gmacs,
                gmacs_match=g.get("match"), export_parity_max_abs=par.get("max_abs_diff"), warnings=list(art.warnings),
                status="failed validation" if problems else "ok", reason="; ".join(problems) or None)
    ctx.log(f"{fmt.name}: {'reusing' if art.reused else 'exported'} {art.path}"
            + ("" if art.reused else f" in {art.export_s:.1f} s"))
    if fmt.backend == "coreml":
        from edgeiqa.export.coreml_export import is_macos, not_runnable_reason

        if not is_macos():  # exported and checked (size on disk, GMACs); never timed nor scored here
            return one(status="unavailable", reason=not_runnable_reason())
    return _measure(ctx, _Student(ctx, fmt, art.path, base))


def _bench_teacher(ctx: _Ctx) -> list[dict]:
    from edgeiqa.bench.teacher import resolve_teachers_dir

    opts = ctx.opts
    base = empty_row(TEACHER, backend="torch", threads=ctx.threads, precision=opts.precision, provider=f"torch-{opts.device}")
    try:
        tdir = resolve_teachers_dir(ctx.card, ctx.run, opts.teachers)
    except EdgeIQAError as exc:
        return [{**base, "batch": None, "status": "unavailable", "reason": str(exc)}]
    ctx.log(f"teacher: loading the ensemble from {tdir}")
    return _measure(ctx, _Teacher(ctx, tdir, base))


def _match_paths(saved: dict[str, float], paths: list[str], tail: int = 3) -> dict[str, float]:
    """Saved scores keyed by the eval paths: exact path, else the same last `tail` path components when
    those are unique (the same dataset built in another cache folder). The live check guards the result."""
    out = {p: saved[p] for p in paths if p in saved}
    if len(out) == len(paths):
        return out
    by_tail: dict[tuple, str | None] = {}
    for k in saved:
        key = Path(k).parts[-tail:]
        by_tail[key] = None if key in by_tail else k
    for p in paths:
        if p not in out:
            k = by_tail.get(Path(p).parts[-tail:])
            if k is not None:
                out[p] = saved[k]
    return out


def _teacher_scores(ctx: _Ctx, ens) -> tuple[dict, dict, str | None]:
    """(scores, failures, note): the ensemble's scores of the eval images, live or from saved predictions."""
    mode = ctx.opts.teacher_scores
    paths = ctx.evalset.paths
    if mode in ("auto", "saved"):
        saved = ens.saved_scores()
        problem = None
        if saved is None:
            problem = "a member has no predictions.csv"
        else:
            saved = _match_paths(saved, paths)
        if saved is not None and not all(p in saved for p in paths):
            problem = f"predictions.csv covers {sum(p in saved for p in paths)} of the {len(paths)} eval images"
        elif saved is not None:
            check = paths[:TEACHER_CHECK_IMAGES]
            live, _ = ens.score(check, batch_size=ACCURACY_BATCH)
            diffs = [abs(live[p] - saved[p]) for p in check if p in live]
            spread = float(np.std([saved[p] for p in paths])) or 1.0
            if not diffs:
                problem = "the live check images could not be scored"
            elif max(diffs) > 1e-3 * max(1.0, spread):
                problem = f"saved predictions differ from a live run by up to {max(diffs):.3g} (stale teacher.pt?)"
            else:
                return ({p: saved[p] for p in paths}, {},
                        f"teacher SRCC from the members' saved predictions.csv through the ensemble mapping "
                        f"(matched a live run on {len(diffs)} images within {max(diffs):.2g})")
        if mode == "saved":
            raise EdgeIQAError(f"--teacher-scores saved: {problem}")
        ctx.log(f"teacher: scoring {len(paths)} images live ({problem})")
    scores, failed = ens.score(paths, batch_size=ACCURACY_BATCH)
    return scores, failed, None


# ----------------------------------------------------------------------------------------------- derived


def _derive(rows: list[dict], ceiling: dict, evalset: acc.EvalSet) -> str:
    """Ceiling fractions, speed-up and accuracy kept vs the teacher. Returns the metric `kept` uses."""
    kept_key = "srcc_scene_mean" if any(r.scene is not None for r in evalset.records) else "srcc"
    teacher = {r["batch"]: r for r in rows if r["format"] == TEACHER and r.get("p50_ms")}
    for r in rows:
        ips, g = r.get("images_per_s"), r.get("gmacs")
        if ips and g:
            r["achieved_gmacs_per_s"] = g * ips
            c = (ceiling.get(r["backend"]) or {}).get("best_gmacs_per_s")
            if c:
                r["ceiling_gmacs_per_s"] = c
                r["ceiling_fraction"] = r["achieved_gmacs_per_s"] / c
        t = teacher.get(r["batch"])
        if t is not None and r.get("p50_ms"):
            r["speedup_vs_teacher"] = t["p50_ms"] / r["p50_ms"]
            tk, rk = t.get(kept_key), r.get(kept_key)
            if tk and rk is not None and tk > 0:
                r["srcc_kept_vs_teacher"] = rk / tk
    return kept_key


def _gate(rows: list[dict], min_srcc: float | None) -> dict:
    if min_srcc is None:
        return {"min_srcc": None, "passed": True, "failing": []}
    failing = []
    for r in rows:
        if r["status"] != "ok":
            continue
        if r.get("srcc") is None:
            failing.append(f"{r['format']} (batch {r['batch']}): no SRCC (no labelled images scored)")
        elif r["srcc"] < min_srcc:
            failing.append(f"{r['format']} (batch {r['batch']}): SRCC {r['srcc']:.4f} < {min_srcc}")
    return {"min_srcc": min_srcc, "passed": not failing, "failing": failing}


def _params_m(ckpt: Path) -> float | None:
    from edgeiqa.safeload import load_weights

    try:
        payload = load_weights(ckpt, what="student checkpoint")
        state = payload.get("state_dict", {})
        return round(sum(v.numel() for k, v in state.items() if hasattr(v, "numel") and v.is_floating_point()
                         and "running_" not in k) / 1e6, 4)
    except Exception:  # noqa: BLE001
        return None


def run_bench(model_dir, opts: BenchOptions | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Benchmark the student of `model_dir` (a run folder) in every requested format; see edgeiqa.bench."""
    import torch

    from edgeiqa.bench.ceiling import machine_ceiling
    from edgeiqa.bench.device import device_info

    opts = opts or BenchOptions()
    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    check_options(opts)
    names = parse_formats(opts.formats)
    batches = opts.batches
    if opts.compare_teacher and TEACHER not in names:
        names.append(TEACHER)
    ckpt, card, run, sha = check_run(model_dir)
    spec = opts.data or acc.default_spec(card)
    evalset = acc.select_eval(spec, opts.max_images)  # a bad --data fails here, before any export
    threads = opts.threads or usable_cores()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ctx = _Ctx(run, ckpt, card, sha, opts, evalset, threads, log, params_m=_params_m(ckpt),
                   card_gmacs=(card.get("student") or {}).get("gmacs"))
        backends = {"torch"} if ("torch" in names or TEACHER in names) else set()
        for n in names:
            backend = None if n == TEACHER else FORMATS[n].backend
            if backend == "onnxruntime" or (backend == "openvino" and not missing_modules(FORMATS[n].runtime_requires)):
                backends.add(backend)
        log(f"device and machine ceiling ({threads} threads)")
        device = device_info(threads, opts.device)
        ceiling = machine_ceiling(threads, tuple(sorted(backends)), seconds=opts.ceiling_seconds,
                                  device=opts.device if opts.device.startswith("cuda") else "cpu")
        order = sorted(names, key=lambda n: (n != "torch", n == TEACHER))  # torch first: the parity reference
        rows: list[dict] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            for name in order:
                rows.extend(_bench_teacher(ctx) if name == TEACHER else _bench_format(ctx, FORMATS[name]))
    finally:
        torch.set_num_threads(old_threads)
    rank = {n: i for i, n in enumerate(names)}
    rows.sort(key=lambda r: (rank[r["format"]], r["batch"] or 0))
    kept_key = _derive(rows, ceiling, evalset)
    gate = _gate(rows, opts.min_srcc)
    return {
        "edgeiqa_bench": BENCH_VERSION,
        "model_dir": str(run),
        "checkpoint_sha256": sha,
        "student": (card.get("student") or {}).get("name"),
        "profile": card.get("profile"),
        "rows": rows,
        "device": device,
        "ceiling": ceiling,
        "preprocess": ctx.preprocess,
        "data": evalset.describe(),
        "settings": {"formats": names, "batches": list(batches), "warmup": opts.warmup, "runs": opts.runs,
                     "threads": threads, "threads_default": opts.threads is None, "max_seconds": opts.max_seconds,
                     "gc_disabled_while_timing": True, "statistic": "median (p50) and 95th percentile of the timed calls",
                     "model_time": "backend call on pre-built float32 inputs (decode and views excluded)",
                     "calib": opts.calib or evalset.spec, "reuse_exports": opts.reuse, "device": opts.device,
                     "precision": opts.precision,
                     "teacher_scores": opts.teacher_scores},
        "accuracy": {"kept_metric": kept_key,
                     "scores": "the runtime Scorer's output (deployment preprocessing, logistic mapping applied)",
                     "parity": "max |raw score diff| vs the torch student on the same images"},
        "gate": gate,
        "seconds": round(time.perf_counter() - t_start, 1),
    }


def exit_code(report: dict) -> int:
    """0 every row ok (or unavailable) and the --min-srcc gate passed; 1 otherwise."""
    bad = any(r["status"] in BAD_STATUSES for r in report["rows"])
    return 1 if bad or not report["gate"]["passed"] else 0
