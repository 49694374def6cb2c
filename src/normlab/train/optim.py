"""Optimizers by unambiguous name.

`sgd` is plain SGD (no momentum); `momentum` is SGD with heavy-ball momentum; `nesterov` is
SGD with Nesterov momentum. `weight_decay` is the optimizer's coupled L2 term (wd * w added to
the gradient, so Adam rescales it like any gradient); `adamw` decays the weights directly
(decoupled, Loshchilov & Hutter), which is a different regularizer for adaptive methods.

Adam and AdamW use torch's fused kernels on CPU and CUDA (floating-point parameters): one pass
over each tensor instead of several, the same update to rounding. On a CPU this makes Adam's
step about 4x faster, which is a quarter of a training step for an 11M-parameter ResNet-18.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..config import OptimConfig
from ..errors import unknown_name

FUSABLE = ("adam", "adamw")
FUSED_DEVICES = ("cpu", "cuda")  # where torch >= 2.4 has fused Adam kernels


DEFAULT_MOMENTUM = 0.9


def _momentum(cfg):
    return DEFAULT_MOMENTUM if cfg.momentum is None else cfg.momentum


def _betas(cfg):
    return (cfg.beta1, cfg.beta2)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda p, c, wd: torch.optim.SGD(p, lr=c.lr, weight_decay=wd),
    "momentum": lambda p, c, wd: torch.optim.SGD(p, lr=c.lr, momentum=_momentum(c), weight_decay=wd),
    "nesterov": lambda p, c, wd: torch.optim.SGD(p, lr=c.lr, momentum=_momentum(c), nesterov=True,
                                                 weight_decay=wd),
    "adagrad": lambda p, c, wd: torch.optim.Adagrad(p, lr=c.lr, eps=c.eps, weight_decay=wd),
    # Adadelta's lr scales its unitless update; 1.0 is the paper's (and torch's) default.
    "adadelta": lambda p, c, wd: torch.optim.Adadelta(p, lr=c.lr, rho=c.beta2 if c.beta2 < 0.999 else 0.9,
                                                      eps=c.eps if c.eps != 1e-8 else 1e-6, weight_decay=wd),
    "rmsprop": lambda p, c, wd: torch.optim.RMSprop(p, lr=c.lr, alpha=0.99, eps=c.eps, weight_decay=wd),
    "adam": lambda p, c, wd, **kw: torch.optim.Adam(p, lr=c.lr, betas=_betas(c), eps=c.eps, weight_decay=wd, **kw),
    "adamw": lambda p, c, wd, **kw: torch.optim.AdamW(p, lr=c.lr, betas=_betas(c), eps=c.eps, weight_decay=wd, **kw),
    "nadam": lambda p, c, wd: torch.optim.NAdam(p, lr=c.lr, betas=_betas(c), eps=c.eps, weight_decay=wd),
    # The second-order method seed 002 mentions; each step runs the trainer's closure (Step).
    "lbfgs": lambda p, c, wd: _lbfgs(p, c, wd),
}


def _lbfgs(groups, cfg, wd):
    from ..errors import ConfigError

    if wd:
        raise ConfigError("optimizer lbfgs: torch's L-BFGS has no weight decay; use --l2 for an L2 penalty")
    params = [p for g in groups for p in g["params"]]  # L-BFGS takes one parameter group
    return torch.optim.LBFGS(params, lr=cfg.lr, max_iter=20, history_size=10, line_search_fn="strong_wolfe")


def check_optimizer(name: str) -> str:
    if name not in OPTIMIZERS:
        raise unknown_name("optimizer", name, OPTIMIZERS)
    return name


def decay_groups(model: torch.nn.Module, cfg) -> list[dict]:
    """Parameter groups: with decay_norm_bias off, biases and norm parameters (every tensor of
    rank <= 1) get no weight decay, the usual practice since decaying a BN scale changes
    nothing but the effective learning rate."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.decay_norm_bias or cfg.weight_decay == 0:
        return [{"params": params, "weight_decay": cfg.weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    rest = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    build = OPTIMIZERS[check_optimizer(cfg.optimizer)]
    groups = decay_groups(model, cfg)
    params = [p for g in groups for p in g["params"]]
    # torch checks the device only at the first step, so decide here, not by trying
    if cfg.optimizer in FUSABLE and params and all(p.device.type in FUSED_DEVICES and p.is_floating_point()
                                                   for p in params):
        return build(groups, cfg, cfg.weight_decay, fused=True)
    return build(groups, cfg, cfg.weight_decay)
