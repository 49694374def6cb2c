"""Figures for reports: a colour-blind-safe style, learning curves over seeds, PNG + SVG.

Conventions every figure here follows (a reviewer's checklist):
- colours from the Okabe-Ito palette, safe for the common colour-vision deficiencies, and every
  line also has its own marker and line style, so it can be told apart in grey print;
- y-axis labels carry their unit (accuracy in %, loss in nats); epochs are integer ticks;
- accuracy axes run from 0 to 100% with a dotted chance line (1 / classes), so a gap of a few
  points is not blown up into a cliff; where the curves sit in a narrow band a second panel zooms
  in, and its title says where its axis starts;
- per-seed runs are thin lines under the mean, the band is mean ± sd over seeds;
- written as a 150 dpi PNG and an SVG.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..plots import DPI, LINESTYLES, MARKERS, PALETTE, encode, integer_epochs, style  # noqa: F401  (the style)


def new_figure(rows: int, cols: int, size):
    # A bare Figure, not pyplot: no global registry, no GUI backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots(rows, cols, squeeze=False).ravel()


def save(fig, png_path, layout: bool = True) -> bytes:
    """Write PNG_PATH (150 dpi) and the same figure as .svg beside it; return the PNG bytes.
    `layout=False` keeps a layout the figure made itself (room kept for a figure legend)."""
    from ..fileio import atomic_write_bytes

    if layout:
        fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)  # e.g. --plot runs/stats.png before runs/ exists
    png = encode(fig, "png")
    atomic_write_bytes(png_path, png)
    atomic_write_bytes(png_path.with_suffix(".svg"), encode(fig, "svg"))
    return png


def _band(ax, ep, runs: np.ndarray, i: int, label: str) -> None:
    """Thin per-seed lines, the mean with the line's marker, mean ± sd as a band."""
    st = style(i)
    finite = np.isfinite(runs).all(axis=0)
    for r in runs:
        ax.plot(ep, r, color=st["color"], lw=0.7, alpha=0.45, linestyle="-", zorder=2)
    mu = np.where(finite, runs.mean(axis=0), np.nan)
    ax.plot(ep, mu, lw=1.8, ms=4, label=label, zorder=3, markevery=max(1, len(ep) // 12), **st)
    if len(runs) > 1:
        sd = runs.std(axis=0, ddof=1)
        ax.fill_between(ep, mu - sd, mu + sd, color=st["color"], alpha=0.15, lw=0, zorder=1)


def learning_curves(groups: Sequence[tuple[str, list]], title: str, classes: Optional[int] = None):
    """One figure from `groups` = [(label, [metrics rows of one run, ...]), ...]: test accuracy (%)
    and train loss against epoch, plus a zoomed accuracy panel when every curve ends in a band
    narrower than 15 points. Runs of a group are cut to their shortest common length."""
    data = []
    for label, runs in groups:
        runs = [r for r in runs if r]
        if not runs:
            continue
        n = min(len(r) for r in runs)
        acc = np.array([[100.0 * _f(row.get("test_acc")) for row in r[:n]] for r in runs])
        loss = np.array([[_f(row.get("train_loss")) for row in r[:n]] for r in runs])
        data.append((f"{label} ({len(runs)} run{'s' * (len(runs) > 1)})", np.arange(1, n + 1), acc, loss))
    finals = [a[:, -1].mean() for _, _, a, _ in data]
    zoom = len(data) > 0 and max(finals) - min(finals) < 15 and min(np.nanmin(a) for _, _, a, _ in data) > 20
    fig, axes = new_figure(1, 3 if zoom else 2, (14 if zoom else 10, 4.2))
    for i, (label, ep, acc, loss) in enumerate(data):
        _band(axes[0], ep, acc, i, label)
        _band(axes[1], ep, loss, i, label)
        if zoom:
            _band(axes[2], ep, acc, i, label)
    axes[0].set_ylim(0, 100)
    axes[0].set_ylabel("test accuracy (%)"), axes[0].set_title("test accuracy (mean ± sd over seeds)")
    if classes:
        axes[0].axhline(100.0 / classes, color="#555555", ls=":", lw=1.2, label=f"chance ({100 / classes:.0f}%)")
    axes[1].set_ylabel("train loss (cross-entropy, nats)"), axes[1].set_title("train loss (mean ± sd over seeds)")
    axes[1].set_ylim(bottom=0)
    if zoom:
        lo = math.floor(min(np.nanmin(a) for _, _, a, _ in data))
        axes[2].set_ylim(lo, min(100, math.ceil(max(np.nanmax(a) for _, _, a, _ in data)) + 0.5))
        axes[2].set_ylabel("test accuracy (%)")
        axes[2].set_title(f"zoomed: the y-axis starts at {lo}%", color="#B00000")
    for ax in axes:
        integer_epochs(ax)
        ax.grid(alpha=0.3)
    if data:
        axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    return fig


def _f(v) -> float:
    return float(v) if isinstance(v, (int, float)) and v is not None else math.nan


def first_nonfinite(values: Sequence[float]) -> Optional[int]:
    """Index of the first value that is NaN or infinite, or None."""
    for i, v in enumerate(values):
        if not math.isfinite(v):
            return i
    return None
