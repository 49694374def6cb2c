"""Data-parallel training under torchrun (DistributedDataParallel).

`torchrun --nproc-per-node=N -m normlab train ...` sets WORLD_SIZE/RANK/LOCAL_RANK; normlab
then joins the process group (nccl on CUDA, gloo on CPU, or --dist-backend), wraps the model
in DDP and shards every global batch across the ranks:

- `--batch-size` is per process; a global batch is N x batch-size samples.
- All ranks draw the same seeded permutation each epoch (a new one per epoch), cut it into
  global batches, and rank r takes the r-th slice of each. Every sample is seen once per epoch
  across ranks, and the run equals one process with the global batch size (same data order,
  same augmentation draws, gradients averaged by DDP).
- Rank 0 alone writes the run directory and checkpoints; all ranks read them on --resume.
- `--sync-bn` synchronizes BatchNorm statistics across ranks: torch's SyncBatchNorm on CUDA,
  normlab's all_reduce SyncBatchNorm elsewhere (torch's refuses CPU tensors).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(cfg, device: torch.device) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        if cfg.sync_bn:
            raise ConfigError("sync_bn: --sync-bn needs several processes; launch with "
                              "torchrun --nproc-per-node=N -m normlab train ...")
        return Dist(), device
    d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    backend = cfg.dist_backend or ("nccl" if device.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return d, device


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, d: Dist, device: torch.device, sync_bn: bool) -> torch.nn.Module:
    """(model with synced BN if asked, its DDP wrapper for the forward pass)."""
    if sync_bn:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            from ..nn.sync_bn import SyncBatchNorm

            model = SyncBatchNorm.convert_sync_batchnorm(model)
    if not d.enabled:
        return model, model
    ids = [device.index] if device.type == "cuda" else None
    return model, torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_sum(values: list[float], d: Dist, device) -> list[float]:
    if not d.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def replicas_identical(model: torch.nn.Module, d: Dist) -> bool:
    """Whether every rank holds bit-identical parameters (compared through a checksum)."""
    if not d.enabled:
        return True
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device)
    s = torch.stack([(flat * weights).sum(), flat.sum()])
    lo, hi = s.clone(), s.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(torch.equal(lo, hi))


class ShardedLoader:
    """This rank's slice of each global batch of a DeviceLoader built with the global batch size."""

    def __init__(self, loader, d: Dist, drop_single: bool):
        self.loader, self.d = loader, d
        self.min_last = d.world * (2 if drop_single else 1)  # every rank needs samples (2 with BN)
        self.x, self.y, self.generator = loader.x, loader.y, loader.generator

    def __len__(self) -> int:
        n, b = len(self.loader.y), self.loader.batch_size
        full, rest = divmod(n, b)
        return full + (rest >= self.min_last)

    def __iter__(self):
        r, w = self.d.rank, self.d.world
        for i, (xb, yb) in enumerate(self.loader):
            if i >= len(self):
                break
            n = len(yb)
            sl = slice(r * n // w, (r + 1) * n // w)
            yield xb[sl], yb[sl]
