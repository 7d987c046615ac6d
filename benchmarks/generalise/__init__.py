"""Leave-kinds-out benchmark: do the teachers know more than the student on artefacts nobody labelled?

    python benchmarks/generalise.py                 # full run (the docs/benchmarks.md table)
    python benchmarks/generalise.py --quick         # smoke run, about 5 min on 2 cores (fewer kinds/levels, 1 seed)

Time on a 2-core machine: images and features about 16 min the first time (cached per image under
$EDGEIQA_CACHE/generalise afterwards, also across --quick runs), then 40 fold x seed runs of heads (about 20 min).

Protocol
- Photos: the embedded sample set's wheel photos with their fixed splits (train / val / test / pool) plus
  eight more wheel photos in the unlabelled pool (EXTRA_POOL), each prepared as the sample set
  prepares them (longer side <= 512 px). Every photo is degraded by every kind of the degradation library
  (`edgeiqa data kinds`) at the ladder severities; one scene = photo x kind (the original + its ladder),
  score = 5 - 4 * severity / 6 as in the sample set.
- Folds: the library's 8 groups are held out two at a time (4 folds, so every group is held out once).
  In a fold, models learn from the train photos' *training-fold* kinds only (labels), select epochs and
  ensemble weights on the val photos' training-fold kinds only, and are scored on the test photos'
  *held-out* kinds only. The unlabelled pool (pool photos x every kind) is what a user's unlabelled
  photos are: its labels are never read; teachers pseudo-label it. Ranking pre-training (teachers' and
  student's heads) uses the pool's colour photos' ladders at training-fold kinds only, ordered by their known
  synthetic severity (the held-out artefacts are unknown to the recipe), and, as the product does
  (`[teacher] rank_copies`, edgeiqa/data/copies.py), the ladders of each colour pool photo's crop and downscaled
  copy (photos `name@crop`, `name@downscaled`: ranking bases only, not in the pseudo-labelled pool; the distilled
  students' heads learn the teachers' scores of all these ladders after ranking on them). Greyscale pool photos
  are passed over by the same rule as the product's (`rank_head.base_photos`): they still take part as
  pseudo-labelled images.
- Teacher ensembles are fitted by `fit_ensemble` exactly as `teachers train` fits them (val split,
  one-standard-error rule).
- Per-scene SRCC is pooled over all held-out scenes of all folds (each scene scored by the model of the
  fold that held it out); global SRCC and MAE are computed per fold (one model's scores) and averaged.
  Every number is the mean (and std) over 10 seeds; each row keeps its per-seed values
  (`srcc_scene_mean_per_seed`). One seed drives every model of a run (heads' init and batch order).

Compromises, made to fit about an hour on a 2-core CPU (say so wherever the numbers are quoted):
- Backbones are frozen and their features cached once for all folds and seeds (`$EDGEIQA_CACHE/generalise`):
  teachers and student are heads trained on multi-level (mean+std) features of their own backbone and
  views. The student row is therefore the deployed student's architecture and views with its backbone
  frozen; the real `distill` also fine-tunes the student's backbone (from block 2). Backbone fine-tuning
  and backbone ranking pre-training (`edgeiqa teachers pretrain`) are not measured here (GPU jobs; docs/benchmarks.md
  gives a CPU measurement of fine-tuning the small student's last two blocks, outside this table).
- No augmented views; short schedules (12 epochs on labels, after 20 epochs of ranking pre-training where used;
  32 scenes per batch);
  4 ladder levels (severities 1, 2, 4, 6) instead of 6; one evaluation view per image.
"""

from .cli import main

__all__ = ["main"]
