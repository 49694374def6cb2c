""""BN allows a higher learning rate" (seed 004's table of BN's benefits): the same net with and
without BN over a grid of learning rates, and per seed the highest rate that still trains.

A run "trains" when it finishes and its final test accuracy reaches TRAINS_ACC. A run the
trainer stopped on a non-finite loss is recorded as diverged (its failed.json), not crashed on;
a run that finishes below TRAINS_ACC is counted as not training too (a loss that blew up to a
large finite value, or stalled at chance).
"""

from __future__ import annotations

import math

from ..figures import new_figure, style
from . import measures as m
from .verdict import compare_arms, mean

# 8 rates over three decades, equally spaced in log10 (10^(k * 3/7) / 100, rounded)
LR_GRID = (0.01, 0.027, 0.072, 0.19, 0.52, 1.4, 3.7, 10.0)
TRAINS_ACC = 0.5
ARMS = ("none", "bn")


def status(run) -> str:
    if m.diverged(run):
        return "diverged"
    if m.failure(run):
        return "failed"
    return "trains" if m.test_acc(run) >= TRAINS_ACC else "below"


def highest_trainable(statuses: list) -> float:
    """log10 of the highest rate whose run trains; one grid step below the grid when none does."""
    ok = [i for i, s in enumerate(statuses) if s == "trains"]
    step = math.log10(LR_GRID[1] / LR_GRID[0])
    return math.log10(LR_GRID[ok[-1]]) if ok else math.log10(LR_GRID[0]) - step


def table(runs) -> dict:
    """Per arm and rate: every seed's status and test accuracy (NaN where the run failed)."""
    out = {}
    for arm in ARMS:
        for lr in LR_GRID:
            dirs = runs.dirs(f"{arm}@{lr}")
            out[f"{arm}@{lr}"] = {"status": [status(d) for d in dirs], "test_acc": [m.test_acc(d) for d in dirs]}
    return out


def figure(cells: dict):
    """Final test accuracy (%) against the learning rate, one line per arm (mean of the runs that
    finished), crosses at 0 where seeds diverged; the "trains" threshold and chance dotted. A
    matplotlib Figure in the reports' style (analysis/figures.py), saved by the report."""

    fig, (ax,) = new_figure(1, 1, (6.4, 5.0))
    for i, arm in enumerate(ARMS):
        st = style(i)
        xs, ys, div = [], [], []
        for lr in LR_GRID:
            c = cells[f"{arm}@{lr}"]
            acc = [a for a in c["test_acc"] if math.isfinite(a)]
            if acc:
                xs.append(lr)
                ys.append(100 * mean(acc))
            if "diverged" in c["status"]:
                div.append(lr)
        ax.plot(xs, ys, lw=1.8, ms=6, label=f"norm {arm} (mean of the runs that finished)", **st)
        if div:
            ax.plot(div, [0.0] * len(div), "x", ms=9, mew=2, color=st["color"], linestyle="none",
                    label=f"norm {arm}: some seeds diverged (non-finite loss)")
    ax.axhline(100 * TRAINS_ACC, color="#555555", lw=1.0, ls="--", label=f"'trains' threshold ({100 * TRAINS_ACC:.0f}%)")
    ax.axhline(100 * m.CHANCE, color="#555555", lw=1.2, ls=":", label=f"chance ({100 * m.CHANCE:.0f}%)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)"), ax.set_ylabel("final test accuracy (%)")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)  # off the data
    ax.set_title("BN and the learning rate (per-rate means over seeds)")
    return fig


def _cell_text(c: dict) -> str:
    acc = [a for a in c["test_acc"] if math.isfinite(a)]
    div = c["status"].count("diverged")
    text = f"{100 * mean(acc):.1f}%" if acc else "–"
    return text + (f" ({div} diverged)" if div else "")


def claim_bn_lr(runs, setting: str) -> dict:
    cells = table(runs)
    best = {arm: [highest_trainable([cells[f"{arm}@{lr}"]["status"][i] for lr in LR_GRID])
                  for i in range(len(runs.seeds))] for arm in ARMS}
    c = compare_arms(best["none"], best["bn"], +1, "decades of lr (log10)", ("none", "bn"),
                     "log10 of the highest lr that trains")
    c["setting"] = (f"{setting}; lr grid {list(LR_GRID)}; a run trains when it finishes with test accuracy >= "
                    f"{TRAINS_ACC}; effect = log10 of the highest lr that trains, BN minus none (decades), per seed; "
                    f"n = {len(runs.seeds)} paired seeds")
    c["numbers"] = {"cells": cells, "highest_lr": {a: [10 ** v for v in best[a]] for a in ARMS}}
    c["figures"] = {"bn-higher-lr.png": (figure(cells), "Final test accuracy (%) against the learning rate (log "
                                                        "scale), mean of the runs that finished; crosses at 0: rates "
                                                        "where seeds diverged.")}
    hi = {a: sorted({round(10 ** v, 3) for v in best[a]}) for a in ARMS}
    c["summary"] = (f"highest lr that trains: none {hi['none']}, bn {hi['bn']}; effect {c['effect']:+.2f} "
                    f"[{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}] decades of lr"
                    + (" (BN trains at the top of the grid in some seed: a lower bound)"
                       if max(best["bn"]) >= math.log10(LR_GRID[-1]) else "")
                    + "; mean test accuracy by lr: " +
                    "; ".join(f"{a}: " + ", ".join(f"{lr} {_cell_text(cells[f'{a}@{lr}'])}" for lr in LR_GRID)
                              for a in ARMS))
    return c
