"""Regularizers that act through the loss or after the optimizer step.

- `l2`: adds (l2 / 2) * sum(w^2) to the loss. Its gradient is l2 * w, so with plain SGD it is
  exactly `weight_decay=l2`; with momentum or Adam the two differ (the penalty's gradient goes
  through the optimizer's moments, coupled decay too, decoupled `adamw` decay does not).
- `l1` (`l1_mode: proximal`, the default): a proximal (soft-threshold) step after each optimizer
  step, w <- sign(w) * max(|w| - lr * l1, 0). Unlike adding l1 * |w| to the loss (a subgradient,
  which makes weights oscillate around zero and never reach it), this sets weights exactly to zero.
- `l1` with `l1_mode: penalty`: l1 * sum(|w|) added to the loss, L1 as seed 004 defines it
  ("权值向量w中各个元素的绝对值之和" added to the cost); its gradient is l1 * sign(w), which goes
  through the optimizer like the loss's own, so a weight crosses zero rather than stopping there.
- `max_norm`: after each step, each output unit's incoming weight vector (a row of a Linear
  weight, a filter of a Conv) is rescaled to norm <= max_norm (Srebro et al.; Hinton et al. 2012).
Penalties apply to the same parameters weight decay does (see optim.decay_groups).
"""

from __future__ import annotations

import torch
import torch.nn as tnn

_WEIGHTED = (tnn.Linear, tnn.Conv1d, tnn.Conv2d, tnn.Conv3d)


def penalized_params(model: tnn.Module, cfg) -> list[tnn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    return params if cfg.decay_norm_bias else [p for p in params if p.ndim > 1]


def l2_penalty(params, l2: float) -> torch.Tensor:
    return 0.5 * l2 * sum(p.pow(2).sum() for p in params)


def l1_penalty(params, l1: float) -> torch.Tensor:
    return l1 * sum(p.abs().sum() for p in params)


@torch.no_grad()
def l1_proximal(params, l1: float, lr: float) -> None:
    t = lr * l1
    for p in params:
        p.copy_(p.sign() * (p.abs() - t).clamp_min_(0))


@torch.no_grad()
def apply_max_norm(model: tnn.Module, max_norm: float) -> None:
    for m in model.modules():
        if isinstance(m, _WEIGHTED):
            w = m.weight.view(m.weight.shape[0], -1)
            # renorm_ rescales only the rows whose norm exceeds max_norm
            w.renorm_(2, 0, max_norm)


def clip_gradients(model: tnn.Module, value: float, mode: str) -> None:
    if mode == "norm":
        tnn.utils.clip_grad_norm_(model.parameters(), value)
    else:
        tnn.utils.clip_grad_value_(model.parameters(), value)
