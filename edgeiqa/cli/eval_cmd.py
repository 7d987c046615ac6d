"""`edgeiqa eval`: metrics of a student, a teacher ensemble or an exported model on any dataset spec."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgeiqa.cli.common import add_accel_args, fmt_groups, fmt_metric, print_json
from edgeiqa.errors import EdgeIQAError, did_you_mean
from edgeiqa.runpaths import resolve_run_path


def _is_teacher(model: Path, teacher: bool) -> bool:
    return teacher or (model / "ensemble.json").exists()


def _teacher_dir(model: Path) -> Path:
    """The teachers folder of --model: itself, or the one its run card names."""
    if (model / "ensemble.json").exists():
        return model
    if not (model / "card.json").exists():
        raise EdgeIQAError(f"--teacher: {model} is neither a teachers folder (ensemble.json) nor a run (card.json)")
    try:
        raw = (json.loads((model / "card.json").read_text()).get("teacher") or {}).get("dir") or "teachers"
    except (ValueError, AttributeError):
        raise EdgeIQAError(f"{model / 'card.json'} is not a run card (bad JSON)") from None
    tdir = resolve_run_path(raw, model)
    if not (tdir / "ensemble.json").exists():
        raise EdgeIQAError(f"teachers folder {tdir} from {model / 'card.json'} has no ensemble.json")
    return tdir


def _scores_for(model: Path, paths: list[str], teacher: bool, progress: bool, device: str,
                precision: str) -> tuple[dict, dict, dict]:
    """path -> score, path -> error and the compute used ({device, precision, ...}) for --model."""
    if _is_teacher(model, teacher):
        from edgeiqa.accel import resolve_accel
        from edgeiqa.teachers.pipeline import score_with_ensemble

        accel = resolve_accel(device, precision)
        return (*score_with_ensemble(_teacher_dir(model), paths, progress=progress, accel=accel), accel.describe())
    from edgeiqa.runtime import Scorer

    scorer = Scorer.load(model, device=device, precision=precision)
    results = scorer.score(paths)
    scores = {str(r.path): r.score for r in results if r.error is None}
    errors = {str(r.path): r.error for r in results if r.error is not None}
    compute = {"device": scorer.backend.device, "precision": getattr(scorer.backend, "precision", "fp32"),
               "backend": scorer.backend.name, "provider": scorer.backend.provider}
    return scores, errors, compute


def _check_args(args) -> Path:
    """The model, --device and --precision, before the data is read or any model loaded (exit 2, one line)."""
    from edgeiqa.runtime.scorer import check_device_name, check_model_path, check_precision_name

    check_device_name(args.device)
    check_precision_name(args.precision)
    model = Path(args.model)
    if not model.exists():
        raise EdgeIQAError(f"model not found: {model}")
    if not _is_teacher(model, args.teacher):
        if check_model_path(model, args.precision) != "torch":
            return model  # an ONNX model's device is onnxruntime's provider, checked when it opens
        if model.is_dir() and not (model / "student.pt").is_file():
            raise EdgeIQAError(f"--model {model}: a folder without student.pt (a run) or ensemble.json (teachers)")
    elif not model.is_dir():
        raise EdgeIQAError(f"--teacher needs a run folder or a teachers folder, not the file {model}")
    else:
        _teacher_dir(model)
    from edgeiqa.accel import resolve_accel

    resolve_accel(args.device, args.precision)  # a device this machine lacks is refused here
    return model


def _records(dataset, split: str, data: str) -> tuple[list, str]:
    """The labelled records of `split` (auto: test if present, else all); an unknown split name is refused."""
    have = sorted({r.split for r in dataset.records if r.split})
    if split == "auto":
        split = "test" if "test" in have else "all"
    if split != "all":
        for name in split.split(","):
            if name not in have:
                raise EdgeIQAError(f"--split {name!r}: {data} has no such split (it has "
                                   f"{', '.join(have) or 'no splits; use all'}){did_you_mean(name, have)}")
    records = dataset.records if split == "all" else [r for r in dataset.records if r.split in split.split(",")]
    records = [r for r in records if r.score is not None]
    if not records:
        raise EdgeIQAError(f"{data}: no labelled images in split {split!r}")
    return records, split


def handle(args) -> int:
    from edgeiqa.data.datasets import load_dataset
    from edgeiqa.metrics import eval_summary

    model = _check_args(args)
    records, split = _records(load_dataset(args.data), args.split, args.data)
    paths = sorted({str(r.path) for r in records})
    scores, errors, compute = _scores_for(model, paths, args.teacher, not args.quiet, args.device, args.precision)
    out = eval_summary(scores, records)
    out.update({"model": str(model), "data": args.data, "split": split, "n_failed": len(errors), "errors": errors,
                "compute": compute})
    if args.json:
        print_json(out)
    else:
        keys = ["srcc_scene_median", "srcc_scene_mean", "srcc_kind_worst", "plcc_scene_median", "krcc_scene_median",
                "srcc", "plcc", "krcc", "mae", "rmse", "n_images", "n_scenes", "n_failed"]
        for k in keys:
            if k in out and out[k] is not None:
                print(f"{k:<20} {out[k]:.4f}" if isinstance(out[k], float) else f"{k:<20} {out[k]}")
            elif fmt_metric(out, k) == "no scenes":
                print(f"{k:<20} no scenes")
        if fmt_groups(out):
            print(f"{'srcc per subset':<20} {fmt_groups(out)}")
        if out.get("worst_kind"):
            print(f"{'worst_kind':<20} {out['worst_kind']}")
        print(f"{'device':<20} {compute['device']} ({compute['precision']})")
        for p, e in errors.items():
            print(f"failed: {p}: {e}", file=sys.stderr)
    return 1 if errors else 0  # README: 1 when some images could not be scored


def register(sub) -> None:
    p = sub.add_parser("eval", help="metrics of a student, teacher ensemble or exported model on a dataset",
                       description="Score the labelled images of a dataset with a model and report SRCC/PLCC/KRCC/MAE/RMSE; "
                       "with scenes, the per-scene median and mean (PIQ23 protocol) and the worst distortion kind. "
                       "Exit code 1 when some images could not be scored (they are listed, and counted in n_failed).")
    p.add_argument("--model", required=True, help="run dir (student.pt), student.pt, .onnx, .xml (OpenVINO), .tflite (LiteRT), "
                   ".pte (ExecuTorch), .mlpackage (Core ML, macOS only), .engine, or a teachers dir")
    p.add_argument("--data", required=True, help="dataset spec, e.g. sample, csv:val.csv, piq23:ROOT")
    p.add_argument("--split", default="auto", help="split(s) to evaluate: auto (test if present, else all), all, or e.g. val,test")
    p.add_argument("--teacher", action="store_true", help="with a run dir: evaluate its teacher ensemble instead of the student")
    add_accel_args(p, workers=False)
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=handle)
