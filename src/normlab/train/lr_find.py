"""The learning-rate range test (Smith 2017, popularized by fastai's lr_find).

Train from the config's initial weights while the lr grows exponentially from `start` to `end`
over `steps` batches, record the smoothed loss, stop once it exceeds 4x its minimum, and
suggest the lr where the smoothed loss falls fastest (steepest negative slope in log-lr), which
is a safe, not greedy, choice.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import torch

from ..config import make_config
from ..plots import new_figure, save_figure
from .build import build_run


def lr_find(config, start: float = 1e-6, end: float = 10.0, steps: int = 100, smooth: float = 0.9) -> dict:
    gamma = (end / start) ** (1.0 / max(1, steps - 1))
    exponential = lambda opt, _: torch.optim.lr_scheduler.LambdaLR(opt, lambda i: gamma ** i)  # noqa: E731
    run = build_run(make_config(config, {"schedule": "constant", "lr": start}), make_schedule=exponential)
    model, optimizer, step, pipe = run.model, run.optimizer, run.step, run.pipe
    lrs: list[float] = []
    losses: list[float] = []
    avg, best = 0.0, math.inf
    model.train()
    batches: Iterator = iter(())
    for i in range(steps):
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(pipe.train)
            xb, yb = next(batches)
        lr = optimizer.param_groups[0]["lr"]
        _, loss = step(xb, yb)
        value = loss.item()
        if not math.isfinite(value):
            break
        avg = smooth * avg + (1 - smooth) * value
        smoothed = avg / (1 - smooth ** (i + 1))  # bias-corrected, as Adam's moments
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > 4 * best and i > 10:
            break
    suggestion = _steepest(lrs, losses)
    return {"lrs": lrs, "losses": losses, "suggested_lr": suggestion, "model": run.cfg.model,
            "dataset": run.cfg.dataset}


def _steepest(lrs, losses) -> float:
    """The lr at the most negative slope of loss against log10(lr), ignoring the exploding tail."""
    if len(lrs) < 3:
        return lrs[0] if lrs else float("nan")
    stop = losses.index(min(losses)) + 1
    slopes = [(losses[i + 1] - losses[i]) / (math.log10(lrs[i + 1]) - math.log10(lrs[i])) for i in range(stop - 1)]
    if not slopes:
        return lrs[0]
    return lrs[min(range(len(slopes)), key=slopes.__getitem__)]


def plot_lr_find(res: dict, path) -> None:
    fig, ax = new_figure(1, 1, (6, 4))
    ax.plot(res["lrs"], res["losses"])
    ax.set_xscale("log")
    ax.axvline(res["suggested_lr"], color="r", ls="--", label=f"suggested {res['suggested_lr']:.2e}")
    ax.set_xlabel("learning rate"), ax.set_ylabel("smoothed training loss"), ax.legend(), ax.grid(alpha=0.3)
    ax.set_title(f"lr range test: {res['model']} on {res['dataset']}")
    save_figure(fig, Path(path))
