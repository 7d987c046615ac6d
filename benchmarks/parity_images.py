"""How many images does the export's parity check need to judge an SRCC bar?

    python benchmarks/parity_images.py RUN_DIR [--formats onnx-int8,openvino-int8,...] [--counts 16,32,48,64]

For each count N, the first N of the images the export's own parity check loads (`edgeiqa.export.parity.load_images`
on the run's data, test/val first: the same images `edgeiqa export` compares on), each existing artefact in
RUN_DIR/export of the asked rows run by the runtime's backend for its suffix, and its SRCC against torch on those N
images. A sound int8 artefact reads below a 0.99 bar on too few images when near-tied photos swap (each swapped pair
moves a 16-image SRCC by 0.003): this is what DEFAULT_SRCC_PARITY_IMAGES was chosen from. Writes
benchmarks/results/parity_images_sample.json (`--out` to change) with the commit, date and machine state.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "parity_images_sample.json"
SRCC_ROWS = "onnx-fp16,onnx-int8,openvino-int8,litert-fp16,litert-int8,executorch-int8"


def main(argv=None) -> int:
    from edgeiqa.bench.runner import export_formats_arg

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="a student run folder whose export/ holds the artefacts")
    ap.add_argument("--formats", type=export_formats_arg, default=SRCC_ROWS,
                    help=f"rows to read (default {SRCC_ROWS}); a row not exported is skipped")
    ap.add_argument("--counts", default="16,32,48,64", help="image counts to compare (default 16,32,48,64)")
    ap.add_argument("--data", default=None, help="dataset spec of the images (default: the run's data, as export uses)")
    ap.add_argument("--machine", default="2 CPU cores, no GPU", help="machine state recorded in the results")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    from edgeiqa.export.formats import FORMATS

    try:
        counts = sorted({int(c) for c in args.counts.split(",") if c.strip()})
    except ValueError:
        ap.error(f"--counts must be whole numbers, got {args.counts!r}")
    if not counts or counts[0] < 3:
        ap.error("--counts must be whole numbers >= 3 (an SRCC over fewer images says nothing)")
    names = args.formats
    if not (args.run_dir / "student.pt").is_file():
        ap.error(f"{args.run_dir}: no student.pt (a run folder from `distill`)")

    import torch
    from scipy.stats import spearmanr

    from edgeiqa.data.views import ViewSpec
    from edgeiqa.export import parity as par
    from edgeiqa.export import resolve_run
    from edgeiqa.fileio import write_json_atomic
    from edgeiqa.provenance import measured
    from edgeiqa.runtime.backends import open_backend
    from edgeiqa.students import load_student

    torch.set_num_threads(1)
    _, card, run = resolve_run(args.run_dir)
    model, payload = load_student(args.run_dir)
    model.drop_training_heads().eval()
    views = [ViewSpec.from_dict(v) for v in payload["views"]]
    images, source = par.load_images(args.data, (card or {}).get("profile"), counts[-1], par.PARITY_SPLITS)
    batches = par.view_batches(images, views)
    with torch.no_grad():
        ref = np.array([float(model(*[torch.from_numpy(b[v.name]) for v in views])[0]) for b in batches])
    rows = {}
    for name in names:
        artefact = Path(run) / "export" / FORMATS[name].filename
        if not artefact.exists():
            rows[name] = {"not_run": f"no export at {artefact}"}
            continue
        backend = open_backend(artefact, threads=1)
        scores = np.array([float(np.asarray(backend.run(b)).reshape(-1)[0]) for b in batches])
        rows[name] = {"bar_min_srcc": FORMATS[name].parity_min_srcc,
                      "srcc_vs_torch": {str(n): round(float(spearmanr(ref[:n], scores[:n])[0]), 4)
                                        for n in counts if n <= len(ref)}}
        print(name, rows[name]["srcc_vs_torch"], file=sys.stderr)
    doc = {"what": "SRCC vs torch of each artefact on the first N of the export's own parity images",
           "command": "python benchmarks/parity_images.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           **measured(ROOT, args.machine), "run_dir": str(args.run_dir), "images": source, "rows": rows}
    write_json_atomic(args.out, doc, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
