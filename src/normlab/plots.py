"""Plots as PNG files (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path


def new_figure(rows: int, cols: int, size):
    # A bare Figure, not pyplot: no global figure registry to leak into, no GUI backend to pick,
    # and a tenth of pyplot's import time (which a training run of seconds would notice).
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots(rows, cols)


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # default plots go under runs/, which may not exist yet
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)


def plot_curves(rows: list[dict], path: Path, title: str = "") -> None:
    ep = [r["epoch"] for r in rows]
    fig, (a1, a2) = new_figure(1, 2, (10, 4))
    a1.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    a1.plot(ep, [r["test_loss"] for r in rows], "s-", label="test")
    a1.set_xlabel("epoch"), a1.set_ylabel("loss"), a1.set_title("loss"), a1.legend()
    a2.plot(ep, [r["train_acc"] for r in rows], "o-", label="train")
    a2.plot(ep, [r["test_acc"] for r in rows], "s-", label="test")
    a2.set_xlabel("epoch"), a2.set_ylabel("accuracy"), a2.set_title("accuracy"), a2.legend()
    for a in (a1, a2):
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
