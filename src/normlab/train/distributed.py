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
- When another rank dies (its connection closes) or stays silent longer than `--dist-timeout`,
  the collective this rank waits in fails; that becomes a one-line DistributedError, not a
  traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as dist

from ..errors import ConfigError, DistributedError

_timeout_s: Optional[float] = None  # --dist-timeout of this process's group, for the error message


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
        global _timeout_s
        _timeout_s = cfg.dist_timeout
        dist.init_process_group(backend, timeout=timedelta(seconds=cfg.dist_timeout) if cfg.dist_timeout else None)
    return d, device


# How gloo, NCCL and torch's TCP store word a lost or silent peer: torch raises RuntimeError (or
# its DistError subclasses), and the text is all that tells these from other runtime errors.
_CLOSED = ("connection closed by peer", "connection reset by peer", "broken pipe", "failed to recv",
           "connection refused", "connection was likely closed", "socket closed")
_TIMED_OUT = ("timed out", "timeout")


def lost_peer(exc: BaseException, d: Dist) -> Optional[DistributedError]:
    """The DistributedError to raise for `exc` when it means another rank died or went silent."""
    world = max(d.world, int(os.environ.get("WORLD_SIZE", "1")))
    if world < 2:
        return None
    text = str(exc).strip()
    low = text.lower()
    closed = any(k in low for k in _CLOSED)
    timed_out = any(k in low for k in _TIMED_OUT)
    if not (closed or timed_out or isinstance(exc, getattr(dist, "DistError", ()))):
        return None
    # gloo's text starts with its source location and ends with a joke: keep its first sentence
    first = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0] if text else "").split(". ")[0].rstrip(".")
    rank = d.rank if d.enabled else int(os.environ.get("RANK", "0"))
    if closed:
        what = "lost the connection to another process (it died, or its node did)"
    elif timed_out:
        limit = (f"--dist-timeout ({_timeout_s:g} s)" if _timeout_s
                 else "the collective timeout (torch's default, 30 minutes; --dist-timeout sets it)")
        what = f"waited longer than {limit} for another process (stalled, or unreachable)"
    else:
        what = "failed in a collective with the other processes"
    return DistributedError(f"rank {rank} of {world} {what}: {first}. The other processes' output says why; "
                            f"run the same torchrun command again on every node, or continue from the last "
                            f"complete epoch with `-m normlab train --resume RUN_DIR`")


def finish(d: Dist) -> None:
    """After a run that ended well: wait until every process has finished its collectives, so
    no process tears the group down while a peer still talks to it (a rank was aborted now and
    then with `terminate called without an active exception`, seen under load)."""
    if d.enabled and dist.is_initialized():
        dist.barrier()


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, d: Dist, device: torch.device,
               sync_bn: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(model with synced BN if asked, its DDP wrapper for the forward pass)."""
    if sync_bn:
        from ..nn.newer_norms import BATCH_STATISTICS, NOT_SYNCABLE

        unsynced = sorted({type(m).__name__ for m in model.modules() if isinstance(m, BATCH_STATISTICS)})
        if unsynced:
            raise ConfigError(f"sync_bn: synchronizes BatchNorm's statistics only, and this model's "
                              f"{', '.join(unsynced)} keep batch statistics of their own (ghost batches are "
                              f"per process by design); drop --sync-bn, or use --norm bn")
        noisy = sorted({type(m).__name__ for m in model.modules() if isinstance(m, NOT_SYNCABLE)})
        if noisy:
            raise ConfigError(f"sync_bn: SyncBatchNorm would replace this model's {', '.join(noisy)} by plain "
                              f"batch norm and drop its training noise; drop --sync-bn, or use --norm bn")
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            from ..nn.sync_bn import SyncBatchNorm

            model = SyncBatchNorm.convert_sync_batchnorm(model)
    if not d.enabled:
        return model, model
    ids = [device.index] if device.type == "cuda" else None
    return model, torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def rank0s(value, d: Dist):
    """Rank 0's value on every rank (a default run folder's name: each rank would make its own,
    a second apart or with a -2 suffix once rank 0 has made the folder)."""
    if not d.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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
