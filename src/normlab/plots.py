"""Plots as files (matplotlib's Agg backend: no display needed), in the style of
analysis/figures.py: colour-blind-safe colours with distinct markers and line styles, units on
the axes, integer epochs, 150 dpi PNG plus an SVG beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def new_figure(rows: int, cols: int, size):
    # A bare Figure, not pyplot: no global figure registry to leak into, no GUI backend to pick,
    # and a tenth of pyplot's import time (which a training run of seconds would notice).
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots(rows, cols)


def save_figure(fig, path: Path) -> None:
    """PATH as a 150 dpi PNG and the same figure as PATH with .svg, each written atomically."""
    from ..analysis.figures import encode

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # default plots go under runs/, which may not exist yet
    for target, fmt in ((path, "png"), (path.with_suffix(".svg"), "svg")):
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(encode(fig, fmt))
        tmp.replace(target)


def plot_curves(rows: list[dict], path: Path, title: str = "", classes: Optional[int] = None) -> None:
    """Loss and accuracy of one run against epoch. Train values are the running averages the
    trainer logs (train mode), and the legend says so."""
    from ..analysis.figures import integer_epochs, style

    ep = [r["epoch"] for r in rows]
    fig, (a1, a2) = new_figure(1, 2, (10, 4))
    every = max(1, len(ep) // 15)  # markers stay readable over a hundred epochs
    train, test = {**style(0), "markevery": every}, {**style(1), "markevery": every}
    a1.plot(ep, [r["train_loss"] for r in rows], label="train (running, train mode)", **train)
    a1.plot(ep, [r["test_loss"] for r in rows], label="test", **test)
    a1.set_ylabel("loss (cross-entropy, nats)"), a1.set_title("loss"), a1.set_ylim(bottom=0)
    a2.plot(ep, [100 * r["train_acc"] for r in rows], label="train (running, train mode)", **train)
    a2.plot(ep, [100 * r["test_acc"] for r in rows], label="test", **test)
    if classes:
        a2.axhline(100 / classes, color="#555555", ls=":", lw=1.2, label=f"chance ({100 / classes:.0f}%)")
    a2.set_ylabel("accuracy (%)"), a2.set_title("accuracy"), a2.set_ylim(0, 100)
    for a in (a1, a2):
        integer_epochs(a)
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
