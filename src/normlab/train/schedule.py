"""Learning-rate schedules, stepped once per optimizer step.

Each schedule is a multiplier of the base lr as a function of the position in the run, so a
schedule means the same thing on any dataset size; `warmup` epochs ramp linearly from ~0 first.
  constant   1
  linear     decays linearly to 0 at the end of the run
  cosine     half a cosine from 1 to 0
  step       x lr_gamma every lr_step epochs
  multistep  x lr_gamma at each epoch in milestones
  onecycle   Smith's one-cycle: cosine up from 1/25 to 1 over the first 30%, then cosine down
             to 1/(25 * 1e4) (torch's OneCycleLR defaults)
"""

from __future__ import annotations

import bisect
import math

import torch

from ..config import OptimConfig
from ..errors import unknown_name

NAMES = ("constant", "linear", "cosine", "step", "multistep", "onecycle")


def check_schedule(name: str) -> str:
    if name not in NAMES:
        raise unknown_name("schedule", name, NAMES)
    return name


def _cos(start: float, end: float, t: float) -> float:
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def shape(name: str, cfg):
    """Multiplier as a function of (t in [0, 1], epoch as a float)."""
    if name == "constant":
        return lambda t, e: 1.0
    if name == "linear":
        return lambda t, e: 1.0 - t
    if name == "cosine":
        return lambda t, e: _cos(1.0, 0.0, t)
    if name == "step":
        return lambda t, e: cfg.lr_gamma ** math.floor(e / cfg.lr_step + 1e-9)
    if name == "multistep":
        ms = sorted(cfg.milestones)
        return lambda t, e: cfg.lr_gamma ** bisect.bisect_right(ms, e + 1e-9)
    # onecycle
    return lambda t, e: _cos(1 / 25, 1.0, t / 0.3) if t < 0.3 else _cos(1.0, 1 / 25e4, (t - 0.3) / 0.7)


def lr_factor(cfg: OptimConfig, steps_per_epoch: int):
    """step index -> multiplier of the base lr."""
    f = shape(check_schedule(cfg.schedule), cfg)
    total = cfg.epochs * steps_per_epoch
    warm = round(cfg.warmup * steps_per_epoch)
    decay = max(1, total - warm)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        s = min(step - warm, decay)
        return f(s / decay, s / steps_per_epoch)

    return factor


def make_scheduler(optimizer, cfg: OptimConfig, steps_per_epoch: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch))
