"""The report of a sweep: tables, paired differences (analysis/paired.py), learning curves.

`write_report(SWEEP_DIR)` reads experiment.json and the run directories (whichever shards wrote
them), rewrites results.csv, and writes report.md (with its plots as PNG files beside it) and
differences.csv (one row per comparison, the numbers behind the verdicts) and
report.html, a single self-contained file whose plots are embedded as base64 data URIs, so it
opens offline and can be mailed around.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..fileio import atomic_write_bytes, atomic_write_text
from ..rundir import RunDir
from . import paired
from .sweep import Experiment, collect, expand, finite, read_experiment, write_results

# The compared metric in the unit the report shows it in: (unit, factor from the stored value,
# which sign is better).
METRIC_UNITS = {"final_test_acc": ("accuracy points", 100.0, +1), "best_test_acc": ("accuracy points", 100.0, +1),
                "final_train_acc": ("accuracy points", 100.0, +1),
                "final_test_loss": ("cross-entropy (nats)", 1.0, -1),
                "final_train_loss": ("cross-entropy (nats)", 1.0, -1)}


def mean_std(values) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if finite(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def _fmt(m: float, s: Optional[float] = None, digits: int = 4) -> str:
    if not math.isfinite(m):
        return "–"
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def _level(v) -> str:
    return "none" if v is None else str(v)


# ------------------------------------------------------------------ tables
def summarize(exp: Experiment, rows: list[dict]) -> dict:
    """Everything the report shows, as plain data (also handy from Python)."""
    cells = expand(exp)
    base = cells[0]
    by_cell = {c.id: [r for r in rows if r["cell"] == c.id] for c in cells}
    table = []
    for c in cells:
        ok = [r for r in by_cell[c.id] if r["status"] == "ok"]
        entry = {"cell": c.id, "factors": c.factors, "runs": len(ok), "of": len(by_cell[c.id]),
                 "failed": sum(r["status"] == "failed" for r in by_cell[c.id])}
        for k in (exp.metric, "best_test_acc", "final_train_acc", "wall_seconds", "parameters"):
            entry[k] = mean_std(r[k] for r in ok)
        # The generalization gap per run, then averaged: what regularization is meant to shrink.
        entry["gap"] = mean_std(r["final_train_acc"] - r["final_test_acc"] for r in ok
                                if finite(r["final_train_acc"]) and finite(r["final_test_acc"]))
        table.append(entry)
    unit, scale, better = METRIC_UNITS[exp.metric]
    base_by_seed = {r["seed"]: r[exp.metric] for r in by_cell[base.id] if r["status"] == "ok" and finite(r[exp.metric])}
    pairs = []
    for c in cells[1:]:
        arm = {r["seed"]: r[exp.metric] for r in by_cell[c.id] if r["status"] == "ok" and finite(r[exp.metric])}
        seeds = sorted(set(arm) & set(base_by_seed))
        pairs.append((c.id, seeds, [base_by_seed[s] for s in seeds], [arm[s] for s in seeds]))
    # One Holm family: every comparison of this report.
    done = paired.decide([paired.compare(b, a, better=better) for _, seeds, b, a in pairs if seeds])
    done_iter = iter(done)
    diffs = [{"cell": cid, "pairs": len(seeds), "unit": unit, "scale": scale,
              "comparison": next(done_iter) if seeds else None} for cid, seeds, _, _ in pairs]
    missing = sum(r["status"] == "missing" for r in rows)
    return {"experiment": exp, "baseline": base.id, "table": table, "diffs": diffs, "missing": missing,
            "failed": [(r["cell"], r["seed"], r["error"]) for r in rows if r["status"] == "failed"]}


def on_off_matrix(exp: Experiment) -> list[list[str]]:
    """Header + one row per cell: for each factor, its level where it differs from the baseline
    ("on"), a dot where the cell keeps the baseline level."""
    rows = [["cell", *exp.factors]]
    for c in expand(exp):
        rows.append([c.id] + [_level(v) if v != exp.factors[k][0] else "·" for k, v in c.levels])
    return rows


# ------------------------------------------------------------------ plots
def curves_png(exp: Experiment, rows: list[dict], out: Path, factor: str) -> bytes:
    """Test accuracy and train loss per epoch, one line per level of `factor` (mean over every
    finished run at that level, the other factors and the seeds pooled)."""
    from ..plots import new_figure

    fig, (a1, a2) = new_figure(1, 2, (10, 3.8))
    for level in exp.factors[factor]:
        runs = [r for r in rows if r["status"] == "ok" and r.get(factor) == level]
        curves = [RunDir(out / r["run_dir"]).read_metrics() for r in runs]
        curves = [c for c in curves if c]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        ep = np.arange(1, n + 1)
        for ax, key in ((a1, "test_acc"), (a2, "train_loss")):
            m = np.array([[row[key] for row in c[:n]] for c in curves], dtype=np.float64)
            mu = m.mean(0)
            line, = ax.plot(ep, mu, "o-", ms=3, label=f"{factor}={_level(level)} ({len(curves)} runs)")
            if len(curves) > 1:
                sd = m.std(0, ddof=1)
                ax.fill_between(ep, mu - sd, mu + sd, color=line.get_color(), alpha=0.15)
    a1.set_title("test accuracy (mean ± std)"), a1.set_xlabel("epoch")
    a2.set_title("train loss (mean ± std)"), a2.set_xlabel("epoch")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    fig.suptitle(f"{exp.name}: by {factor}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


# ------------------------------------------------------------------ writers
def _sections(s: dict) -> list[tuple[str, list[list[str]], str]]:
    """(title, table rows with a header row, note) for both output formats."""
    exp = s["experiment"]
    m = exp.metric
    t1 = [["cell", *exp.factors, "runs", m, "best_test_acc", "final_train_acc", "train-test gap", "seconds",
           "parameters"]]
    for e in s["table"]:
        t1.append([e["cell"], *(_level(v) for v in e["factors"].values()), f"{e['runs']}/{e['of']}",
                   _fmt(*e[m][:2]), _fmt(*e["best_test_acc"][:2]), _fmt(*e["final_train_acc"][:2]),
                   _fmt(*e["gap"][:2]),
                   _fmt(*e["wall_seconds"][:2], digits=1), _fmt(e["parameters"][0], digits=0)])
    t2 = [diff_header(s)] + [diff_cells(d) for d in s["diffs"]]
    note2 = diff_note(s)
    return [("Results per cell (mean ± std over seeds)", t1, ""),
            ("Difference to the baseline", t2, note2),
            ("Factor on/off matrix (· = baseline level)", on_off_matrix(exp), "")]


def diff_header(s: dict) -> list[str]:
    unit = METRIC_UNITS[s["experiment"].metric][0]
    return ["cell", "n", f"Δ {s['experiment'].metric} ({unit})", f"{paired.LEVEL:.0%} interval", "p", "p (Holm)",
            "arm better in", "verdict"]


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def verdict_text(c: paired.Comparison) -> str:
    if c.verdict == paired.INCONCLUSIVE and c.seeds_needed:
        return f"inconclusive (~{c.seeds_needed:,} seeds for this size)"
    if c.verdict == paired.INCONCLUSIVE:
        return "inconclusive"
    if c.verdict == paired.TOO_FEW:
        return f"no verdict (n < {paired.MIN_N})"
    return c.verdict


def diff_cells(d: dict) -> list[str]:
    c, k = d["comparison"], d["scale"]
    if c is None:
        return [d["cell"], "0", "–", "–", "–", "–", "–", "no paired seeds"]
    interval = "–" if not math.isfinite(c.low) else f"[{c.low * k:+.2f}, {c.high * k:+.2f}]"
    return [d["cell"], str(c.n), f"{c.mean * k:+.2f}", interval, _p(c.p), _p(c.p_holm),
            f"{round(c.prob_better * c.n):g} of {c.n} seeds", verdict_text(c)]


def diff_note(s: dict) -> str:
    return (f"Difference of each cell to the baseline cell `{s['baseline']}` (the first level of every factor), "
            f"paired by seed over the seeds both finished. Interval: {paired.LEVEL:.0%} paired t interval; p: "
            f"two-sided paired t-test; p (Holm): adjusted with Holm-Bonferroni over the {len(s['diffs'])} "
            f"comparisons of this report, and the verdict uses it (higher / lower at p (Holm) < "
            f"{paired.ALPHA:g}). Below {paired.MIN_N} paired seeds no verdict is given. For an inconclusive "
            f"difference, the seeds a paired t-test would need to detect one of the observed size (power "
            f"{paired.POWER:g}) is a rough guide. Every number is in differences.csv.")


def differences_rows(s: dict) -> list[dict]:
    exp = s["experiment"]
    return [paired.difference_row(d["cell"], s["baseline"], exp.metric, d["unit"], d["comparison"], d["scale"])
            for d in s["diffs"] if d["comparison"] is not None]


def _md_table(rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    out = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(esc[0])]
    out += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(out)


def _header_lines(s: dict) -> list[str]:
    exp = s["experiment"]
    lines = [f"Base config: `{exp.base}`; factors: {', '.join(f'`{k}` {v}' for k, v in exp.factors.items())}; "
             f"seeds {exp.seeds}; compared metric: `{exp.metric}`."]
    if s["missing"]:
        lines.append(f"**Incomplete: {s['missing']} runs have not finished** (rerun `normlab compare` on this "
                     f"folder, or wait for the other shards).")
    for cell, seed, err in s["failed"]:
        lines.append(f"Run {cell} seed {seed} failed: {err.splitlines()[-1] if err else 'unknown error'}")
    return lines


def render_markdown(s: dict, images: dict) -> str:
    exp = s["experiment"]
    parts = [f"# {exp.name}", ""]
    if exp.description:
        parts += [exp.description, ""]
    parts += [line + "\n" for line in _header_lines(s)]
    for title, rows, note in _sections(s):
        parts += [f"## {title}", "", _md_table(rows), ""]
        if note:
            parts += [note, ""]
    if images:
        parts += ["## Learning curves", ""]
        parts += [f"![{html.escape(f)}]({name})\n" for f, name in images.items()]
    return "\n".join(parts)


def _inline(text: str) -> str:
    """The little Markdown the header lines use (`code`, **bold**), as escaped HTML."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]*)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]*)\*\*", r"<strong>\1</strong>", out)


