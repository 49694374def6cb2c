"""The leaderboard's files: leaderboard.csv (one row per arm, every number of the page), .json,
.md and .html (through analysis/render.py, as the other reports), the accuracy-against-batch-size
figure (PNG + SVG) and provenance.json."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..fileio import atomic_write_text
from . import figures, render
from .paired import t_interval

COLUMNS = ("model", "norm", "batch", "status", "why", "lr", "n", "mean_acc", "sd_acc", "diff", "low", "high", "p",
           "p_holm", "verdict", "share_won", "seeds_needed", "images_per_s")
FIGURE = "accuracy-vs-batch.png"
# Panels of the figure: the norms grouped by what they normalize over, BN drawn in every panel.
FAMILIES = (("batch statistics", ("bn", "brn", "gbn", "evob0")),
            ("per sample, across channels", ("gn", "ln", "ln-chw", "ln2d", "rms", "gn+ws", "evos0")),
            ("per sample and channel", ("in", "in-affine", "frn", "lrn")),
            ("weights only, or nothing", ("none", "ws", "wn")))


def fmt(x, digits: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:+,.{digits}f}" if sign else f"{x:,.{digits}f}"


def fmt_p(p) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v))
                        else repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _by(rows, model):
    return {(r["norm"], r["batch"]): r for r in rows if r["model"] == model}


def speed_text(doc: dict) -> str:
    sp = doc.get("speed")
    if not sp:  # a board written before the speed was timed apart from the runs
        return ("the trainer's training examples per second averaged over the epochs of the confirmation runs, one "
                "thread a run, on the machine named at the foot (wall time: other jobs on the machine slow it).")
    return (f"training images per second of each arm at its chosen rate, timed after the runs, arm beside arm in one "
            f"process on one thread: the trainer's own step on the arm's training batches, at least "
            f"{sp['min_steps']} steps and {sp['min_seconds']:g} s a measurement, {sp['rounds']} interleaved rounds, "
            f"the median (load average {sp['load'][0]:.1f} before, {sp['load'][1]:.1f} after, on the machine named "
            f"at the foot). Compare them within a model and batch size.")


def headline(doc: dict, model: str) -> list[list]:
    """Mean test accuracy (%) per norm and batch size, and training images/s at batch 32."""
    s = doc["setting"]
    cells = _by(doc["rows"], model)
    speed_batch = 32 if 32 in s["batches"] else s["batches"][-1]
    out = [["norm", *(f"batch {b}" for b in s["batches"]), f"images/s (batch {speed_batch})"]]
    for norm in s["norms"]:
        line = [f"`{norm}`"]
        for b in s["batches"]:
            r = cells[(norm, b)]
            line.append(fmt(r["mean_acc"]) if r["status"] == "trained" else
                        "= bn" if r["why"].startswith("the same computation as bn") else "n/a")
        r = cells[(norm, speed_batch)]
        line.append(fmt(r.get("images_per_s"), 0) if r["status"] == "trained" else "–")
        out.append(line)
    return out


def detail(doc: dict, model: str) -> list[list]:
    out = [["norm", "batch", "verdict vs bn", "difference vs bn [95% interval]", "p (Holm)", "seeds won",
            "test accuracy (%)", "tuned lr"]]
    for r in doc["rows"]:
        if r["model"] != model or r["status"] != "trained":
            continue
        if r["norm"] == doc["baseline"]:
            vs, diff, p, won = "baseline", "–", "–", "–"
        else:
            vs = r.get("verdict", "–")
            if r.get("seeds_needed"):
                vs += f" (about {r['seeds_needed']:,} seeds for this size)"
            diff = f"{fmt(r.get('diff'), 2, True)} [{fmt(r.get('low'), 2, True)}, {fmt(r.get('high'), 2, True)}]"
            p, won = fmt_p(r.get("p_holm")), f"{100 * r['share_won']:.0f}%" if r.get("share_won") is not None else "–"
        out.append([f"`{r['norm']}`", str(r["batch"]), vs, diff, p, won, f"{fmt(r['mean_acc'])} ± {fmt(r['sd_acc'])}",
                    f"{r['lr']:g}"])
    return out


def not_applicable(doc: dict) -> list[list]:
    seen: dict[tuple, list[str]] = {}
    out = [["model", "norm", "batch sizes", "why"]]
    for r in doc["rows"]:
        if r["status"] != "trained":
            seen.setdefault((r["model"], r["norm"], r["why"]), []).append(str(r["batch"]))
    for (model, norm, why), batches in seen.items():
        out.append([model, f"`{norm}`", ", ".join(batches), why])
    return out


def figure(doc: dict):
    """Mean test accuracy (%) against batch size (log scale), one panel per model and family of
    norms, BN in every panel (black, dashed) as the reference; 95% t intervals as bars."""
    s = doc["setting"]
    models = s["models"]
    fig, axes = figures.new_figure(len(FAMILIES), len(models), (4.6 * len(models), 4.0 * len(FAMILIES)))
    trained = [r for r in doc["rows"] if r["status"] == "trained"]
    lo = min((r["mean_acc"] for r in trained if math.isfinite(r["mean_acc"])), default=0.0)
    bottom = max(0.0, math.floor(lo / 5) * 5 - 5)
    for j, model in enumerate(models):
        cells = _by(doc["rows"], model)
        for i, (family, norms) in enumerate(FAMILIES):
            ax = axes[i * len(models) + j]
            shown = [n for n in s["norms"] if n in norms and n != doc["baseline"]]
            for k, norm in enumerate([doc["baseline"], *shown]):
                pts = [(b, cells[(norm, b)]) for b in s["batches"] if cells[(norm, b)]["status"] == "trained"]
                if not pts:
                    continue
                st = {"color": "#000000", "marker": "o", "linestyle": "--"} if norm == doc["baseline"] else \
                    line_style(k - 1)
                xs = [b for b, _ in pts]
                ys = [r["mean_acc"] for _, r in pts]
                err = [_half(r) for _, r in pts]
                ax.errorbar(xs, ys, yerr=err, lw=1.6, ms=5, capsize=2, label=norm, **st)
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(s["batches"]))
            ax.set_xticklabels([str(b) for b in s["batches"]])
            ax.set_ylim(bottom, 100)
            ax.axhline(100 * 0.1, color="#555555", ls=":", lw=1.0)
            ax.grid(alpha=0.3)
            ax.set_xlabel("batch size (log scale)")
            ax.set_ylabel("test accuracy (%)")
            missing = [n for n in shown if all(cells[(n, b)]["status"] != "trained" for b in s["batches"])]
            ax.set_title(f"{model}: {family}" + (f"\n(cannot be built here: {', '.join(missing)})" if missing else ""),
                         fontsize=10)
            # below the panel, off the data: a phone shows it at the same width as the axes
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, frameon=False)
    fig.suptitle(f"Test accuracy against batch size, each norm at its own tuned lr\n(mean of "
                 f"{len(s['confirm_seeds'])} seeds, 95% t intervals; y-axis from {bottom:.0f}%; dotted: chance)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the two-line title
    return fig


def line_style(i: int) -> dict:
    """The i-th norm's colour, marker and line style: the Okabe-Ito palette without its black,
    which is BN's (the reference line in every panel)."""
    colours = [c for c in figures.PALETTE if c != "#000000"]
    return {"color": colours[i % len(colours)], "marker": figures.MARKERS[i % len(figures.MARKERS)],
            "linestyle": figures.LINESTYLES[i % len(figures.LINESTYLES)]}


