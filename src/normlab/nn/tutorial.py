"""Seed 000's from-scratch BatchNorm (d2l's `batch_norm` / `BatchNorm`), as an implementation
choice (`--norm-impl tutorial`), so its conventions can be trained and compared with torch's:

- its `momentum` (0.9) weights the *old* running value: moving = 0.9 * moving + 0.1 * batch;
- the running mean and variance start at 0 (torch: mean 0, variance 1);
- the running variance is the biased batch variance (torch keeps the unbiased one);
- its API is `(num_features, num_dims)`, num_dims 2 after a Linear layer and 4 after a conv,
  with `gamma`/`beta` of shape (1, C) or (1, C, 1, 1).

One deliberate difference: the running statistics are registered buffers (the seed keeps plain
tensor attributes), so they are saved in checkpoints; the values are the seed's.
"""

from __future__ import annotations

import torch
from torch import nn


class BatchNormTutorial(nn.Module):
    def __init__(self, num_features: int, num_dims: int, eps: float = 1e-5, momentum: float = 0.9):
        super().__init__()
        if num_dims not in (2, 4):
            raise ValueError(f"num_dims must be 2 (after a Linear layer) or 4 (after a conv), got {num_dims}")
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.num_features, self.num_dims, self.eps, self.momentum = num_features, num_dims, eps, momentum
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.register_buffer("moving_mean", torch.zeros(shape))
        self.register_buffer("moving_var", torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.num_dims:
            raise ValueError(f"BatchNormTutorial(num_dims={self.num_dims}) got a {x.dim()}-D input")
        if not self.training:
            x_hat = (x - self.moving_mean) / torch.sqrt(self.moving_var + self.eps)
        else:
            dims = (0,) if x.dim() == 2 else (0, 2, 3)
            mean = x.mean(dim=dims, keepdim=True)
            var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
            x_hat = (x - mean) / torch.sqrt(var + self.eps)
            with torch.no_grad():
                self.moving_mean.mul_(self.momentum).add_((1.0 - self.momentum) * mean)
                self.moving_var.mul_(self.momentum).add_((1.0 - self.momentum) * var)
        return self.gamma * x_hat + self.beta

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_dims={self.num_dims}, eps={self.eps}, momentum={self.momentum} (old-value weight)"
