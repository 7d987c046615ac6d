"""bench: what a trained student costs and keeps, per deployable format, on the machine at hand.

    from edgeiqa.bench import BenchOptions, run_bench, write_outputs
    report = run_bench("runs/sample", BenchOptions(formats=["torch", "onnx", "onnx-int8"], compare_teacher=True))
    write_outputs(report, "runs/sample/bench")     # bench.json, bench.csv, two PNG plots

For every format of the formats table asked for (default torch, onnx, onnx-int8, plus tensorrt where it
can run): the artefact is reused when an export of this exact checkpoint exists (sidecar sha256), else
exported; its status is `ok`, `failed validation` (exported, but parity vs torch or the GMAC recount
missed the export's bar: still measured), `export failed`, `benchmark failed` (with the reason) or
`unavailable` (e.g. TensorRT without a GPU). One format failing never stops the others.

Method, chosen for stable numbers on a small shared machine:
- **threads**: one fixed intra-op thread count for torch and onnxruntime (default: every core the process
  may use), recorded in the report;
- **model time only**: each timed call is one backend call on a batch of real images whose views were
  built and normalised beforehand; decoding and view building are timed apart (`decode_ms`, `views_ms`,
  median per image over the first 8 images) because on large photos they can dominate;
- **warm-up** calls first (`--warmup`, default 5), then up to `--runs` timed calls (default 30) on the
  same pre-built batch with the garbage collector disabled; latency is the **median** (p50) and the 95th
  percentile of those calls divided by the batch size; throughput = batch / p50 call time. A slow model
  (the teacher ensemble) stops after `--max-seconds` (default 15) once 5 calls are in;
- **contention** is recorded, not hidden: `other_cpu_pct` is the share of the machine's CPU other
  processes used while a row was timed (torch's thread pool can slow down 10-100x when another process
  holds a core it counts on; onnxruntime much less) -- compare runs taken at low values;
- **memory**: peak RSS during model load, warm-up and timed calls minus the RSS before loading (Linux:
  the kernel's high-water mark, reset per measurement);
- **accuracy**: the runtime `Scorer` scores the data's test split (else every labelled image) exactly as in
  deployment (same decode, views and logistic mapping); SRCC/PLCC pooled and per-scene median/mean;
  parity = max |raw score difference| vs the torch student on the same images;
- **ceiling**: a float32 GEMM and 3x3 conv timed on torch and onnxruntime at the same thread count give
  this machine's dense GMAC/s; each row reports its achieved GMAC/s (GMACs x images/s) and the fraction;
- **teacher** (`--compare-teacher`): the whole ensemble in torch (every member, every view, the ensemble
  mapping; channels-last, as the teachers' own code runs it) timed the same way, so `speedup_vs_teacher`
  (teacher p50 / row p50 at the same batch) and `srcc_kept_vs_teacher` (per-scene mean SRCC when the
  data has scenes, else pooled SRCC, over the teacher's) come from one run. Its accuracy uses the
  members' saved predictions.csv when they cover every image and agree with a live run on 4 images
  (`--teacher-scores live` recomputes all: minutes on a 2-core CPU).
Repeatability: p50 of two consecutive runs agree within 25 % on a noisy 2-core machine
(benchmarks/bench_sample.py checks it).
"""

from edgeiqa.bench.outputs import write_outputs
from edgeiqa.bench.report import COLUMNS
from edgeiqa.bench.runner import BenchOptions, default_formats, exit_code, parse_formats, run_bench

__all__ = ["BenchOptions", "COLUMNS", "run_bench", "write_outputs", "exit_code", "parse_formats", "default_formats"]
