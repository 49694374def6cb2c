"""Building a run from its config: the resolved config and the model."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import torch

from ..config import TrainConfig
from ..errors import ConfigError
from ..models.registry import create_model, get_spec


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill the model's own defaults (norm, act) and the run directory into the config."""
    spec = get_spec(cfg.model)
    out = cfg.out or str(Path("runs") / f"{cfg.model}-{cfg.dataset}-{datetime.now():%Y%m%d-%H%M%S}")
    dropout = spec.default_dropout if cfg.dropout is None else cfg.dropout
    return cfg.replace(norm=cfg.norm or spec.default_norm, act=cfg.act or spec.default_act, dropout=dropout,
                       out=out)


def build_model(cfg: TrainConfig, input_shape, num_classes: int) -> torch.nn.Module:
    """The model a config describes, with the seed applied so initial weights are reproducible."""
    spec = get_spec(cfg.model)
    model_kw = {k: getattr(cfg, k) for k in ("depth", "width") if getattr(cfg, k) is not None}
    unknown = [k for k in model_kw if k not in spec.defaults]
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: model {cfg.model!r} has no such option "
                          f"(it takes: {', '.join(sorted(spec.defaults)) or 'none'})")
    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, num_classes=num_classes, in_channels=input_shape[0],
                        input_size=input_shape[1:], norm=cfg.norm, act=cfg.act, dropout=cfg.dropout,
                        init=cfg.init, norm_impl=cfg.norm_impl, bn_eps=cfg.bn_eps,
                        bn_momentum=cfg.bn_momentum, **model_kw)


def has_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) or type(m).__name__.startswith("BatchNorm")
               for m in model.modules())
