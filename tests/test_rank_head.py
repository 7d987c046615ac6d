"""Label-free ranking pre-training of a teacher's head (issue 12, req. 2): synthetic ladders of pool photos
from the degradation library; the head learns that the more degraded copy ranks lower, before any label."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeiqa.cli.main import main
from edgeiqa.data.datasets import load_dataset
from edgeiqa.data.records import Dataset, ImageRecord
from edgeiqa.data.torchdata import ImageCache
from edgeiqa.errors import EdgeIQAError
from edgeiqa.profiles import load_profile
from edgeiqa.teachers import create_teacher
from edgeiqa.teachers.pipeline import teacher_config, train_members
from edgeiqa.teachers.rank_head import RankSpec, base_photos, ladder_features, pair_accuracy, pretrain_head

from helpers import write_profile


def test_head_learns_the_severity_order_of_unlabelled_ladders(tiny_csv):
    ds = load_dataset(f"csv:{tiny_csv}")
    cache = ImageCache()
    bases, source, _ = base_photos(ds, cache, 2, seed=0)
    assert source == "pool" and len(bases) == 2 and all("chelsea" in b for b in bases)  # the tiny set's pool photo
    torch.manual_seed(0)
    teacher = create_teacher("lite0_mv")
    for p in teacher.backbones.parameters():
        p.requires_grad_(False)
    spec = RankSpec(epochs=40, photos=2, levels=(2, 6), kinds=("gaussian_blur", "white_noise", "jpeg"), copies=("photo",))
    feats, targets, ladders = ladder_features(teacher, bases, cache, spec, seed=0, progress=False)
    assert feats.shape[0] == 2 * 3 * 3 and len(set(ladders.tolist())) == 6  # the original joins each kind's ladder
    assert sorted(set(targets.tolist())) == [-6.0, -2.0, 0.0]
    before = pair_accuracy(teacher.head, feats, targets, ladders)
    info = pretrain_head(teacher.head, feats, targets, ladders, spec.epochs, 1e-3, seed=0)
    assert info["pair_accuracy_before"] == pytest.approx(before, abs=1e-4)
    assert info["pair_accuracy_after"] >= 0.9 and info["pair_accuracy_after"] > before


def test_too_few_readable_photos_is_a_clear_error(tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("hello")
    tiny = tmp_path / "tiny.png"  # readable, but too small to degrade by every kind: passed over
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tiny)
    ds = Dataset("csv:x.csv", [ImageRecord(bad, 3.0, "s", "train", ""), ImageRecord(tmp_path / "missing.png", None, "t", "pool", ""),
                               ImageRecord(tiny, None, "u", "pool", "")])
    with pytest.raises(EdgeIQAError, match=r"at least 2 readable images of at least 64 px a side .* found 0"):
        base_photos(ds, ImageCache(), 4, seed=0)


def _photo(tmp_path, name: str, grey: bool) -> Path:
    """A 96 px crop of a real scikit-image photo, saved as RGB (a greyscale one as three equal planes)."""
    import skimage.data

    img = getattr(skimage.data, name)()
    img = np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img[..., :3]
    crop = img[100:196, 100:196]
    if grey:
        crop = np.repeat(crop.mean(2, keepdims=True).round().astype(np.uint8), 3, 2)
    path = tmp_path / f"{name}{'_grey' if grey else ''}.png"
    Image.fromarray(crop).save(path)
    return path


def test_ranking_bases_pass_over_greyscale_photos(tmp_path):
    colour = [_photo(tmp_path, n, False) for n in ("astronaut", "coffee")]
    grey = [_photo(tmp_path, n, True) for n in ("chelsea", "rocket")] + [_photo(tmp_path, "camera", False)]  # a grey original
    recs = [ImageRecord(p, None, p.stem, "pool", "") for p in colour + grey]
    bases, source, passed_over = base_photos(Dataset("csv:x.csv", recs), ImageCache(), 4, seed=0)
    assert source == "pool" and sorted(bases) == sorted(str(p) for p in colour)
    assert passed_over == 3

    # one colour pool photo is not enough: the labelled splits' colour photos come next (labels unused)
    recs = [ImageRecord(colour[0], None, "a", "pool", "")] + [ImageRecord(p, None, p.stem, "pool", "") for p in grey] + [
        ImageRecord(_photo(tmp_path, n, False), 3.0, n, "train", "") for n in ("chelsea", "rocket")]
    bases, source, _ = base_photos(Dataset("csv:x.csv", recs), ImageCache(), 4, seed=0)
    assert source == "train" and all("_grey" not in b for b in bases) and len(bases) == 2

    # a greyscale data set: its greyscale photos are used rather than nothing
    recs = [ImageRecord(p, None, p.stem, "pool", "") for p in grey]
    bases, source, passed_over = base_photos(Dataset("csv:x.csv", recs), ImageCache(), 2, seed=0)
    assert source == "pool" and len(bases) == 2 and passed_over == 0


def test_each_copy_of_a_base_gets_its_own_ladders_and_a_too_small_copy_is_passed_over(tmp_path):
    from edgeiqa.data.copies import make_copy

    import skimage.data

    photo = skimage.data.coffee()  # 400 x 600
    crop = make_copy(photo, "crop", np.random.default_rng(0))
    small = make_copy(photo, "downscaled", np.random.default_rng(0))
    assert crop.shape == small.shape == (250, 375, 3)
    rows = np.lib.stride_tricks.sliding_window_view(photo[..., 0], (1, 375))[..., 0, :]  # every 375 px run of a row
    y, x = (int(v[0]) for v in np.nonzero((rows == crop[0, :, 0]).all(axis=2)))  # where the crop's first row starts
    assert np.array_equal(photo[y : y + 250, x : x + 375], crop)  # a window of the photo at native resolution
    assert abs(float(small.mean()) - float(photo.mean())) < 2  # the whole photo, smaller
    assert make_copy(photo, "photo", np.random.default_rng(0)) is photo

    big, tiny = tmp_path / "big.png", tmp_path / "tiny.png"
    Image.fromarray(photo[:160, :160]).save(big)
    Image.fromarray(photo[:80, :80]).save(tiny)  # its copies (50 px) are under MIN_SIDE: only the photo's ladders
    teacher = create_teacher("lite0_mv")
    spec = RankSpec(epochs=1, photos=2, levels=(3,), kinds=("gaussian_blur", "jpeg"))
    assert spec.copies == ("photo", "crop", "downscaled")
    feats, targets, ladders = ladder_features(teacher, [str(big), str(tiny)], ImageCache(), spec, seed=0, progress=False)
    assert len(np.unique(ladders)) == (3 + 1) * 2 and feats.shape[0] == 8 * 2
    per_ladder = feats.reshape(8, 2, -1)
    assert not torch.allclose(per_ladder[0], per_ladder[2]) and not torch.allclose(per_ladder[2], per_ladder[4])


@pytest.mark.parametrize("line, message", [("rank_levels = [0, 7]", "rank_levels must be ladder severities 1..6"),
                                           ("rank_copies = [\"photo\", \"crops\"]", "unknown ranking copy 'crops'"),
                                           ("rank_copies = [\"photo\", \"crops\"]", "did you mean 'crop'"),
                                           ("rank_copies = []", "rank_copies must name at least one"),
                                           ("rank_copies = [\"crop\", \"crop\"]", "names a copy twice"),
                                           ("rank_photos = 1", "rank_photos must be >= 2"),
                                           ("rank_epochs = -1", "rank_epochs must be >= 0"),
                                           ("rank_epoch = 3", "did you mean 'rank_epochs'"),
                                           # [distill] keys: the student's ranking and ladder-score epochs
                                           ("[distill]\nrank_epochs = 0\nladder_epochs = 5", "ladder_epochs needs [distill] rank_epochs > 0"),
                                           ("[distill]\nladder_epochs = 5", "ladder_epochs needs [distill] rank_epochs > 0"),
                                           ("[distill]\nrank_epochs = 2\nladder_epochs = -1", "[distill] ladder_epochs must be >= 0, got -1"),
                                           ("[distill]\nrank_epochs = 2\nladder_epochs = 1.5", "'ladder_epochs' must be int, got 1.5"),
                                           ("[distill]\nrank_epochs = 2\nladder_epoch = 3", "did you mean 'ladder_epochs'")])
def test_bad_ranking_settings_fail_before_any_work(tmp_path, capsys, line, message):
    profile = write_profile(tmp_path / "p.toml")
    anchor = "[distill]" if line.startswith("[distill]") else "head_epochs = 15"  # the section the line belongs to
    profile.write_text(profile.read_text().replace(anchor, f"{anchor}\n{line.removeprefix('[distill]').lstrip()}"))
    assert main(["teachers", "train", "--profile", str(profile), "--data", "csv:nothere.csv", "--out", str(tmp_path / "t"), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


@pytest.mark.slow
def test_train_members_pretrains_the_head_records_it_and_reuses_the_ladder_features(tiny_csv, tmp_path):
    profile = load_profile(str(write_profile(tmp_path / "p.toml")))
    ds = load_dataset(f"csv:{tiny_csv}")
    cfg = dataclasses.replace(teacher_config(profile), epochs=3, rank_epochs=5, rank_photos=2, rank_levels=[6])
    logs = []
    res = train_members(["lite0_mv"], ds, tmp_path / "t", cfg, progress=False, log=logs.append)[0]
    info = json.loads((tmp_path / "t" / "lite0_mv" / "member.json").read_text())
    rp = info["rank_pretrain"]
    assert rp["epochs"] == 5 and rp["bases_from"] == "pool" and rp["images"] == 2 * 3 * (1 + 36)  # 3 copies a base
    assert rp["copies"] == ["photo", "crop", "downscaled"]
    assert rp["pair_accuracy_after"] > rp["pair_accuracy_before"]
    assert res.rank_pretrain == rp and any("head ranking pre-training" in m for m in logs)
    assert info["settings"]["config"]["rank_epochs"] == 5
    ladder_file = tmp_path / "t" / "lite0_mv" / "rank_features.pt"
    stamp = ladder_file.stat().st_mtime_ns
    # Another label schedule retrains the head, but the ladders' features are read back, not recomputed.
    train_members(["lite0_mv"], ds, tmp_path / "t", dataclasses.replace(cfg, epochs=2), progress=False, log=logs.append)
    assert ladder_file.stat().st_mtime_ns == stamp
    # A damaged ladder cache is a cache miss: recomputed and rewritten, never a crash.
    ladder_file.write_bytes(ladder_file.read_bytes()[:1000])
    train_members(["lite0_mv"], ds, tmp_path / "t", dataclasses.replace(cfg, epochs=1), progress=False, log=logs.append)
    assert ladder_file.stat().st_size > 1000 and torch.load(ladder_file, weights_only=True)["feats"].shape[0] == 2 * 3 * 36 * 2
    assert Path(json.loads((tmp_path / "t" / "lite0_mv" / "member.json").read_text())["rank_pretrain"]["bases"][0]).exists()


def test_rank_epochs_option_is_checked_like_the_profile(tmp_path, capsys):
    profile = write_profile(tmp_path / "p.toml")
    rc = main(["teachers", "train", "--profile", str(profile), "--rank-epochs", "-2", "--out", str(tmp_path / "t"), "--quiet"])
    assert rc == 2 and "rank_epochs must be >= 0, got -2" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_to_label_scale_keeps_the_order_and_lands_on_the_label_scale():
    from edgeiqa.teachers.model import IQAHead
    from edgeiqa.teachers.rank_head import to_label_scale

    torch.manual_seed(0)
    head, feats = IQAHead(16, 8).eval(), torch.randn(50, 16) * 5
    with torch.no_grad():
        head.score.weight.mul_(40)  # what ranking losses leave: scores far off the label scale
        before = head(feats)[0]
    to_label_scale(head, feats, 3.0, 1.2)
    with torch.no_grad():
        after = head(feats)[0]
    assert torch.equal(torch.argsort(before), torch.argsort(after))
    assert float(after.mean()) == pytest.approx(3.0, abs=1e-4) and float(after.std()) == pytest.approx(1.2, rel=1e-3)
