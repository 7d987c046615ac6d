"""GMAC budget: regression pins of fvcore's counts (docs/design.md), the cross-check, the fitting search and the CLI."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeiqa import budget as B
from edgeiqa.budget import fitting as fit
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


def test_mobilenetv3_cli_json_pins_fvcore_count(capsys):
    """Regression pin of fvcore's count, not an independent truth: 4.09 GMACs / 5.48 M params are what fvcore and timm
    gave for MobileNetV3-L @720x1280 when the convention was set (docs/design.md). A failure means fvcore, timm or our
    counting changed the number: find out which before moving the pin."""
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


def test_vit_counts_attention_pins_fvcore_count():
    """Regression pin of fvcore's count with attention counted: ViT-B/16@384 reads 55.5 GMACs (49.4 with timm's fused
    attention left on, which fvcore counts as zero); the figure is fvcore's, pinned so a change is noticed."""
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
    bigger = B.resolve_model("mobilenetv3_large_100", fit._candidate((360, 640), h // 32 + 1))
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
    brute = max(k for k in range(1, 2160 // 32 + 1) if cost(fit._candidate(hw, k)) <= budget)
    assert found[0] == fit._candidate(hw, brute)
    assert len(calls) <= fit.MAX_SEARCH_COUNTS
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


def _cli_json(capsys, *argv):
    rc = main(["budget", *argv, "--json"])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if out.out.strip() else None), out.err


@pytest.mark.slow
def test_student_name_counts_the_deployed_student_not_timms_classifier(capsys):
    """nf_regnet_b1 is both a student and a timm classifier: the student (backbone on every view + IQA
    head) is counted, by distill's own function. Before the fix: timm's classifier, or an error."""
    from edgeiqa.data.views import ViewSpec
    from edgeiqa.distill.budget_fit import count_registered

    rc, report, err = _cli_json(capsys, "--model", "nf_regnet_b1", "--input", "56x56", "--views", "resize,fragments")
    assert rc == 0, err
    views = [ViewSpec("resize", (56, 56)), ViewSpec("fragments", (56, 56))]
    distill = count_registered("nf_regnet_b1", views, 50.0)
    assert report["total_gmacs"] == pytest.approx(distill.total_gmacs, abs=1e-4)
    assert report["views"] == pytest.approx({k: round(v, 4) for k, v in distill.views.items()})
    assert set(report["views"]) == {"resize", "fragments"}
    timm_model = B.resolve_model("nf_regnet_b1", (56, 56), ["resize", "fragments"]).count(cross_check=False)
    assert abs(report["total_gmacs"] - timm_model.total_gmacs) > 1e-4  # not timm's classifier
    assert report["params_m"] != pytest.approx(timm_model.params_m, rel=1e-3)
    assert report["total_gmacs"] > sum(report["views"].values())  # the IQA head is counted too


@pytest.mark.slow
def test_student_with_a_profile_counts_the_profiles_views(capsys):
    from edgeiqa.distill.budget_fit import count_registered, views_at
    from edgeiqa.profiles import load_profile

    views = load_profile("sample").student_views
    rc, report, err = _cli_json(capsys, "--model", "ghostnetv2", "--profile", "sample")
    assert rc == 0, err
    assert report["total_gmacs"] == pytest.approx(count_registered("ghostnetv2", views, 50.0).total_gmacs, abs=1e-4)
    assert report["input"] == "288x288" and set(report["views"]) == {"resize", "fragments"}
    # --input rescales every view the way distill's fitting search does
    rc, smaller, err = _cli_json(capsys, "--model", "ghostnetv2", "--profile", "sample", "--input", "192x192")
    expected = count_registered("ghostnetv2", views_at(views, (192, 192)), 50.0).total_gmacs
    assert rc == 0 and smaller["total_gmacs"] == pytest.approx(expected, abs=1e-4)
    assert smaller["input"] == "192x192" and smaller["total_gmacs"] < report["total_gmacs"]


@pytest.mark.slow
def test_teacher_name_counts_the_multiview_teacher(capsys):
    from edgeiqa.teachers import get_teacher_entry
    from edgeiqa.teachers.pipeline import teacher_gmacs

    rc, report, err = _cli_json(capsys, "--model", "lite0_mv")
    assert rc == 0, err
    entry = get_teacher_entry("lite0_mv")
    assert list(report["views"]) == [v.name for v in entry.views] == ["resize", "fragments"]
    assert report["input"] == "320x320"
    # the same total `teachers train` records in member.json: every view's backbone plus the head
    assert report["total_gmacs"] == pytest.approx(teacher_gmacs("lite0_mv"), abs=1e-3)
    assert report["total_gmacs"] > sum(report["views"].values())
    assert report["views"]["fragments"] > report["views"]["resize"]  # 336x336 vs 320x320


def test_unknown_or_misused_names_are_one_line_exit_2(capsys):
    for name, closest in (("mobilenetv3_larg", "mobilenetv3_large"), ("lite0_m", "lite0_mv")):
        assert main(["budget", "--model", name, "--input", "224"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"did you mean: {closest}," in err  # the closest name first
    cases = [
        (["--model", "lite0_mv", "--input", "224"], "registered views"),  # a teacher's views are its own
        (["--model", "mobilenetv3_large_100", "--profile", "sample"], "--profile applies to edgeiqa students"),
        (["--model", "mobilenetv3_large_100"], "--input HxW is required"),
        (["--model", "ghostnetv2"], "--profile NAME"),
        (["--model", "ghostnetv2", "--profile", "sample", "--views", "resize"], "leave out --views"),
        (["--model", "ghostnetv2", "--profile", "sampel"], "did you mean 'sample'"),
        (["--model", "ghostnetv2", "--input", "224", "--budget", "-1"], "--budget must be a finite number > 0"),
    ]
    for argv, message in cases:
        assert main(["budget", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)


@pytest.mark.parametrize("affine,per_element", [(True, 2), (False, 1)])
def test_batchnorm_convention(affine, per_element):
    """fvcore counts an eval-mode affine BatchNorm as 2 MACs per element (normalise + scale/shift), 1
    without the affine part; docs/design.md states these figures. A regression pin of fvcore's count on single layers.
    FlopCounterMode counts none."""
    x = torch.zeros(1, 16, 8, 8)
    report = B.count_gmacs(nn.BatchNorm2d(16, affine=affine), x)
    assert report.total_gmacs * 1e9 == per_element * x.numel()
    assert report.cross_check_gmacs == 0
    ln = B.count_gmacs(nn.LayerNorm(16), torch.zeros(1, 10, 16))
    assert ln.total_gmacs * 1e9 == 5 * 10 * 16


@pytest.mark.slow
def test_budget_stage_imports_no_later_stage():
    """budget is shared by teachers and students: it must not import them (the CLI resolves their names)."""
    import subprocess
    import sys

    code = "import sys, edgeiqa.budget; print(sorted(m for m in sys.modules if m.startswith(('edgeiqa.students', 'edgeiqa.teachers', 'edgeiqa.distill'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


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


def test_absurd_input_sizes_are_refused_before_any_allocation(capsys, tmp_path):
    """Issue 21 item 6: `--input 100000x100000` allocated a 120 GB image; every side is bounded (16384 px)."""
    from helpers import assert_refused

    line = assert_refused(["budget", "--model", "mobilenetv3_large_100", "--input", "100000x100000"], capsys,
                          tmp_path, r"at most 16384 px", seconds=1.0)
    assert "100000x100000" in line
    assert_refused(["budget", "--model", "mobilenetv3_large_100", "--input", "16385x720"], capsys, tmp_path, "16384")
    # a profile's views rescaled to --input are bounded the same way, one by one and together
    assert_refused(["budget", "--model", "ghostnetv2", "--profile", "sample", "--input", "16384"], capsys, tmp_path,
                   r"profile sample's views")
    for budget in ("inf", "nan", "1e9", "0"):
        assert_refused(["budget", "--model", "mobilenetv3_large_100", "--input", "224", "--budget", budget], capsys,
                       tmp_path, r"--budget must be a finite number > 0 and <= 100000")


def test_huge_inputs_are_estimated_not_traced():
    """Above MAX_TRACE_PIXELS per input the traced pass would hold GBs: the meta-device estimate is reported."""
    conv = nn.Conv2d(3, 4, 1, bias=False)
    big = B.count_gmacs(conv, torch.zeros(1, 3, 4097, 4096))
    assert "too large to trace" in big.convention
    assert big.total_gmacs * 1e9 == pytest.approx(3 * 4 * 4097 * 4096)  # exact for a conv either way
    small = B.count_gmacs(conv, torch.zeros(1, 3, 64, 64))
    assert "too large to trace" not in small.convention and small.total_gmacs * 1e9 == 3 * 4 * 64 * 64
