"""What can be measured of Core ML exports on Linux: `python benchmarks/coreml_export.py PKG.mlpackage... --out F`.

For each package `edgeiqa export --format coreml / coreml-int8` wrote: size on disk (every file in the folder), the
ratio to the float32 ONNX graph recorded at export, how its weights are stored (read back from the saved MIL
program: int8 tensors and elements, float tensors left), the spec's inputs and outputs (edgeiqa's own reader), the
parity status the export recorded (on Linux: not runnable), and the coremltools / torch versions with the torch
version coremltools says it was tested with. Prediction and latency need macOS and are not measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("packages", nargs="+", help=".mlpackage folders written by edgeiqa export")
    ap.add_argument("--out", default=None, help="write the results JSON here")
    ap.add_argument("--machine", default="2 CPU cores, no GPU", help="machine state recorded in the results")
    ap.add_argument("--student", default=None, help="what the student is (recorded)")
    args = ap.parse_args(argv)

    from edgeiqa.export.coreml_export import check_package, program_of, torch_support, weight_summary
    from edgeiqa.export.formats import artefact_bytes
    from edgeiqa.export.metadata import read_metadata
    from edgeiqa.provenance import measured

    rows = []
    for p in map(Path, args.packages):
        meta = read_metadata(p)
        desc = check_package(p)
        rows.append({
            "format": meta["format"], "package": p.name, "bytes_on_disk": artefact_bytes(p),
            "files": sorted(str(f.relative_to(p)) for f in p.rglob("*") if f.is_file()),
            "ratio_to_fp32_onnx": (meta.get("size") or {}).get("ratio_to_fp32"),
            "fp32_onnx_bytes": (meta.get("size") or {}).get("fp32_onnx_bytes"),
            "weights": weight_summary(program_of(p)),
            "inputs": desc["inputs"], "outputs": desc["outputs"],
            "gmacs_match": (meta.get("gmacs") or {}).get("match"),
            "parity": meta.get("parity"),
            "float_layers": (meta.get("quantization") or {}).get("float_layers"),
        })
    results = {**measured(Path(__file__).resolve().parents[1], args.machine), "command": " ".join(sys.argv),
               "student": args.student, "versions": torch_support(), "packages": rows}
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
