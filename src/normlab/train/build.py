"""Building a run from its config: the one place the trainer and `lr-find` get their device,
data, model, optimizer, schedule and step from. (Inference builds its model from the config
alone: models/from_config.py.)

The config is resolved first (train/resolve.py: names checked, the model's own defaults filled
in). `build_run` then assembles the pieces in a fixed order, which matters: the model's initial
weights and the data order come from the seeded generators, so the order here is part of what
makes a fixed-seed run repeat bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import DataConfig, TrainConfig
from ..data import pipeline
from ..data.inputs import Inputs
from ..device import precision_on, resolve_device
from ..errors import ConfigError
from ..models.from_config import build_model
from ..nn.kinds import uses_batch_statistics
from . import determinism, distributed, graphs, optim, schedule
from .resolve import resolve_config
from .step import Step


def default_out(cfg: TrainConfig) -> str:
    if cfg.out:
        return cfg.out
    base = Path("runs") / f"{cfg.model}-{cfg.dataset}-{datetime.now():%Y%m%d-%H%M%S}"
    # two runs started in the same second get -2, -3, ... rather than a refusal
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return str(out)


def has_batchnorm(model: torch.nn.Module) -> bool:
    return any(uses_batch_statistics(m) for m in model.modules())


def check_batch_statistics(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """Batch norm over feature vectors (BatchNorm1d on (N, C): the recurrent and MLP models) has one
    value per feature and example, so a batch of one gives no variance to normalize by and torch
    stops the first step with a ValueError. Said here, before any data is read."""
    if cfg.batch_size != 1:
        return
    if any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()):
        raise ConfigError(f"{cfg.model} with batch norm cannot train at batch size 1: batch norm takes each "
                          f"feature's mean and variance over the batch, and one example has no variance; use "
                          f"--batch-size 2 or more, or a norm that works per example (--norm ln or gn)")


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class Run:
    """Everything a training loop needs, built from one config. (Inference builds its model
    from the config alone: models/from_config.py, api.load.)"""

    cfg: TrainConfig
    device: torch.device
    inputs: Inputs
    model: torch.nn.Module
    data: object  # the Dataset, with the val split held out
    pipe: pipeline.Pipeline
    optimizer: torch.optim.Optimizer
    scheduler: object
    step: Step  # or graphs.GraphedStep, which runs as one
    dist: distributed.Dist = field(default_factory=distributed.Dist)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.pipe.train)


def _precision_resolved(cfg: TrainConfig, dev: torch.device) -> TrainConfig:
    """`--precision auto` made what it is on `dev`, so config.json records what ran."""
    return cfg.replace(precision=precision_on(cfg.precision, dev))


def build_run(cfg: TrainConfig, *, dist: Optional[distributed.Dist] = None,
              make_schedule: Optional[Callable] = None) -> Run:
    """Resolve `cfg` and build its run: device, data, model, then (for training) the loaders,
    optimizer, schedule and step.

    `dist` (a distributed.Dist) joins the torchrun process group and shards the batches;
    `make_schedule(optimizer, steps_per_epoch)` replaces the config's lr schedule (lr-find).
    """
    cfg = resolve_config(cfg)
    dev, d = _setup_device(cfg, dist)
    cfg = _precision_resolved(cfg, dev)
    data, inputs = pipeline.load(cfg.section("data"))
    model = build_model(cfg.section("model"), inputs.model_input_shape, inputs.num_classes).to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    check_batch_statistics(model, cfg)
    pipe = _build_pipeline(cfg.section("data"), dev, d, has_batchnorm(model), data, inputs)
    model, forward = distributed.wrap_model(model, d, dev, cfg.sync_bn)
    optimizer = optim.make_optimizer(model, cfg.section("optim"))
    scheduler = (make_schedule or _config_schedule(cfg.section("optim")))(optimizer, len(pipe.train))
    step = Step(model, optimizer, scheduler, cfg.section("regularization"),
                forward=torch.compile(forward) if cfg.compile else forward,
                precision=cfg.precision, channels_last=bool(cfg.channels_last))
    if cfg.cuda_graphs:
        graphs.check_supported(step, dev, compiled=cfg.compile, distributed=d.enabled)
        step = graphs.GraphedStep(step)  # type: ignore[assignment]  # runs as a Step: same step()/state
    return Run(cfg, dev, inputs, model, data, pipe, optimizer, scheduler, step, d)


def _config_schedule(optim_cfg):
    return lambda optimizer, steps_per_epoch: schedule.make_scheduler(optimizer, optim_cfg, steps_per_epoch)


def _setup_device(cfg: TrainConfig, dist: Optional[distributed.Dist]):
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = resolve_device(cfg.device)
    if cfg.deterministic:
        determinism.enable(dev)
    if dist is None:
        return dev, distributed.Dist()
    d, dev = distributed.setup(cfg.section("runtime"), dev)
    dist.rank, dist.world, dist.local_rank = d.rank, d.world, d.local_rank
    return dev, dist


def _build_pipeline(cfg: DataConfig, dev, d: distributed.Dist, drop_single: bool, data, inputs: Inputs):
    if not d.enabled:
        return pipeline.build(cfg, dev, drop_single=drop_single, data=data, inputs=inputs)
    # One global batch of world x batch_size, the same on every rank; each takes its slice.
    pipe = pipeline.build(cfg.replace(batch_size=cfg.batch_size * d.world), dev, drop_single,
                          data=data, inputs=inputs)
    pipe.train = distributed.ShardedLoader(pipe.train, d, drop_single)  # type: ignore[assignment]  # iterates alike
    return pipe
