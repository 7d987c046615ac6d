"""The teacher ensemble as one deployable model for the bench's `teacher` row: every member of
`ensemble.json` rebuilt in torch from its `teacher.pt`, each fed all of its views, the members' raw scores
z-normalised, weighted and mapped to the label scale exactly as `Ensemble.calibrated` does.

A member's views are the ones recorded in its `member.json` (what it was trained with), else its registry
entry's. Members with weight 0 are not built or run, nor counted in GMACs, size or latency: they add
nothing to the score. Weights and
inputs are channels-last, as the teachers' own feature extraction runs them (faster on CPU), so the
teacher is timed at its best. GMACs are counted with fvcore (edgeiqa.budget.count_gmacs) at those
views, all members summed.

Accuracy: the ensemble's scores of the eval images are recomputed live, or (`saved_scores`) taken from
every member's `predictions.csv` (written by `edgeiqa teachers train` with the same decode and views)
through the same ensemble mapping -- the bench uses them only when they cover every eval image and a
live check on a few images agrees, which saves minutes of teacher inference on a small CPU.

The teachers folder comes from `--teachers DIR`, else the card's `teacher.dir` (relative to the run folder,
edgeiqa.runpaths).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeiqa.data.images import load_image
from edgeiqa.data.views import ViewSpec, make_views, to_batch
from edgeiqa.errors import EdgeIQAError, ImageLoadError
from edgeiqa.runpaths import resolve_run_path


def resolve_teachers_dir(card: dict, run: Path, override: str | Path | None) -> Path:
    if override:
        p = Path(override).expanduser()
        if not (p / "ensemble.json").exists():
            raise EdgeIQAError(f"--teachers {p}: no ensemble.json there (a folder written by `edgeiqa teachers train`)")
        return p
    raw = (card.get("teacher") or {}).get("dir")
    if not raw:
        raise EdgeIQAError("the card names no teachers folder (card.json teacher.dir); give --teachers DIR")
    p = resolve_run_path(raw, run)
    if (p / "ensemble.json").exists():
        return p
    raise EdgeIQAError(f"teachers folder {raw} from the card has no ensemble.json; give --teachers DIR")


@dataclass
class Member:
    name: str
    teacher: object  # IQATeacher
    views: list[ViewSpec]
    checkpoint: Path


class TeacherEnsemble:
    backend = "torch"

    def __init__(self, teachers_dir: str | Path, threads: int | None = None, device: str = "cpu", precision: str = "fp32"):
        import torch

        from edgeiqa.accel import Accel

        from edgeiqa.teachers import create_teacher
        from edgeiqa.teachers.ensemble import ENSEMBLE_FILE, Ensemble
        from edgeiqa.teachers.train import load_teacher_weights

        self.torch = torch
        self.dir = Path(teachers_dir)
        if threads:
            torch.set_num_threads(int(threads))
        self.device = device
        self.accel = Accel(torch.device(device), precision)  # checked by the command (edgeiqa.accel.resolve_accel)
        self.ensemble = Ensemble.load(self.dir / ENSEMBLE_FILE)
        self.members: list[Member] = []
        for name in self.ensemble.active:
            mdir = self.dir / name
            info_path = mdir / "member.json"
            info = json.loads(info_path.read_text()) if info_path.exists() else {}
            arch = info.get("teacher", name)
            t = create_teacher(arch)
            load_teacher_weights(t, mdir)
            t.eval().to(device).to(memory_format=torch.channels_last)
            views = [ViewSpec.from_dict(v) for v in info["views"]] if info.get("views") else list(t.entry.views)
            self.members.append(Member(name, t, views, mdir / "teacher.pt"))
        # distinct view sets, computed once per image
        self._view_sets: dict[str, list[ViewSpec]] = {}
        for m in self.members:
            self._view_sets.setdefault(self._key(m.views), m.views)

    @staticmethod
    def _key(views: list[ViewSpec]) -> str:
        return json.dumps([v.to_dict() for v in views], sort_keys=True)

    # ------------------------------------------------------------------------------------------ facts
    def size_mb(self) -> float:
        return sum(m.checkpoint.stat().st_size for m in self.members if m.checkpoint.exists()) / 1e6

    def params_m(self) -> float:
        return sum(sum(p.numel() for p in m.teacher.parameters()) for m in self.members) / 1e6

    def gmacs(self) -> dict:
        from edgeiqa.teachers.counting import count_teacher

        per = {}
        for m in self.members:
            per[m.name] = round(count_teacher(m.teacher.cpu(), cross_check=False, views=m.views, name=m.name,
                                              per_view=False).total_gmacs, 4)
            m.teacher.to(self.device)
        return {"total": round(sum(per.values()), 4), "members": per}

    def describe(self) -> dict:
        return {"dir": str(self.dir), "members": [m.name for m in self.members],
                "weights": self.ensemble.weights, "not_run": self.ensemble.not_run,
                "views": {m.name: [v.to_dict() for v in m.views] for m in self.members}}

    # ------------------------------------------------------------------------------------------ running
    def views_of(self, img: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """{view-set key: {view name: uint8 view}} for one decoded image (evaluation offsets)."""
        return {k: make_views(img, vs, rng=None)[0] for k, vs in self._view_sets.items()}

    def preprocess(self, path) -> dict[str, dict[str, np.ndarray]]:
        return self.views_of(load_image(path))

    def feeds(self, prepared: list[dict]) -> dict[str, dict[str, np.ndarray]]:
        """Stack prepared images into normalised float32 batches per view set."""
        return {k: {v.name: to_batch([p[k][v.name] for p in prepared]) for v in vs} for k, vs in self._view_sets.items()}

    def raw(self, feeds: dict) -> dict[str, np.ndarray]:
        torch = self.torch
        out = {}
        with torch.inference_mode(), self.accel.autocast():
            for m in self.members:
                batch = feeds[self._key(m.views)]
                args = [torch.from_numpy(batch[v.name]).to(self.device).contiguous(memory_format=torch.channels_last)
                        for v in m.views]
                score, _ = m.teacher(*args)
                out[m.name] = score.float().cpu().numpy().reshape(-1)
        return out

    def run(self, feeds: dict) -> np.ndarray:
        """Calibrated ensemble scores for one batch."""
        return np.asarray(self.ensemble.calibrated(self.raw(feeds)), dtype=np.float64).reshape(-1)

    def saved_scores(self) -> dict[str, float] | None:
        """{path: calibrated ensemble score} from the members' predictions.csv (images every member scored);
        None when a member has no predictions file."""
        per: dict[str, dict[str, float]] = {}
        for m in self.members:
            f = self.dir / m.name / "predictions.csv"
            if not f.exists():
                return None
            d = {}
            with open(f, newline="") as fh:
                for row in csv.DictReader(fh):
                    try:
                        v = float(row.get("score") or "nan")
                    except ValueError:
                        continue
                    if np.isfinite(v):
                        d[row["image"]] = v
            per[m.name] = d
        common = sorted(set.intersection(*(set(d) for d in per.values()))) if per else []
        if not common:
            return {}
        raw = {n: np.array([d[p] for p in common]) for n, d in per.items()}
        cal = np.asarray(self.ensemble.calibrated(raw), dtype=np.float64).reshape(-1)
        return {p: float(v) for p, v in zip(common, cal)}

    def score(self, paths: list[str], batch_size: int = 8) -> tuple[dict[str, float], dict[str, str]]:
        """({path: calibrated score}, {path: error}) in path order; a bad file never stops the rest."""
        scores, failed = {}, {}
        pending: list[tuple[str, dict]] = []

        def flush():
            if not pending:
                return
            vals = self.run(self.feeds([p for _, p in pending]))
            for (path, _), v in zip(pending, vals):
                if np.isfinite(v):
                    scores[path] = float(v)
                else:
                    failed[path] = "teacher returned a non-finite score"
            pending.clear()

        for path in paths:
            try:
                pending.append((path, self.preprocess(path)))
            except ImageLoadError as exc:
                failed[path] = exc.reason
                continue
            except EdgeIQAError as exc:
                failed[path] = str(exc)
                continue
            if len(pending) >= batch_size:
                flush()
        flush()
        return scores, failed
