"""Exponential moving average of the weights (Polyak averaging), evaluated instead of the raw
weights when `--ema DECAY` is given.

After every optimizer step: ema <- decay * ema + (1 - decay) * w for each parameter; buffers
(BatchNorm's running statistics) are copied, since they are already running averages.
"""

from __future__ import annotations

import copy

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = model
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow.parameters(), self.model.parameters()):
            s.lerp_(p.detach(), 1.0 - self.decay)
        for sb, b in zip(self.shadow.buffers(), self.model.buffers()):
            sb.copy_(b)
