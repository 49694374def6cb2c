"""Optimizers by unambiguous name.

`sgd` is plain SGD (no momentum); `momentum` is SGD with heavy-ball momentum; `nesterov` is
SGD with Nesterov momentum. `weight_decay` is the optimizer's coupled L2 term (added to the
gradient), which for Adam is *not* the decoupled decay of `adamw`.
"""

from __future__ import annotations

import torch

from ..errors import unknown_name


def _sgd(params, cfg):
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _momentum(params, cfg):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _nesterov(params, cfg):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                           weight_decay=cfg.weight_decay)


def _adam(params, cfg):
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


OPTIMIZERS = {
    "sgd": _sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "adam": _adam,
}


def check_optimizer(name: str) -> str:
    if name not in OPTIMIZERS:
        raise unknown_name("optimizer", name, OPTIMIZERS)
    return name


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    return OPTIMIZERS[check_optimizer(cfg.optimizer)](params, cfg)
