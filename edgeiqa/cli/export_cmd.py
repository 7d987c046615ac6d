"""`edgeiqa export RUN_DIR --format F`: a trained student -> ONNX / int8 / fp16 / OpenVINO / Core ML / TensorRT / torch
artefact."""

from __future__ import annotations

import argparse
import sys

from edgeiqa.cli.common import print_json
from edgeiqa.export.formats import FORMATS, render_table

EPILOG = """\
formats (one table drives export, the runtime and bench):
{table}

Every export: drops the training-only heads; checks the graph with onnx.checker; recounts the GMACs on
the exported graph and compares them with the card (fvcore convention: 1 MAC = 1 fused multiply-add,
BatchNorm folded by the exporter added back; > 1 % difference is flagged); scores real images with torch
and with the exported model and reports max/mean |diff| and the SRCC between the two; writes the
metadata (profile, views, input sizes, normalisation, logistic mapping, GMACs, parity, size vs the
float32 ONNX graph, checkpoint sha256, versions) into the ONNX model (metadata_props "edgeiqa"), the
OpenVINO IR (rt_info "edgeiqa") and into a .json sidecar. The views share one backbone, so every graph
stores each weight once. openvino and openvino-int8 need `pip install 'edgeiqa[openvino]'` (without it:
one line naming that command, exit 2, nothing written).
litert, litert-fp16 and litert-int8 (.tflite, converted by litert-torch at batch 1, metadata in the flatbuffer's
metadata table "edgeiqa") need `pip install 'edgeiqa[litert]'` likewise; they take --calib and --imgs only (no
--dynamic-batch: a .tflite has static shapes).
coreml (float16) and coreml-int8 (int8 weights, float16 compute) write a Core ML .mlpackage folder (iOS 16+,
metadata in its user_defined_metadata "edgeiqa" and the .json sidecar) and need `pip install 'edgeiqa[coreml]'`.
Core ML runs only on macOS: elsewhere their parity is reported as not runnable (never as passed), while the
spec, the metadata, the int8 weights and the size on disk are checked.
executorch and executorch-int8 (.pte, XNNPACK, batch 1) need `pip install 'edgeiqa[executorch]'`; the program carries the runtime's metadata in a constant
method `edgeiqa_metadata`, the full document is the sidecar's (docs/export-executorch.md).

exit code: 0 exported and checked; 1 exported but parity is below the format's bar or the GMACs do not
match the card; 2 a usage error (unknown format, a flag the format does not take, missing run, an --out
that is an input or a file edgeiqa did not write, ...), refused before anything is loaded or written.

examples:
  edgeiqa export runs/sample --format onnx --dynamic-batch
  edgeiqa export runs/sample --format onnx-int8 --calib sample --imgs 128
  edgeiqa export runs/sample --format openvino-int8 --calib sample --imgs 128
  edgeiqa export runs/sample --format coreml-int8
  edgeiqa export runs/sample --format litert-int8 --calib sample --imgs 128
  edgeiqa export runs/sample --format executorch-int8 --calib sample --imgs 128
  edgeiqa export runs/sample --format tensorrt --fp16 --dynamic-batch --max-batch 16 --workspace 2
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained student (ONNX, ONNX int8/fp16, OpenVINO fp32/int8, LiteRT fp32/fp16/int8, Core ML fp16/int8, "
        "TensorRT, torch) with parity and "
        "GMAC checks",
        description="Export the student of a run folder to a deployable format, check it against torch on "
        "real images and recount its GMACs on the exported graph.",
        epilog=EPILOG.format(table=render_table()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                   help="run folder holding student.pt and card.json (from `edgeiqa distill`), or a student .pt file")
    p.add_argument("--format", "-f", dest="fmt", default="onnx", metavar="F",
                   help=f"output format: {', '.join(FORMATS)} (default: onnx); a misspelt name suggests the closest")
    p.add_argument("--dynamic-batch", action="store_true", default=None,
                   help="leave the batch dimension dynamic (default: fixed batch of 1, what mobile runtimes and "
                   "TensorRT build fastest for); `full` views always get dynamic height/width")
    p.add_argument("--calib", metavar="SPEC", default=None,
                   help="dataset spec of real images for int8 calibration and the parity check "
                   "(sample, csv:PATH, folder:DIR, ...; default: the run profile's data, else sample). "
                   "Calibration prefers train/val images, parity prefers test/val images")
    p.add_argument("--imgs", type=int, metavar="N", default=None,
                   help="number of images for calibration and parity (default for parity: 16, 64 for the fp16 and int8 rows "
                   "judged by SRCC; calibration "
                   "128 for onnx-int8, openvino-int8 and executorch-int8, 500 for tensorrt --int8; TensorRT warns under 300)")
    p.add_argument("--out", metavar="PATH", default=None,
                   help="artefact path (default: RUN_DIR/export/<format's file name>); the metadata sidecar "
                   "is written beside it with the suffix .json. An existing file there is replaced only when "
                   "edgeiqa exported it (its metadata says so), else the export is refused; never an input")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out file (and the .json beside it) that edgeiqa did not write")
    p.add_argument("--opset", type=int, metavar="N", default=None, help="ONNX opset version (default: the exporter's)")
    p.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default=None,
                   help="torch exporter: auto (default) tries the dynamo exporter and falls back to the TorchScript "
                   "one (dynamo=False) if it fails, recording why; or force one")
    p.add_argument("--fp16", action="store_true", default=None, help="tensorrt: allow fp16 kernels")
    p.add_argument("--int8", action="store_true", default=None,
                   help="tensorrt: int8 with entropy calibration (cache file beside the engine; head kept in float)")
    p.add_argument("--workspace", type=float, metavar="GB", default=None,
                   help="tensorrt: builder workspace memory-pool limit in GiB (default 4), separate from the shapes")
    p.add_argument("--max-batch", type=int, metavar="N", default=None,
                   help="tensorrt: largest batch of the optimisation profile with --dynamic-batch (default 8)")
    p.add_argument("--list-formats", action="store_true", help="print the formats table and exit")
    p.add_argument("--json", action="store_true", help="print the result (paths, GMACs check, parity) as JSON on stdout")
    p.set_defaults(func=run)


def _fmt_parity(par: dict | None) -> str:
    if not par:
        return "parity: -"
    if "skipped" in par:
        return f"parity: skipped ({par['skipped']})"
    bar = par["bar"]
    bar_txt = f"max |diff| <= {bar['max_abs_diff']:g}" if bar.get("max_abs_diff") is not None else f"SRCC >= {bar['min_srcc']}"
    srcc = "n/a" if par["srcc"] is None else f"{par['srcc']:.4f}"
    src = (par.get("images") or {}).get("source", "?")
    return (f"parity vs torch on {par['n_images']} images ({src}): max |diff| {par['max_abs_diff']:.3g}, "
            f"mean |diff| {par['mean_abs_diff']:.3g}, SRCC {srcc} -> {'OK' if par['ok'] else 'BELOW BAR'} ({bar_txt})")


def _fmt_gmacs(g: dict) -> str:
    if "onnx_graph_macs" not in g:
        return f"GMACs: card {g.get('card')} ({g.get('note', '')})"
    card = "n/a" if g["card"] is None else f"{g['card']:.4f}"
    bn = g["folded_batchnorm"] or 0.0
    diff = "n/a" if g["rel_diff"] is None else f"{100 * g['rel_diff']:.2f}%"
    verdict = {True: "OK", False: "MISMATCH", None: "not checked (no GMACs on the card)"}[g["match"]]
    return (f"GMACs: exported graph {g['onnx_graph_macs']:.4f} (MAC ops) + {g['onnx_graph_norm_ops']:.4f} (norm ops) "
            f"+ {bn:.4f} (BatchNorm folded by the exporter) = {g['onnx_fvcore_convention']:.4f} vs card {card} "
            f"(diff {diff}) -> {verdict}")


def run(args) -> int:
    if args.list_formats:
        print(render_table())
        return 0
    if not args.run_dir:
        from edgeiqa.errors import EdgeIQAError

        raise EdgeIQAError("export needs RUN_DIR (a run folder with student.pt and card.json)")
    from edgeiqa.export import export_model

    flags = {"opset": args.opset, "exporter": args.exporter, "fp16": args.fp16, "int8": args.int8, "workspace": args.workspace,
             "max_batch": args.max_batch}
    res = export_model(args.run_dir, args.fmt, dynamic_batch=args.dynamic_batch, calib=args.calib, imgs=args.imgs,
                       out=args.out, force=args.force, **flags)
    gm, par = res.metadata.get("gmacs") or {}, res.parity
    failed = (par is not None and par.get("ok") is False) or gm.get("match") is False
    if args.json:
        print_json({**res.summary(), "ok": not failed})
    else:
        exp = res.metadata.get("export") or {}
        size = res.summary()["size_bytes"] / 1e6
        ratio = (res.metadata.get("size") or {}).get("ratio_to_fp32")
        vs = f", {ratio:.2f}x the fp32 ONNX" if ratio is not None and res.metadata.get("precision") != "fp32" else ""
        print(f"exported {res.format} -> {res.path} ({size:.1f} MB{vs}); metadata sidecar {res.sidecar}")
        cml = res.metadata.get("coreml")
        if cml:  # its `export` section is the ONNX graph the GMACs were recounted on, not the artefact
            print(f"converter: {cml['converter']}, coremltools {cml['coremltools']} (which says it was tested with torch "
                  f"up to {cml['torch_max_tested_by_coremltools']}; torch here {cml['torch']}), target "
                  f"{cml['minimum_deployment_target']}")
        elif exp:
            fb = f" (dynamo failed: {exp['exporter_fallback_reason']})" if exp.get("exporter_fallback_reason") else ""
            print(f"exporter: {exp.get('exporter')}{fb}, opset {exp.get('opset')}, onnx.checker {exp.get('checker')}")
        print(_fmt_gmacs(gm))
        print(_fmt_parity(par))
    for w in res.warnings:
        print(f"edgeiqa: warning: {w.removeprefix('edgeiqa: ')}", file=sys.stderr)
    return 1 if failed else 0
