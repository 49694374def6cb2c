"""Scoring a model on a loader: loss, top-1 and top-5, with optional test-time augmentation.

Used by the training loop after each epoch and by `normlab eval` on a saved run, so both
report the same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data.loader import DeviceLoader
from .data.tta import parse as parse_tta
from .data.tta import predict_proba
from .device import autocast


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DeviceLoader, precision: str = "fp32",
             channels_last: bool = False, tta: str = "") -> dict:
    """Mean cross-entropy, top-1 and (with more than 5 classes) top-5 accuracy, in eval mode.

    With `tta` views (data/tta.py) the prediction is the mean probability over the views and
    the loss is the cross-entropy of that mean.
    """
    was_training = model.training
    model.eval()
    dev = loader.x.device
    views = parse_tta(tta)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    top5 = torch.zeros((), dtype=torch.int64, device=dev)
    for xb, yb in loader:
        if channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(dev, precision):
            if views:
                out = predict_proba(model, xb, views).clamp_min(1e-12).log()
            else:
                out = model(xb).float()
        loss_sum += F.cross_entropy(out, yb, reduction="sum").double()
        correct += (out.argmax(1) == yb).sum()
        if out.shape[1] > 5:
            top5 += (out.topk(5, dim=1).indices == yb[:, None]).any(1).sum()
    model.train(was_training)
    n = loader.num_samples
    res = {"loss": loss_sum.item() / n, "acc": correct.item() / n}
    if out.shape[1] > 5:
        res["top5"] = top5.item() / n
    return res
