"""The student's head is ranking-pre-trained without labels before distillation (issue 12: the recipe change
that made the distilled student gain on held-out artefact groups)."""

from __future__ import annotations

import torch

from edgeiqa.data.datasets import load_dataset
from edgeiqa.data.torchdata import ImageCache
from edgeiqa.data.views import ViewSpec
from edgeiqa.distill.rank_student import StudentFeatures, rank_pretrain_student
from edgeiqa.students import create_student
from edgeiqa.teachers.features import view_tensors
from edgeiqa.teachers.rank_head import RankSpec

VIEWS = [ViewSpec("resize", (64, 64)), ViewSpec("fragments", (56, 56), 7)]


def test_student_head_learns_the_ladders_and_the_deployed_forward_uses_it(tiny_csv, tmp_path):
    torch.manual_seed(0)
    student = create_student("efficientnet_lite0", VIEWS, hidden=32, feature_dim=8).eval()
    ds = load_dataset(f"csv:{tiny_csv}")
    spec = RankSpec(epochs=40, photos=2, levels=(2, 6), kinds=("gaussian_blur", "white_noise", "jpeg"), copies=("photo",))
    backbone_before = {k: v.clone() for k, v in student.backbone.state_dict().items()}
    info = rank_pretrain_student(student, VIEWS, "efficientnet_lite0", ds, spec, seed=0, out_dir=tmp_path, progress=False)
    assert info["images"] == 2 * (1 + 3 * 2) and info["bases_from"] == "pool"
    assert info["pair_accuracy_after"] >= 0.9 and info["pair_accuracy_after"] > info["pair_accuracy_before"]
    assert all(torch.equal(v, student.backbone.state_dict()[k]) for k, v in backbone_before.items())  # head only
    assert (tmp_path / "rank_features.pt").exists()
    # The adapter's head over encode() is exactly the student's own forward: what was learnt is what is deployed.
    img = ImageCache().get(info["bases"][0])
    views = view_tensors(img, VIEWS, None)
    adapter = StudentFeatures(student, VIEWS, "efficientnet_lite0").eval()
    with torch.no_grad():
        torch.testing.assert_close(adapter.head(adapter.encode(*views))[0], student.eval()(*views))