def render_html(s: dict, pngs: dict) -> str:
    exp = s["experiment"]
    e = html.escape
    body = [f"<h1>{e(exp.name)}</h1>"]
    if exp.description:
        body.append(f"<p>{e(exp.description)}</p>")
    body += [f"<p>{_inline(line)}</p>" for line in _header_lines(s)]
    for title, rows, note in _sections(s):
        body.append(f"<h2>{e(title)}</h2>\n<table>\n<thead><tr>" +
                    "".join(f"<th>{e(c)}</th>" for c in rows[0]) + "</tr></thead>\n<tbody>")
        body += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows[1:]]
        body.append("</tbody>\n</table>")
        if note:
            body.append(f"<p class=\"note\">{e(note)}</p>")
    if pngs:
        body.append("<h2>Learning curves</h2>")
        for factor, png in pngs.items():
            data = base64.b64encode(png).decode("ascii")
            body.append(f"<figure><img alt=\"learning curves by {e(factor)}\" src=\"data:image/png;base64,{data}\">"
                        f"<figcaption>by {e(factor)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}.note{color:#555}"
             "img{max-width:100%}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{e(exp.name)}: normlab report</title>\n<style>{style}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_report(out) -> dict:
    """Write results.csv, differences.csv, report.md (+ curves-*.png) and report.html into SWEEP_DIR; return
    the summary and the paths written."""
    out = Path(out)
    exp = read_experiment(out)
    write_results(out)
    rows = collect(out)
    s = summarize(exp, rows)
    pngs, files = {}, {}
    if any(r["status"] == "ok" for r in rows):
        for factor, levels in exp.factors.items():
            if len(levels) > 1:
                pngs[factor] = curves_png(exp, rows, out, factor)
                name = f"curves-{factor}.png"
                atomic_write_bytes(out / name, pngs[factor])
                files[factor] = name
    atomic_write_text(out / "differences.csv", paired.differences_csv(differences_rows(s)))
    atomic_write_text(out / "report.md", render_markdown(s, files))
    atomic_write_text(out / "report.html", render_html(s, pngs))
    s["paths"] = {"results": out / "results.csv", "differences": out / "differences.csv", "markdown": out / "report.md", "html": out / "report.html"}
    return s
