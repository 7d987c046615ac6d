"""The float-layer ladder every int8 format climbs (onnx-int8 aside: its head rule is fixed).

The head always stays float; then the first k backbone layers from the input are kept float, k = 0, 1, 2, 4, ... up
to half of them, until the int8 scores follow the float32 ones (SRCC >= the row's bar) on the calibration images:
quantisation noise in the early high-resolution maps reads as texture. Every try is returned for the artefact's
metadata, so which layers stayed float, and why, is measured and recorded, never assumed.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable, TypeVar

import numpy as np

MAX_FLOAT_FRACTION = 0.5  # the ladder stops before more than half of the backbone's layers are float

Made = TypeVar("Made")


def ladder(n_layers: int) -> list[int]:
    """How many of the first backbone layers stay float at each try: 0, 1, 2, 4, ... up to half of them."""
    top = int(n_layers * MAX_FLOAT_FRACTION)
    steps, k = [0], 1
    while k <= top:
        steps.append(k)
        k *= 2
    return steps


def agreement(reference: np.ndarray, scores: np.ndarray, min_srcc: float) -> dict:
    """How the int8 scores follow the float32 ones (SRCC, |diff|). scipy is imported here, on the export side only
    (the formats' runtime halves must not need it)."""
    from scipy.stats import spearmanr

    srcc = float(spearmanr(reference, scores)[0]) if len(reference) >= 2 and np.ptp(reference) > 0 else None
    diff = np.abs(reference - scores)
    return {"srcc_vs_fp32": srcc, "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "passed": bool(np.all(np.isfinite(scores))) and srcc is not None and srcc >= min_srcc}


def climb(n_layers: int, quantize: Callable[[int], Made], score: Callable[[Made], np.ndarray], reference: np.ndarray,
          min_srcc: float, what: str, *, facts: Callable[[Made], dict] = lambda made: {},
          unit: str = "backbone layers") -> tuple[Made, dict, list[dict]]:
    """Try the ladder: `quantize(k)` makes the int8 model with k backbone layers float, `score` runs it on the
    calibration images, `facts` adds what the format can count (int8 nodes, bytes). Returns the first model that
    passes (else the best SRCC, with a warning naming `what`), its try and every try."""
    trials, best = [], None
    for k in ladder(n_layers):
        t0 = time.perf_counter()
        made = quantize(k)
        t1 = time.perf_counter()
        trial = {"float_backbone_layers": k, **agreement(reference, score(made), min_srcc), **facts(made),
                 "quantize_s": round(t1 - t0, 2), "check_s": round(time.perf_counter() - t1, 2)}
        trials.append(trial)
        if best is None or trial["passed"] or (trial["srcc_vs_fp32"] or -1.0) > (best[1]["srcc_vs_fp32"] or -1.0):
            best = (made, trial)
        if trial["passed"]:
            break
    made, chosen = best
    if not chosen["passed"]:
        warnings.warn(f"edgeiqa: {what}: SRCC vs float32 on the calibration images stayed below {min_srcc} with up to "
                      f"{trials[-1]['float_backbone_layers']} of {n_layers} {unit} in float; kept the best try "
                      f"({chosen['float_backbone_layers']} in float, SRCC {chosen['srcc_vs_fp32']})")
    return made, chosen, trials


HEAD_WHY = ("the pooled mean/std statistics, LayerNorm and MLP after the spatial pooling stay float, as in onnx-int8: "
            "a variance computed in int8 flattens the texture energy the score depends on")


def float_layers_report(head: dict, backbone: dict, n_float: int, trials: list[dict], min_srcc: float, *,
                        unit: str = "layers", judged_on: str = "calibration images") -> dict:
    """The `float_layers` and `ladder` entries of an int8 artefact's quantization metadata: what stayed float
    (`head` and `backbone` are the format's own counts and names; `n_float` backbone layers were kept) and why."""
    first = trials[0]["srcc_vs_fp32"]
    first = "" if first is None else f"{first:.4f}"
    why = ("none needed: all-int8 backbone met the bar" if n_float == 0 else
           f"the first {n_float} {unit} from the input: with fewer in float the SRCC vs float32 on the calibration "
           f"images was below {min_srcc} (all-int8 backbone: {first}); quantisation noise in the early "
           "high-resolution maps reads as texture")
    return {"float_layers": {"head": {**head, "why": HEAD_WHY}, "backbone": {**backbone, "why": why}},
            "ladder": {"bar_min_srcc_vs_fp32": min_srcc, "judged_on": judged_on, "tries": trials}}
