"""Device, precision and worker flags: what this machine lacks is refused with one line, before any work."""

import pytest
import torch

from edgeiqa import accel, distributed
from edgeiqa.errors import EdgeIQAError


def test_auto_is_cuda_when_present_else_cpu():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert accel.resolve_device("auto").type == want
    assert accel.resolve_accel("cpu", "fp32").describe()["precision"] == "fp32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_refused_without_cuda():
    with pytest.raises(EdgeIQAError, match="CUDA is not available on this machine"):
        accel.resolve_device("cuda")
    with pytest.raises(EdgeIQAError, match="CUDA is not available"):
        accel.resolve_device("cuda:1")


def test_bad_device_and_precision_names():
    with pytest.raises(EdgeIQAError, match="did you mean 'cuda'"):
        accel.resolve_device("cdua")
    with pytest.raises(EdgeIQAError, match="unknown device"):
        accel.resolve_device("cpu:3")
    with pytest.raises(EdgeIQAError, match="did you mean 'bf16'"):
        accel.resolve_precision("bf61", torch.device("cpu"))
    with pytest.raises(EdgeIQAError, match="needs a GPU"):
        accel.resolve_precision("bf16", torch.device("cpu"))


def test_workers_bounded_by_cores():
    import os

    assert accel.check_workers(0) == 0
    with pytest.raises(EdgeIQAError, match="CPU cores"):
        accel.check_workers((os.cpu_count() or 1) + 1)
    with pytest.raises(EdgeIQAError, match="0 or more"):
        accel.check_workers(-1)


def test_fp32_autocast_is_a_no_op():
    a = accel.resolve_accel("cpu", "fp32")
    with a.autocast():
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
    assert not a.grad_scaler().is_enabled()


@pytest.mark.parametrize("n,world", [(0, 2), (1, 2), (7, 2), (10, 3), (5, 8)])
def test_shards_cover_everything_once_in_order(n, world):
    parts = [range(*distributed.shard_bounds(n, r, world)) for r in range(world)]
    assert [i for p in parts for i in p] == list(range(n))
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_launch_environment_checked(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.env_info() == distributed.DistInfo()
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(EdgeIQAError, match="inconsistent launch"):
        distributed.env_info()
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(EdgeIQAError, match="no rendezvous"):
        distributed.env_info()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    assert distributed.env_info() == distributed.DistInfo(1, 2, 0)


@pytest.mark.parametrize("device,world,want", [("cuda", 2, True), ("cuda:1", 4, True), ("cuda", 1, False),
                                               ("cpu", 2, False), ("cpu", 1, False), ("mps", 2, False)])
def test_sync_batchnorm_only_for_ddp_on_cuda(device, world, want):
    # torch's SyncBatchNorm trains on GPU tensors only; on the CPU (gloo) BatchNorm stays per process.
    assert distributed.use_sync_batchnorm(torch.device(device), world) is want


def test_sync_batchnorm_conversion_keeps_checkpoint_names_and_eval_outputs():
    """What the Trainer relies on when it converts on CUDA: the same state-dict names (checkpoints load either way)
    and, in eval mode, the same outputs as BatchNorm (checked on the CPU, where eval needs no process group)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    model[1].running_mean.uniform_(-1, 1)
    x = torch.randn(2, 3, 8, 8)
    ref = model.eval()(x)
    names = list(model.state_dict())
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model).eval()
    assert isinstance(synced[1], torch.nn.SyncBatchNorm)
    assert list(synced.state_dict()) == names
    assert torch.allclose(synced(x), ref)


def test_collective_timeout_from_the_environment(monkeypatch):
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    assert distributed.timeout_from_env() == distributed.DEFAULT_TIMEOUT_S == 3600
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "7200")
    assert distributed.timeout_from_env() == 7200
    for bad in ("0", "-5", "ten", "1.5"):
        monkeypatch.setenv(distributed.TIMEOUT_ENV, bad)
        with pytest.raises(EdgeIQAError, match="EDGEIQA_DIST_TIMEOUT_S"):
            distributed.timeout_from_env()
