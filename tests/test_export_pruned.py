"""A pruned student goes the whole way: prune -> student.pt -> load -> ONNX export -> runtime scores, with
the GMACs recounted on the exported graph equal to the pruned card (issue 9, defect 1)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from edgeiqa.data.views import ViewSpec
from edgeiqa.errors import EdgeIQAError
from helpers import skimage_photos

pytestmark = pytest.mark.usefixtures("one_thread")

VIEWS = [ViewSpec("resize", (64, 64))]


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """A run folder as `distill --fit prune` writes it (student.pt + card.json), without the training."""
    from edgeiqa.distill.budget_fit import count_student, prune_to_budget
    from edgeiqa.students import create_student, save_student

    torch.manual_seed(0)
    model = create_student("efficientnet_lite0", VIEWS, offline_pretrained=False, hidden=32, feature_dim=8)
    full = count_student(model, VIEWS, float("inf"), model.student_name).total_gmacs
    pruned, report = prune_to_budget(model, VIEWS, 0.9 * full, log=lambda m: None)
    run = tmp_path_factory.mktemp("pruned")
    deploy = copy.deepcopy(pruned).drop_training_heads().eval()
    save_student(deploy, run / "student.pt", VIEWS, {"profile": "test", "gmacs": round(report.total_gmacs, 4),
                                                     "logistic": None, "seed": 0})
    card = {"profile": "test", "views": [v.to_dict() for v in VIEWS],
            "student": {"name": "efficientnet_lite0", "gmacs": round(report.total_gmacs, 4)}}
    (run / "card.json").write_text(json.dumps(card))
    return {"run": run, "deploy": deploy, "gmacs": report.total_gmacs, "full_gmacs": full}


@pytest.mark.slow
def test_pruned_student_loads_with_its_narrow_layers(pruned_run):
    from edgeiqa.distill.budget_fit import count_student
    from edgeiqa.students import create_student, load_student

    assert pruned_run["gmacs"] <= 0.9 * pruned_run["full_gmacs"]
    model, payload = load_student(pruned_run["run"])
    assert payload["pruning"]["ratio"] > 0
    full_width = create_student("efficientnet_lite0", VIEWS, offline_pretrained=False, hidden=32)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in full_width.parameters())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), pruned_run["deploy"](x))
    # the rebuilt model counts as the pruned one, not as the registered full-width student
    assert count_student(model, VIEWS, float("inf"), "efficientnet_lite0").total_gmacs == pytest.approx(pruned_run["gmacs"])


@pytest.mark.slow
def test_pruned_student_exports_and_scores(pruned_run):
    from edgeiqa.export import export_model
    from edgeiqa.runtime import Scorer

    photos = skimage_photos(8)
    res = export_model(pruned_run["run"], "onnx", calib=photos, imgs=8)
    g = res.metadata["gmacs"]
    assert g["match"] is True, g
    assert g["card"] == pytest.approx(pruned_run["gmacs"], abs=1e-4)
    assert g["onnx_fvcore_convention"] == pytest.approx(pruned_run["gmacs"], rel=0.01)
    assert g["onnx_fvcore_convention"] < 0.95 * pruned_run["full_gmacs"]  # the graph itself is narrower
    assert res.metadata["source"]["pruning"]["ratio"] > 0 and res.parity["ok"], res.parity
    onnx_scores = np.array([r.score for r in Scorer.load(res.path).score(photos, batch_size=4)])
    torch_scores = np.array([r.score for r in Scorer.load(pruned_run["run"]).score(photos, batch_size=4)])
    assert np.all(np.isfinite(onnx_scores)) and np.abs(onnx_scores - torch_scores).max() <= 1e-4
    assert np.ptp(torch_scores) > 0  # the comparison is not between constants


def test_checkpoint_whose_weights_do_not_fit_is_a_clear_error(tmp_path):
    """A student.pt with narrowed weights but no pruning record (what distill wrote before) fails in one line."""
    from edgeiqa.students import create_student, load_student, save_student

    model = create_student("efficientnet_lite0", VIEWS, offline_pretrained=False, hidden=32).eval()
    save_student(model, tmp_path / "student.pt", VIEWS, {})
    payload = torch.load(tmp_path / "student.pt", weights_only=False)
    payload["state_dict"]["backbone.conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    torch.save(payload, tmp_path / "student.pt")
    with pytest.raises(EdgeIQAError, match="weights do not fit student efficientnet_lite0.*conv_stem"):
        load_student(tmp_path)
