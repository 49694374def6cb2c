"""A model from a run's config: the model's own defaults filled in, then the model built.

Training (train/build.py) and inference (api.load, export, serving) both build models here, so
loading a run for `predict` needs nothing of the training loop.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig, TrainConfig
from .registry import create_model, get_spec

# The config fields that are options of some models only (registered as their defaults).
MODEL_OPTIONS = ("depth", "width", "widths", "bias", "hidden_dropout", "block_order", "shortcut_op", "fc_norm")

# GroupNorm and InstanceNorm run 2-3x slower on channels_last CPU tensors (docs/norms.md)
SLOW_CHANNELS_LAST = ("gn", "in", "in-affine")


def slow_channels_last(norm) -> bool:
    """Whether `norm` (a name such as "gn:4", or a callable) is a kind measured slower in NHWC on a CPU."""
    return isinstance(norm, str) and norm.split(":")[0] in SLOW_CHANNELS_LAST


def with_model_defaults(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with the model's own defaults (lr, norm, act, dropout, memory format) where it gives
    none; applying it twice changes nothing."""
    spec = get_spec(cfg.model)
    norm = cfg.norm or spec.default_norm
    channels_last = cfg.channels_last
    if channels_last is None:
        channels_last = spec.default_channels_last and not slow_channels_last(norm)
    return cfg.replace(lr=spec.default_lr if cfg.lr is None else cfg.lr, norm=norm,
                       act=cfg.act or spec.default_act, channels_last=channels_last,
                       dropout=spec.default_dropout if cfg.dropout is None else cfg.dropout)


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
