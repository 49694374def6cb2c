"""Building a run from its config: the one place the trainer, `lr-find` and `normlab.load` get
their device, data, model, optimizer, schedule and step from.

`resolve_config` turns a config as given (make_config: merged, typed, range-checked) into the
config a run records: names checked against the registries, the model's own defaults for lr,
norm, act and dropout filled in. `build_run` then assembles the pieces in a fixed order, which
matters: the model's initial weights and the data order come from the seeded generators, so
the order here is part of what makes a fixed-seed run repeat bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import DataConfig, ModelConfig, TrainConfig
from ..data import pipeline, sources
from ..device import auto_precision, resolve_device
from ..errors import ConfigError
from ..models.registry import create_model, get_spec
from ..nn import factory, init as init_mod
from . import determinism, distributed, graphs, optim, schedule
from .step import Step


def check_names(cfg: TrainConfig) -> None:
    """Every name in the config must be one its registry lists (the message lists them)."""
    get_spec(cfg.model)
    sources.get_source(cfg.dataset)
    optim.check_optimizer(cfg.optimizer)
    schedule.check_schedule(cfg.schedule)
    # A callable (from Python) is the user's own layer; "custom:..." is one recorded in a
    # config.json, which create_model refuses with the fix (pass the callable again).
    if isinstance(cfg.norm, str) and not cfg.norm.startswith("custom:"):
        factory.check_norm_kind(cfg.norm)
    if isinstance(cfg.act, str) and not cfg.act.startswith("custom:"):
        factory.check_act(cfg.act)
    init_mod.check_init(cfg.init)


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """The config with its names checked and the model's defaults (lr, norm, act, dropout)
    filled in; resolving a resolved config changes nothing."""
    check_names(cfg)
    spec = get_spec(cfg.model)
    norm = cfg.norm or spec.default_norm
    channels_last = cfg.channels_last
    if channels_last is None:
        # GroupNorm and InstanceNorm run 2-3x slower on channels_last CPU tensors (docs/norms.md)
        channels_last = spec.default_channels_last and not (isinstance(norm, str) and norm.split(":")[0] in ("gn", "in", "in-affine"))
    momentum = cfg.momentum
    if momentum is None and cfg.optimizer in ("momentum", "nesterov"):
        momentum = optim.DEFAULT_MOMENTUM  # recorded in config.json as what ran
    return cfg.replace(lr=spec.default_lr if cfg.lr is None else cfg.lr, momentum=momentum,
                       norm=norm, act=cfg.act or spec.default_act, channels_last=channels_last,
                       dropout=spec.default_dropout if cfg.dropout is None else cfg.dropout)


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


# The config fields that are options of some models only (registered as their defaults).
MODEL_OPTIONS = ("depth", "width", "widths", "bias", "hidden_dropout", "block_order", "shortcut_op", "fc_norm")


def model_input_shape(preprocess: dict) -> tuple:
    """What the model sees: the preprocessed shape (pca:D flattens to D features), else the image's."""
    return tuple(preprocess.get("model_input_shape", preprocess["input_shape"]))


def build_model(cfg: ModelConfig, input_shape, num_classes: int) -> torch.nn.Module:
    """The model a config's model section describes, with the seed applied so initial weights
    are reproducible."""
    # create_model refuses an option the model does not take (registry.check_model_options)
    model_kw = {k: getattr(cfg, k) for k in MODEL_OPTIONS if getattr(cfg, k) is not None}
    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, num_classes=num_classes, in_channels=input_shape[0],
                        input_size=input_shape[1:], norm=cfg.norm, act=cfg.act, dropout=cfg.dropout,
                        init=cfg.init, norm_impl=cfg.norm_impl, bn_eps=cfg.bn_eps,
                        bn_momentum=cfg.bn_momentum, dropout_mode=cfg.dropout_mode, **model_kw)