def _half(r: dict) -> float:
    """Half-width of the 95% t interval of the mean accuracy (0 for one seed)."""

    vals = r.get("per_seed") or []
    if len(vals) < 2 or not math.isfinite(r["sd_acc"]):
        return 0.0
    m, low, _ = t_interval(vals)
    return float(m - low)


def title(doc: dict) -> str:
    return "Norm leaderboard" + (" (--quick)" if doc["quick"] else "")


def blocks(doc: dict, figs: dict) -> list[tuple]:
    s = doc["setting"]
    trained = [r for r in doc["rows"] if r["status"] == "trained"]
    family = next((r["family"] for r in trained if r.get("family")), 0)
    tutorials = ", ".join(n for n in s["norms"] if n in TUT)
    out: list[tuple] = [("p", f"Every norm of normlab ({len(s['norms'])}: the tutorials' {tutorials}"
                 f" and the ones after them) in {len(s['models'])} zoo models ({', '.join(s['models'])}, on digits) at "
                 f"batch sizes {', '.join(map(str, s['batches']))}, each arm with its own learning rate (DeepOBS's "
                 f"protocol): Adam with linear decay, the rate tuned on the grid {', '.join(f'{x:g}' for x in s['lrs'])} "
                 f"with tuning seeds {', '.join(map(str, s['tune_seeds']))} (the same budget for every arm) on the final "
                 f"accuracy on a validation split ({100 * doc['val_split']:.0f}% of digits' 1,438 training images, "
                 f"stratified and seeded, held out of training in every run), "
                 f"then trained again at that rate on confirmation seeds {', '.join(map(str, s['confirm_seeds']))}, "
                 f"disjoint from the tuning seeds; the page reports only the confirmation runs' final test accuracy. "
                 f"Epochs: " + ", ".join(f"{m} {e}" for m, e in s["epochs"].items()) + "."),
           ("p", f"Against `{doc['baseline']}` in the same model and batch size, paired by seed: the mean difference "
                 f"in accuracy points with its 95% paired t interval, p Holm-adjusted over all {family} comparisons of "
                 f"this page (analysis/paired.py), 'higher'/'lower' when p (Holm) < 0.05, and the share of seeds the "
                 f"norm won. These are small models on 8x8 digits for a few epochs: the board ranks norms here, not in "
                 f"general. Images/s: {speed_text(doc)}")]
    for model in s["models"]:
        out += [("h2", f"{model}: test accuracy (%) by batch size"), ("table", headline(doc, model)),
                ("note", "n/a: the norm cannot be built or trained in this model (see below); = bn: the same "
                         "computation as bn at that batch size, not trained again.")]
    if FIGURE in figs:
        out.append(("figure", figs[FIGURE]))
    for model in s["models"]:
        out += [("h2", f"{model}: each norm against {doc['baseline']}"), ("table", detail(doc, model))]
    na = not_applicable(doc)
    if len(na) > 1:
        out += [("h2", "Not on the board, and why"), ("table", na)]
    if doc.get("left_out"):
        out.append(("note", "Norm kinds left out: " + "; ".join(f"`{k}`: {v}" for k, v in doc["left_out"].items())
                    + "."))
    fails = [f"{r['model']} batch {r['batch']} `{r['norm']}` {f}" for r in trained for f in r.get("failed") or []]
    if fails:
        out.append(("note", "Confirmation runs that failed (counted at chance): " + "; ".join(fails) + "."))
    out += [("h2", "Base configuration"),
            ("code", render.yaml_text({m: {**cfg, "optimizer": "adam", "schedule": "linear",
                                           "val_split": doc["val_split"], "epochs": s["epochs"][m]}
                                       for m, cfg in doc["models"].items()})),
            ("note", f"Data: [leaderboard.csv](leaderboard.csv) (one row per arm: every number of this page), "
                     f"[leaderboard.json](leaderboard.json) (also each arm's validation accuracies on the lr grid and "
                     f"per-seed test accuracies), [provenance.json](provenance.json). {doc['trained_now']} runs trained "
                     f"by this command, {doc['resumed']} already finished; {doc['train_seconds_total']:,.0f} s of "
                     f"training in all."),
            ("foot", doc["provenance"])]
    return out


