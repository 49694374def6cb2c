"""The claims page's overview figure: every paired comparison of the run in its own small panel,
in the style of the reports' figures (analysis/figures.py): Okabe-Ito colours, and a marker per
verdict as well, so the verdict does not rest on colour alone; each axis carries its unit."""

from __future__ import annotations

import math

from ..figures import PALETTE, new_figure
from .comparisons import tests_of
from .verdict import FAILS, HOLDS

# verdict -> (colour, marker, legend text); anything else is inconclusive
LOOK = {HOLDS: (PALETTE[2], "o", "holds"), FAILS: (PALETTE[1], "X", "does not hold here")}
OTHER = (PALETTE[3], "s", "inconclusive / too few seeds")


def comparisons(doc: dict) -> list[tuple]:
    """(panel title, test dict) for every paired comparison with a finite effect, in report order."""
    out = []
    for r in doc["claims"]:
        preds = (r.get("numbers") or {}).get("predictions") or {}
        names = list(preds) if preds else [None]
        for key, t in zip(names, tests_of(r)):
            if math.isfinite(t.get("effect", math.nan)):
                out.append((r["name"] + (f": {key}" if key else ""), t))
    return out


def effects_figure(doc: dict):
    """A matplotlib Figure, or None when the run has no paired comparison."""
    items = comparisons(doc)
    if not items:
        return None
    # One column, narrow, with large text: on a 390-pixel phone the page shows it at about half its
    # size, and its labels stay readable (the SVG beside it has the full size).
    rows = len(items)
    height = 1.25 * rows + 1.5
    fig, axes = new_figure(rows, 1, (4.8, height))
    for ax, (name, t) in zip(axes, items):
        _panel(ax, name, t)
    handles = [axes[0].plot([], [], linestyle="none", marker=m, color=c, label=lab)[0]
               for c, m, lab in (*LOOK.values(), OTHER)]
    handles.append(axes[0].plot([], [], linestyle="none", marker="o", ms=4, color="#333333", alpha=0.6,
                                label="one seed's difference")[0])
    fig.suptitle("Paired effects (arm - baseline): mean with 95% interval;\nshaded: the side the claim predicts; "
                 "dashed: a margin", y=1 - 0.1 / height, va="top", fontsize=10)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.62 / height), ncol=2, fontsize=9,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 1.0 / height))
    return fig


def _panel(ax, name: str, t: dict) -> None:
    colour, marker, _ = LOOK.get(t["verdict"], OTHER)
    diffs = [a - b for a, b in zip(t["arm"], t["baseline"]) if math.isfinite(a - b)]
    lo, hi = t["ci"]
    margin = t.get("margin")
    edge = t["direction"] * margin if margin is not None and math.isfinite(margin) else None
    xs = [0.0, t["effect"], *diffs] + [v for v in (lo, hi, edge) if v is not None and math.isfinite(v)]
    left, right = min(xs), max(xs)
    pad = 0.08 * (right - left or abs(t["effect"]) or 1.0)
    left, right = left - pad, right + pad
    if t["direction"] > 0:
        ax.axvspan(0, right, color=PALETTE[5], alpha=0.12, lw=0)
    else:
        ax.axvspan(left, 0, color=PALETTE[5], alpha=0.12, lw=0)
    ax.axvline(0, color="#555555", ls=":", lw=1.2)
    if edge is not None:  # the smallest effect that would count: beyond it, the shaded side
        ax.axvline(edge, color=PALETTE[5], ls="--", lw=1.2)
    ax.scatter(diffs, [-0.25] * len(diffs), s=12, color="#333333", alpha=0.6, zorder=3, label="per seed")
    if math.isfinite(lo) and math.isfinite(hi):
        ax.errorbar([t["effect"]], [0.15], xerr=[[t["effect"] - lo], [hi - t["effect"]]], fmt=marker, ms=7,
                    color=colour, ecolor=colour, elinewidth=2, capsize=4, zorder=4)
    else:
        ax.plot([t["effect"]], [0.15], marker=marker, ms=7, color=colour, linestyle="none", zorder=4)
    ax.set_xlim(left, right)
    ax.set_ylim(-0.7, 0.7)
    ax.set_yticks([])
    ax.set_xlabel(t.get("unit") or "difference", fontsize=9)
    ax.tick_params(axis="x", labelsize=9)
    ax.set_title(f"{name} (n = {t['n']})", fontsize=10, loc="left")
    ax.grid(axis="x", alpha=0.3)