def has_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) or type(m).__name__.startswith("BatchNorm")
               for m in model.modules())


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
    """Everything a training loop needs, built from one config. For inference (`training=False`)
    only cfg, device, preprocess and model are set."""

    cfg: TrainConfig
    device: torch.device
    preprocess: dict
    model: torch.nn.Module
    data: Optional[object] = None  # the Dataset, with the val split held out
    pipe: Optional[pipeline.Pipeline] = None
    optimizer: Optional[torch.optim.Optimizer] = None
    scheduler: Optional[object] = None
    step: Optional[Step] = None
    dist: distributed.Dist = field(default_factory=distributed.Dist)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.pipe.train)


def _precision_resolved(cfg: TrainConfig, dev: torch.device) -> TrainConfig:
    """`--precision auto` made what it is on `dev`, so config.json records what ran."""
    return cfg.replace(precision=auto_precision(dev)) if cfg.precision == "auto" else cfg


def build_run(cfg: TrainConfig, *, preprocess: Optional[dict] = None, num_classes: Optional[int] = None,
              device: Optional[str] = None, dist: Optional[distributed.Dist] = None,
              make_schedule: Optional[Callable] = None) -> Run:
    """Resolve `cfg` and build its run: device, data, model, then (for training) the loaders,
    optimizer, schedule and step.

    `preprocess` (a run's preprocess.json) builds the model for inference only, without data.
    `dist` (a distributed.Dist) joins the torchrun process group and shards the batches;
    `make_schedule(optimizer, steps_per_epoch)` replaces the config's lr schedule (lr-find).
    """
    cfg = resolve_config(cfg)
    if preprocess is not None:
        dev = resolve_device(device or cfg.device)
        cfg = _precision_resolved(cfg, dev)
        model = build_model(cfg.section("model"), model_input_shape(preprocess),
                            num_classes or len(preprocess["classes"]))
        return Run(cfg, dev, preprocess, model)
    dev, d = _setup_device(cfg, dist)
    cfg = _precision_resolved(cfg, dev)
    data, preprocess = pipeline.load(cfg.section("data"))
    model = build_model(cfg.section("model"), model_input_shape(preprocess), data.num_classes).to(dev)
    if cfg.precision == "fp16" and dev.type != "cuda":
        raise ConfigError("precision: fp16 autocast needs a CUDA device; on CPU use --precision bf16 or fp32")
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    check_batch_statistics(model, cfg)
    pipe = _build_pipeline(cfg.section("data"), dev, d, has_batchnorm(model), data, preprocess)
    model, forward = distributed.wrap_model(model, d, dev, cfg.sync_bn)
    if cfg.patience and pipe.val is None:
        raise ConfigError("patience: early stopping needs a validation split (--val-split 0.1); "
                          "stopping on the test set would leak it into model selection")
    optimizer = optim.make_optimizer(model, cfg.section("optim"))
    scheduler = (make_schedule or _config_schedule(cfg.section("optim")))(optimizer, len(pipe.train))
    step = Step(model, optimizer, scheduler, cfg.section("regularization"),
                forward=torch.compile(forward) if cfg.compile else forward,
                precision=cfg.precision, channels_last=cfg.channels_last)
    if cfg.cuda_graphs:
        graphs.check_supported(step, dev, compiled=cfg.compile, distributed=d.enabled)
        step = graphs.GraphedStep(step)
    return Run(cfg, dev, preprocess, model, data, pipe, optimizer, scheduler, step, d)


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


def _build_pipeline(cfg: DataConfig, dev, d: distributed.Dist, drop_single: bool, data, preprocess):
    if not d.enabled:
        return pipeline.build(cfg, dev, drop_single=drop_single, data=data, preprocess=preprocess)
    # One global batch of world x batch_size, the same on every rank; each takes its slice.
    pipe = pipeline.build(cfg.replace(batch_size=cfg.batch_size * d.world), dev, drop_single,
                          data=data, preprocess=preprocess)
    pipe.train = distributed.ShardedLoader(pipe.train, d, drop_single)
    return pipe