TUT = ("bn", "gn", "ln", "ln-chw", "in", "in-affine", "none")


def write(out: Path, doc: dict) -> None:
    out = Path(out)
    atomic_write_text(out / "leaderboard.csv", csv_text(doc["rows"]))
    atomic_write_text(out / "leaderboard.json", json.dumps(_finite(doc), indent=2, default=_plain) + "\n")
    atomic_write_text(out / "provenance.json", json.dumps(doc["provenance_info"], indent=2) + "\n")
    png = figures.save(figure(doc), out / FIGURE, layout=False)  # laid out around its title already
    figs = {FIGURE: render.Figure(png, FIGURE, "test accuracy against batch size per norm",
                                  "Mean test accuracy (%) of the confirmation runs against batch size (log scale), "
                                  "with 95% t intervals; one row of panels per family of norms, one column per "
                                  "model, BN (black, dashed) in every panel; dotted: chance.")}
    b = blocks(doc, figs)
    atomic_write_text(out / "leaderboard.md", render.markdown(title(doc), b))
    atomic_write_text(out / "leaderboard.html", render.html_page(title(doc), b))


def _finite(x):
    """NaN and infinities as null: the JSON standard has no NaN (an arm without a number)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _plain(x):
    if isinstance(x, tuple):
        return list(x)
    return str(x)


def render_markdown(doc: dict) -> str:
    return render.markdown(title(doc), blocks(doc, {}))
