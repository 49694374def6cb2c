"""SyncBatchNorm across 2 CPU processes (gloo) equals one process seeing the whole batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from normlab.nn.sync_bn import SyncBatchNorm

STEPS, N, C = 3, 6, 4


def _batches():
    gen = torch.Generator().manual_seed(7)
    return [(torch.randn(N, C, 3, 5, dtype=torch.float64, generator=gen) * 2 + 1,
             torch.randn(N, C, 3, 5, dtype=torch.float64, generator=gen)) for _ in range(STEPS)]


def _make(cls, momentum):
    layer = cls(C, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(0.5, 2.0, C))
        layer.bias.copy_(torch.linspace(-1.0, 1.0, C))
    return layer


MOMENTA = (0.1, None)  # None: cumulative average


def _worker(rank, world, store_path, out_dir):
    import warnings

    # torch.distributed.nn's deprecated all_reduce warned on every call: none may remain
    warnings.simplefilter("error", FutureWarning)
    # One spawn for every case: starting processes is the slow part.
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        for momentum in MOMENTA:
            _run_case(rank, world, out_dir, momentum)
    finally:
        dist.destroy_process_group()


def _run_case(rank, world, out_dir, momentum):
    layer = _make(SyncBatchNorm, momentum)
    share = N // world
    results = []
    for x, g in _batches():
        xs = x[rank * share:(rank + 1) * share].clone().requires_grad_()
        layer.zero_grad()
        y = layer(xs)
        (y * g[rank * share:(rank + 1) * share]).sum().backward()
        results.append({"y": y.detach(), "dx": xs.grad, "dw": layer.weight.grad.clone(),
                        "db": layer.bias.grad.clone()})
    layer.eval()
    x_eval = _batches()[0][0][rank * share:(rank + 1) * share]
    torch.save({"steps": results, "eval": layer(x_eval).detach(), "state": layer.state_dict()},
               os.path.join(out_dir, f"rank{rank}-{momentum}.pt"))


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    out = tmp_path_factory.mktemp("sync_bn")
    mp.spawn(_worker, args=(2, str(out / "store"), str(out)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("momentum", MOMENTA)
def test_two_processes_match_one_process_with_the_whole_batch(spawned, momentum):
    ranks = [torch.load(spawned / f"rank{r}-{momentum}.pt") for r in range(2)]

    whole = _make(nn.BatchNorm2d, momentum)
    for step, (x, g) in enumerate(_batches()):
        x = x.clone().requires_grad_()
        whole.zero_grad()
        y = whole(x)
        (y * g).sum().backward()
        got = [r["steps"][step] for r in ranks]
        torch.testing.assert_close(torch.cat([s["y"] for s in got]), y.detach())
        torch.testing.assert_close(torch.cat([s["dx"] for s in got]), x.grad)
        # Each process holds the gradient of its own share; DDP would sum them.
        torch.testing.assert_close(got[0]["dw"] + got[1]["dw"], whole.weight.grad)
        torch.testing.assert_close(got[0]["db"] + got[1]["db"], whole.bias.grad)
    for r in ranks:
        for key, value in whole.state_dict().items():
            torch.testing.assert_close(r["state"][key], value, msg=key)
    whole.eval()
    torch.testing.assert_close(torch.cat([r["eval"] for r in ranks]), whole(_batches()[0][0]))


def test_single_process_is_plain_batch_norm_and_converts_models():
    ours, theirs = _make(SyncBatchNorm, 0.1), _make(nn.BatchNorm2d, 0.1)
    for x, _ in _batches():
        torch.testing.assert_close(ours(x), theirs(x))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)

    model = nn.Sequential(nn.Conv2d(3, C, 1), theirs, nn.Sequential(nn.BatchNorm1d(2))).eval()
    SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(model[1], SyncBatchNorm) and isinstance(model[2][0], SyncBatchNorm)
    assert not model[1].training
    torch.testing.assert_close(model[1].running_var, theirs.running_var)
    with pytest.raises(ValueError, match=r"expected at least 2D input \(got 1D input\)"):
        model[1](torch.randn(4))
