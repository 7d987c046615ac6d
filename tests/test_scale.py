"""Training scale-out: worker processes change no value; DDP over 2 gloo processes equals 1 process with the
same global batch; a resume under another world size is refused."""

from __future__ import annotations

import gc
import os
import socket

import pytest
import torch

from edgeiqa.data.datasets import load_dataset
from edgeiqa.data.torchdata import ImageCache, TrainItem, ViewDataset, make_loader, scene_ids
from edgeiqa.data.views import ViewSpec
from edgeiqa.losses import LossBatch
from edgeiqa.training import TrainConfig, Trainer

VIEWS = [ViewSpec("resize", (32, 32)), ViewSpec("fragments", (32, 32), grid=4)]


class TinyIQA(torch.nn.Module):
    """No BatchNorm on purpose: per-rank batch statistics are the one thing DDP on CPU cannot share (SyncBatchNorm
    is CUDA-only), and this test checks the data and gradient path, which must then agree exactly."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
        self.fc = torch.nn.Linear(8, 1)

    def forward(self, a, b):
        f = [self.conv(x).relu().mean(dim=(2, 3)) for x in (a, b)]
        return self.fc(torch.cat(f, 1)).squeeze(1)


def _items(csv_path) -> list[TrainItem]:
    ds = load_dataset(f"csv:{csv_path}").subset(["train"])
    ids = scene_ids([r.scene for r in ds.records])
    return [TrainItem(str(r.path), float(r.score), s) for r, s in zip(ds.records, ids)]


def _step(model, batch) -> LossBatch:
    x, target, scene, weight, _ = batch
    return LossBatch(model(*x), target, scene, weight)


def _train(items, out_dir, workers=0, epochs=2) -> dict:
    cfg = TrainConfig(epochs=epochs, lr=1e-2, batch_size=8, losses={"mse": 1.0})
    loader = make_loader(ViewDataset(items, VIEWS, ImageCache(), train=True), cfg.batch_size, train=True, workers=workers)
    model = TinyIQA()
    Trainer(model, _step, None, out_dir, cfg).fit(loader, progress=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_workers_change_no_batch_and_no_weight(tiny_csv, tmp_path):
    items = _items(tiny_csv)
    ds = ViewDataset(items, VIEWS, ImageCache(), train=True)
    batches = {}
    for workers in (0, 2):
        loader = make_loader(ds, 8, train=True, workers=workers)
        seen = []
        for epoch in (0, 1):
            ds.set_epoch(epoch)
            loader.batch_sampler.set_epoch(epoch)
            seen += [b for b in loader]
        batches[workers] = seen
    assert len(batches[0]) == len(batches[2]) > 2
    for b0, b2 in zip(batches[0], batches[2]):
        for v0, v2 in zip(b0[0], b2[0]):
            assert torch.equal(v0, v2)
        assert torch.equal(b0[1], b2[1])
    w0, w2 = _train(items, tmp_path / "w0"), _train(items, tmp_path / "w2", workers=2)
    assert all(torch.equal(w0[k], w2[k]) for k in w0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, csv_path, out_dir, result_path):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from edgeiqa import distributed

    distributed.init_from_env(torch.device("cpu"), timeout_s=120)
    gc.disable()  # only fit's own collection may free the DDP wrapper; an automatic one would hide a leak
    try:
        weights = _train(_items(csv_path), out_dir)
        ddp_alive = sum(isinstance(o, torch.nn.parallel.DistributedDataParallel) for o in gc.get_objects())
        if rank == 0:
            torch.save({"weights": weights, "ddp_alive": ddp_alive}, result_path)
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_ddp_two_processes_equal_one(tiny_csv, tmp_path):
    import torch.multiprocessing as mp

    items = _items(tiny_csv)
    torch.set_num_threads(1)
    single = _train(items, tmp_path / "single")
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tiny_csv), str(tmp_path / "ddp"), str(tmp_path / "ddp.pt")), nprocs=2)
    result = torch.load(tmp_path / "ddp.pt")
    ddp = result["weights"]
    # A DDP wrapper alive after fit (it sits in a reference cycle) is freed at interpreter exit, after the process
    # group is destroyed, where gloo aborts the process with SIGABRT; fit frees it.
    assert result["ddp_alive"] == 0
    # mse is a mean, every global batch here splits into equal halves and the model has no BatchNorm, so the
    # averaged DDP gradient is the single-process gradient; only float summation order differs (~1e-7).
    for k in single:
        assert torch.allclose(single[k], ddp[k], atol=1e-5, rtol=1e-4), k
    assert (tmp_path / "ddp" / "last.pt").exists()
    state = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)["state"]
    assert state["world_size"] == 2


def test_resume_under_another_world_size_is_refused(tiny_csv, tmp_path):
    from edgeiqa.errors import EdgeIQAError

    items = _items(tiny_csv)
    _train(items, tmp_path, epochs=1)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    ckpt["state"]["world_size"] = 2  # as a 2-process job would have written it
    torch.save(ckpt, tmp_path / "last.pt")
    cfg = TrainConfig(epochs=1, lr=1e-2, batch_size=8, losses={"mse": 1.0})
    loader = make_loader(ViewDataset(items, VIEWS, ImageCache(), train=True), 8, train=True)
    with pytest.raises(EdgeIQAError, match="trained with 2 process"):
        Trainer(TinyIQA(), _step, None, tmp_path, cfg).fit(loader, resume=True, progress=False)

