"""GMAC budget: fvcore counts that match design.md, the cross-check, the fitting search and the CLI."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeiqa import budget as B
from edgeiqa.cli.main import main
from edgeiqa.errors import BudgetExceeded, EdgeIQAError

JSON_KEYS = {"total_gmacs", "views", "params_m", "skipped_ops", "cross_check_gmacs", "budget_gmacs", "fits",
             "model", "input", "convention"}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_mobilenetv3_cli_json_matches_design(capsys):
    rc = main(["budget", "--model", "mobilenetv3_large_100", "--input", "720x1280", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    report = json.loads(out.out)
    assert set(report) == JSON_KEYS
    assert report["total_gmacs"] == pytest.approx(4.09, rel=0.01)
    assert report["views"] == {"resize": report["total_gmacs"]}
    assert report["fits"] is True and report["budget_gmacs"] == 50
    assert report["input"] == "720x1280"
    assert report["params_m"] == pytest.approx(5.48, rel=0.01)
    assert all(k.startswith("aten::") and v > 0 for k, v in report["skipped_ops"].items())
    # FlopCounterMode agrees within 5 % (fvcore also counts BatchNorm)
    assert abs(report["cross_check_gmacs"] - report["total_gmacs"]) / report["total_gmacs"] < 0.05


def test_vit_counts_attention():
    target = B.resolve_model("vit_base_patch16_384", (384, 384))
    attn = target.model.blocks[0].attn
    assert attn.fused_attn  # timm's default: SDPA, which fvcore would count as zero (49.4 GMACs)
    report = target.count()
    assert report.total_gmacs == pytest.approx(55.5, rel=0.01)
    assert report.cross_check_gmacs == pytest.approx(report.total_gmacs, rel=0.01)
    assert attn.fused_attn  # restored after counting
    assert report.fixed_input and not report.fits


def test_sdpa_handler_counts_remaining_fused_attention():
    class Attn(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.zeros(2, 4, 10, 8), torch.zeros(2, 4, 12, 8), torch.zeros(2, 4, 12, 6)
    expected = 2 * 4 * 10 * 12 * (8 + 6)  # Q·Kᵀ + A·V multiply-adds
    report = B.count_gmacs(Attn(), (q, k, v))
    assert report.total_gmacs * 1e9 == pytest.approx(expected)
    assert report.cross_check_gmacs * 1e9 == pytest.approx(expected)
    by_kw = B.count_gmacs(Attn(), {"q": q, "k": k, "v": v})  # dict inputs -> keyword arguments
    assert by_kw.total_gmacs == report.total_gmacs


def test_over_budget_exit_3_names_a_fitting_input(capsys):
    rc = main(["budget", "--model", "mobilenetv3_large_100", "--input", "360x640", "--budget", "0.5",
               "--json"])
    out = capsys.readouterr()
    assert rc == 3
    report = json.loads(out.out)  # the JSON report still goes to stdout
    assert report["fits"] is False and report["budget_gmacs"] == 0.5
    assert "Traceback" not in out.err
    m = re.search(r"--input (\d+)x(\d+)", out.err)
    assert m, out.err
    h, w = int(m.group(1)), int(m.group(2))
    assert h % 32 == 0 and w % 32 == 0 and h < 360 and abs(w / h - 640 / 360) < 0.1
    fitted = B.resolve_model("mobilenetv3_large_100", (h, w)).count(cross_check=False).total_gmacs
    assert fitted <= 0.5
    bigger = B.resolve_model("mobilenetv3_large_100", B._candidate((360, 640), h // 32 + 1))
    assert bigger.count(cross_check=False).total_gmacs > 0.5  # it is the largest that fits


def _quadratic(scale):
    return lambda hw: scale * hw[0] * hw[1]


@pytest.mark.parametrize("cost,estimate", [
    (_quadratic(1e-5), None),  # convnet-like, guided by area
    (lambda hw: 1e-9 * (hw[0] * hw[1]) ** 2 + 1e-5 * hw[0] * hw[1], None),  # attention-like, area model off
    (lambda hw: 1.04e-5 * hw[0] * hw[1], _quadratic(1e-5)),  # estimate 4 % low, like FlopCounterMode
])
def test_largest_fitting_input_search(cost, estimate):
    hw, budget = (2160, 3840), 5.0
    calls = []

    def recount(size):
        calls.append(size)
        return cost(size)

    found = B.largest_fitting_input(recount, hw, budget, cost(hw), estimate=estimate)
    brute = max(k for k in range(1, 2160 // 32 + 1) if cost(B._candidate(hw, k)) <= budget)
    assert found[0] == B._candidate(hw, brute)
    assert len(calls) <= B.MAX_SEARCH_COUNTS
    assert B.largest_fitting_input(recount, hw, 1e-9, cost(hw)) is None  # nothing fits


def test_check_budget_message_for_fixed_input_model():
    report = B.BudgetReport(model="vit_x", input="384x384", total_gmacs=55.0, views={"input": 55.0},
                            params_m=1.0, skipped_ops={}, cross_check_gmacs=None, budget_gmacs=50.0,
                            fixed_input=True, recount=_quadratic(55.0 / 384 / 384))  # 352x352: 46.2
    with pytest.raises(BudgetExceeded) as exc:
        B.check_budget(report)
    assert exc.value.exit_code == 3
    assert "352x352" in str(exc.value) and "fixed" in str(exc.value) and "smaller model" in str(exc.value)
    assert B.check_budget(report, budget=100) is report  # fits now


def test_registry_hook_and_views(monkeypatch):
    import edgeiqa.students as students

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    monkeypatch.setattr(students, "is_registered", lambda name: name == "tiny-student", raising=False)
    monkeypatch.setattr(students, "create_for_budget", lambda name, hw, views: Tiny(), raising=False)
    target = B.resolve_model("tiny-student", (64, 96), ["resize", "fragments"])
    report = target.count()
    per_view = 64 * 96 * 8 * 3 * 9 / 1e9
    assert report.views == {"resize": pytest.approx(per_view), "fragments": pytest.approx(per_view)}
    assert report.total_gmacs == pytest.approx(2 * per_view)  # same backbone on each view: the sum
    assert report.cross_check_gmacs == pytest.approx(2 * per_view)
    assert report.params_m == pytest.approx(8 * 3 * 9 / 1e6)


def test_cli_user_errors_are_clean(capsys):
    from edgeiqa.cli import budget_cmd

    assert budget_cmd.DEFAULT_BUDGET_GMACS == B.DEFAULT_BUDGET_GMACS and budget_cmd.CONVENTION == B.CONVENTION

    assert main(["budget", "--model", "mobilenetv3_large_100", "--input", "72ax1280"]) == 2
    err = capsys.readouterr().err
    assert "bad input size" in err and "Traceback" not in err

    assert main(["budget", "--model", "mobilenet_v3_large", "--input", "224x224"]) == 2
    err = capsys.readouterr().err
    assert "unknown model" in err and "mobilenetv3_large_100" in err

    assert main(["budget", "--model", "mobilenetv3_large_100", "--input", "224", "--views", "resize,fragmnts"]) == 2
    err = capsys.readouterr().err
    assert "fragments" in err

    with pytest.raises(EdgeIQAError):
        B.resolve_model("no_such_model_xyz", (224, 224))
