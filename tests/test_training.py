"""The shared training loop: checkpoints every epoch; a killed run resumed ends where an uninterrupted one does."""

from __future__ import annotations

import pytest
import torch

from edgeiqa.data.torchdata import SceneBatchSampler
from edgeiqa.losses import LossBatch, combined_loss, fidelity, parse_loss_spec, plcc
from edgeiqa.errors import EdgeIQAError
from edgeiqa.training import TrainConfig, Trainer


class ToyData(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(24, 5, generator=g)
        self.y = self.x @ torch.arange(5.0) / 5
        self.epoch = 0

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return 24

    def __getitem__(self, i):
        return [self.x[i]], float(self.y[i]), i % 4, 1.0, -1


def _collate(batch):
    return ([torch.stack([b[0][0] for b in batch])], torch.tensor([b[1] for b in batch]),
            torch.tensor([b[2] for b in batch]), torch.tensor([b[3] for b in batch]), None)


def _run(tmp, resume=False, fail_at=None, progress=False):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    ds = ToyData()
    loader = torch.utils.data.DataLoader(ds, batch_sampler=SceneBatchSampler([i % 4 for i in range(24)], 6, seed=0), collate_fn=_collate)
    calls = {"n": 0}

    def step(m, batch):
        calls["n"] += 1
        if fail_at is not None and calls["n"] == fail_at:
            raise KeyboardInterrupt
        x, y, s, w, _ = batch
        return LossBatch(m(x[0]).squeeze(1), y, s, w)

    cfg = TrainConfig(epochs=3, lr=1e-2, batch_size=6, losses={"mse": 1.0, "fidelity": 0.5})
    Trainer(model, step, None, tmp, cfg, desc="toy").fit(loader, resume=resume, progress=progress)
    return model.state_dict()


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    full = _run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", fail_at=10)  # dies in epoch 3 (4 batches/epoch): epochs 1-2 are checkpointed
    resumed = _run(tmp_path / "b", resume=True)
    for k in full:
        assert torch.equal(full[k], resumed[k]), k


def test_resume_refuses_other_settings(tmp_path):
    _run(tmp_path / "a")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    cfg = TrainConfig(epochs=5, lr=1e-2, batch_size=6)
    ds = ToyData()
    loader = torch.utils.data.DataLoader(ds, batch_size=6, collate_fn=_collate)
    with pytest.raises(EdgeIQAError, match="other settings"):
        Trainer(model, lambda m, b: None, None, tmp_path / "a", cfg).fit(loader, resume=True, progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_resume_from_a_damaged_checkpoint_names_the_file(tmp_path, damage):
    """issue 9, defect 7: a truncated or foreign last.pt is refused in one line naming it, not a traceback."""
    _run(tmp_path / "a")
    last = tmp_path / "a" / "last.pt"
    data = last.read_bytes()
    if damage == "truncate":
        last.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        last.write_bytes(b"\x00" * 100)
    else:
        torch.save({"weights": torch.zeros(3)}, last)
    with pytest.raises(EdgeIQAError, match=f"cannot resume: {last}") as exc:
        _run(tmp_path / "a", resume=True)
    assert "\n" not in str(exc.value)


def test_epoch_lines_go_to_stderr(tmp_path, capsys):
    """issue 9, defect 5: stdout is kept for results (`--json`); per-epoch logs go to stderr."""
    _run(tmp_path / "a", progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "toy epoch 3/3" in err


def test_scene_batches_keep_scene_groups():
    batches = list(SceneBatchSampler([0] * 7 + [1] * 7 + [2] * 7, 8, per_scene=4, seed=1))
    assert sorted(i for b in batches for i in b) == list(range(21))
    scenes = [[i // 7 for i in b] for b in batches]
    assert all(len(set(s)) < len(s) for s in scenes if len(s) > 3)  # every batch has same-scene pairs


def test_losses_behave():
    t = torch.tensor([1.0, 2.0, 3.0, 4.0])
    scene = torch.zeros(4, dtype=torch.long)
    w = torch.ones(4)
    good = LossBatch(t * 2, t, scene, w)
    bad = LossBatch(-t, t, scene, w)
    assert plcc(good) < 1e-5 < plcc(bad)
    assert fidelity(good) < fidelity(bad)
    # pairs across scenes are ignored by pairwise losses
    other = LossBatch(-t, t, torch.arange(4), w)
    assert float(fidelity(other)) == 0.0
    total, parts = combined_loss({"mse": 1.0, "plcc": 1.0}, good)
    assert set(parts) == {"mse", "plcc"} and float(total) > 0


def test_unknown_loss_suggests():
    with pytest.raises(EdgeIQAError, match="did you mean 'fidelity'"):
        parse_loss_spec("mse=1,fidelty=1")
