"""Can anything we compute rank BIQ2021's capture-fault subset? A probe on the official TRAIN split only.

    python benchmarks/subset_probe.py --data biq2021:ROOT --teachers WORK/all/s0/teachers [--subsets ss01,ss02]

For each subset, 5-fold cross-validation inside that subset's official-train photos (val carved from train
included; the test split is never read): a ridge head (regularisation chosen by RidgeCV inside each training fold)
on
- each frozen teacher member's cached backbone features (`backbone_features.pt` of a `teachers` stage folder,
  e.g. one made by benchmarks/real.py), and both members concatenated;
- native-resolution image statistics that follow what the subset varies (focus, noise, exposure): Laplacian
  energy (whole image, 90th and 50th percentile of 32-px blocks), Immerkaer's noise estimate, gradient energy,
  luminance mean / std / 5th and 95th percentiles / clipped fractions, colourfulness, JPEG bytes;
- the features with the statistics appended;
and, on same-scene pairs (two photos that are each other's nearest neighbour by the cosine of both members'
standardised features, above a threshold), how far their opinion scores lie apart and how often the out-of-fold
ridge head, or each statistic (signed as it correlates with the scores inside the subset), puts the better-rated
photo of a pair first, over the pairs whose scores differ by more than 0.1 (a coin reads 0.5).
It tells a head that cannot learn a subset (the information is not in the features) from one that does not
(the recipe): docs/biq2021.md reads it. Results: benchmarks/results/biq2021_subset_probe.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAT_NAMES = ["log_laplacian_var", "log_laplacian_block_p90", "log_laplacian_block_p50", "noise_sigma",
              "luma_mean", "luma_std", "clipped_high", "clipped_low", "luma_p5", "luma_p95", "colourfulness",
              "log_gradient_mean", "log_jpeg_bytes"]
# Immerkaer (1996): a Laplacian-difference kernel cancels image structure up to second order, leaving the noise.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def image_stats(path: Path) -> list[float]:
    """Native-resolution statistics of one photo (STAT_NAMES order)."""
    from PIL import Image
    from scipy import ndimage

    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = ndimage.laplace(luma)
    h, w = (lap.shape[0] // 32) * 32, (lap.shape[1] // 32) * 32
    blocks = lap[:h, :w].reshape(h // 32, 32, w // 32, 32).var(axis=(1, 3)).ravel()
    inner = np.abs(ndimage.convolve(luma, _NOISE_KERNEL)[1:-1, 1:-1])
    sigma = np.sqrt(np.pi / 2) * inner.sum() / (6 * inner.size)
    rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colourful = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    grad = np.hypot(ndimage.sobel(luma, 0), ndimage.sobel(luma, 1))
    eps = 1e-8
    return [np.log(lap.var() + eps), np.log(np.percentile(blocks, 90) + eps), np.log(np.percentile(blocks, 50) + eps),
            float(sigma), luma.mean(), luma.std(), (luma > 0.98).mean(), (luma < 0.02).mean(),
            np.percentile(luma, 5), np.percentile(luma, 95), colourful, np.log(grad.mean() + eps),
            np.log(path.stat().st_size)]


def member_features(member_dir: Path, paths: list[str]) -> np.ndarray:
    """Rows of a member's cached backbone features for `paths` (the member's predictions.csv gives the row order)."""
    import csv

    import torch

    with open(member_dir / "predictions.csv", newline="") as f:
        order = {row["image"]: i for i, row in enumerate(csv.DictReader(f))}
    missing = [p for p in paths if p not in order]
    if missing:
        raise SystemExit(f"{member_dir}: no cached features for {len(missing)} photos, e.g. {missing[0]}")
    feats = torch.load(member_dir / "backbone_features.pt", map_location="cpu", weights_only=True)["feats"]["eval"]
    return feats[[order[p] for p in paths]].numpy().astype(np.float64)


def cv_srcc(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> float:
    """SRCC of out-of-fold ridge predictions."""
    from edgeiqa.metrics import srcc

    return round(float(srcc(cv_predictions(x, y, folds, seed), y)), 4)


PAIR_COSINES = (0.6, 0.7, 0.8)
PAIR_MIN_GAP = 0.1  # a pair counts only when its scores differ by more: the order of near-equal scores says little


def cv_predictions(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold ridge predictions (features standardised inside each training fold)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.zeros(len(y))
    for tr, te in KFold(folds, shuffle=True, random_state=seed).split(x):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 15)))
        pred[te] = model.fit(x[tr], y[tr]).predict(x[te])
    return pred


def scene_pairs(x: np.ndarray, y: np.ndarray, pred: np.ndarray, stats: np.ndarray) -> dict:
    """Same-scene pairs (mutual nearest neighbours by feature cosine): their score gaps, and the share of pairs with a
    gap above PAIR_MIN_GAP that the head's predictions and each statistic order as the observers did."""
    from edgeiqa.metrics import srcc

    z = (x - x.mean(0)) / (x.std(0) + 1e-8)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T
    np.fill_diagonal(sim, -1.0)
    nearest, cosine = sim.argmax(1), sim.max(1)
    signs = np.where(np.array([srcc(stats[:, i], y) for i in range(stats.shape[1])]) < 0, -1.0, 1.0)
    out = {}
    for threshold in PAIR_COSINES:
        pairs = np.array([(i, j) for i, j in enumerate(nearest) if nearest[j] == i and i < j and cosine[i] > threshold])
        if not len(pairs):
            out[str(threshold)] = {"pairs": 0}
            continue
        gap = y[pairs[:, 0]] - y[pairs[:, 1]]
        far = pairs[np.abs(gap) > PAIR_MIN_GAP]
        truth = np.sign(y[far[:, 0]] - y[far[:, 1]])

        def ordered(v: np.ndarray) -> float | None:
            return round(float(np.mean(np.sign(v[far[:, 0]] - v[far[:, 1]]) == truth)), 3) if len(far) else None

        out[str(threshold)] = {"pairs": len(pairs), "median_score_gap": round(float(np.median(np.abs(gap))), 4),
                               f"pairs_gap_over_{PAIR_MIN_GAP}": len(far), "head_ordered": ordered(pred),
                               "stat_ordered": {n: ordered(signs[i] * stats[:, i]) for i, n in enumerate(STAT_NAMES)}}
    return out


