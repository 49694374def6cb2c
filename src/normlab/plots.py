"""Plots as files (matplotlib's Agg backend: no display needed), and the style every figure of
normlab shares (analysis/figures.py builds the reports' on it): colour-blind-safe colours with
distinct markers and line styles, units on the axes, integer epochs, 150 dpi PNG plus an SVG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

# Okabe & Ito (2008): blue, vermillion, bluish green, orange, reddish purple, sky blue, black, yellow.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))
DPI = 150


def style(i: int) -> dict:
    """Colour, marker and line style of the i-th line: all three differ between neighbours."""
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[i % len(LINESTYLES)]}


def integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def encode(fig, fmt: str) -> bytes:
    import matplotlib

    buf = io.BytesIO()
    # SVG text stays text (searchable, selectable, smaller); no date, so a rerun gives the same file.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def new_figure(rows: int, cols: int, size):
    # A bare Figure, not pyplot: no global figure registry to leak into, no GUI backend to pick,
    # and a tenth of pyplot's import time (which a training run of seconds would notice).
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots(rows, cols)


def save_figure(fig, path: Path) -> None:
    """PATH as a 150 dpi PNG and the same figure as PATH with .svg, each written atomically."""
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
