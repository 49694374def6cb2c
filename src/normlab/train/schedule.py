"""Learning-rate schedules, stepped once per optimizer step.

Each schedule is a multiplier of the base lr as a function of progress t in [0, 1) through the
run, so it does not depend on the dataset size; `warmup` epochs ramp linearly from 0 first.
"""

from __future__ import annotations

import math

import torch

from ..errors import unknown_name

SCHEDULES = {
    "constant": lambda t: 1.0,
    "linear": lambda t: 1.0 - t,
    "cosine": lambda t: 0.5 * (1.0 + math.cos(math.pi * t)),
}


def check_schedule(name: str) -> str:
    if name not in SCHEDULES:
        raise unknown_name("schedule", name, SCHEDULES)
    return name


def make_scheduler(optimizer, name: str, total_steps: int, warmup_steps: int = 0):
    shape = SCHEDULES[check_schedule(name)]
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return shape(min(step - warmup_steps, decay_steps) / decay_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