def probe_subset(subset: str, records, members: list[Path], folds: int, seed: int) -> dict:
    from tqdm import tqdm

    from edgeiqa.metrics import srcc

    recs = [r for r in records if r.group == subset and r.split in ("train", "val") and r.score is not None]
    if not recs:
        raise SystemExit(f"no official-train photos of subset {subset!r}")
    paths, y = [str(r.path) for r in recs], np.array([r.score for r in recs], dtype=np.float64)
    t0 = time.time()
    stats = np.array([image_stats(Path(p)) for p in tqdm(paths, desc=f"{subset} image statistics", unit="photo")])
    stats_s = time.time() - t0
    feats = {m.name: member_features(m, paths) for m in members}
    both = np.hstack(list(feats.values()))
    inputs = {**feats, "+".join(feats): both}
    preds = {name: cv_predictions(x, y, folds, seed) for name, x in inputs.items()}  # the pair analysis reuses both's
    rows = {name: {"features": round(float(srcc(preds[name], y)), 4),
                   "features+stats": cv_srcc(np.hstack([x, stats]), y, folds, seed)} for name, x in inputs.items()}
    pairs = scene_pairs(both, y, preds["+".join(feats)], stats)
    return {"photos": len(y), "mos_std": round(float(y.std()), 4), "stats_only": cv_srcc(stats, y, folds, seed),
            "stat_srcc": {n: round(float(srcc(stats[:, i], y)), 4) for i, n in enumerate(STAT_NAMES)},
            "ridge_cv_srcc": rows, "scene_pairs": pairs, "stats_seconds": round(stats_s, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="biq2021:ROOT")
    ap.add_argument("--teachers", required=True, type=Path,
                    help="a teachers stage folder whose members hold backbone_features.pt (e.g. WORK/all/s0/teachers)")
    ap.add_argument("--subsets", default="ss01,ss02", help="comma-separated subsets (default ss01,ss02)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--machine", default="2 CPU cores, no GPU", help="machine state recorded in the results")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "biq2021_subset_probe.json")
    args = ap.parse_args(argv)
    members = sorted(p.parent for p in args.teachers.glob("*/backbone_features.pt"))
    if not members:
        ap.error(f"{args.teachers}: no member folder with backbone_features.pt")
    if args.folds < 2:
        ap.error("--folds must be at least 2")

    from edgeiqa.data.datasets import load_dataset
    from edgeiqa.fileio import write_json_atomic
    from edgeiqa.provenance import measured

    records = load_dataset(args.data).records
    results = {s: probe_subset(s, records, members, args.folds, args.seed) for s in args.subsets.split(",")}
    doc = {"what": "BIQ2021 subsets: out-of-fold SRCC of ridge heads inside each subset's official-train photos "
                   "(test never read)", "command": "python benchmarks/subset_probe.py " + " ".join(argv or sys.argv[1:]),
           **measured(ROOT, args.machine), "teachers": str(args.teachers), "members": [m.name for m in members],
           "folds": args.folds, "seed": args.seed, "subsets": results}
    write_json_atomic(args.out, doc, indent=1)
    for s, r in results.items():
        print(s, "stats only", r["stats_only"], {k: v for k, v in r["ridge_cv_srcc"].items()})
        print(s, "same-scene pairs", {t: (p["pairs"], p.get("head_ordered")) for t, p in r["scene_pairs"].items()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
