"""The report of a sweep: tables, paired differences (analysis/paired.py), learning curves.

`write_report(SWEEP_DIR)` reads experiment.json and the run directories (whichever shards wrote
them) and writes, into SWEEP_DIR:
  results.csv        one row per run of the grid
  differences.csv    one row per comparison with the baseline: the numbers behind the verdicts
  train_eval.json    each run's clean train accuracy (eval mode, training split), computed once
  configs/CELL.yaml  each cell's resolved config (what its runs' config.json hold, seed aside)
  curves-F.png/.svg  learning curves by factor F
  report.md          the report in Markdown, the figures beside it
  report.html        the same as one self-contained page (figures embedded), readable on a phone
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..api import evaluate_run
from ..data.inputs import Inputs
from ..errors import CheckpointError
from ..fileio import atomic_write_text
from ..grid import Experiment, expand
from ..rundir import RunDir
from . import figures, paired, render
from .render import Cell, Link, mean_sd, num
from .results import collect, finite, read_experiment, write_results

# The compared metric in the unit the report shows it in: (unit, factor from the stored value,
# which sign is better).
METRIC_UNITS = {"final_test_acc": ("accuracy points", 100.0, +1), "best_test_acc": ("accuracy points", 100.0, +1),
                "final_train_acc": ("accuracy points", 100.0, +1),
                "final_test_loss": ("cross-entropy (nats)", 1.0, -1),
                "final_train_loss": ("cross-entropy (nats)", 1.0, -1)}


def mean_std(values, scale: float = 1.0) -> tuple[float, float, int]:
    v = np.asarray([x * scale for x in values if finite(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def _level(v) -> str:
    return "none" if v is None else str(v)


# ------------------------------------------------------------------ numbers
def clean_train_scores(out: Path, rows: list[dict]) -> dict:
    """run_dir -> accuracy of its final weights on its own training split, in eval mode without
    augmentation (api.evaluate_run(split="train")). The trainer's train_acc is a running average
    in train mode, with dropout active, so a "gap" from it can come out negative; this one is a
    clean measurement. Cached in SWEEP_DIR/train_eval.json, keyed by the run's summary.json time."""

    cache_path = out / "train_eval.json"
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    scores, changed = {}, False
    for r in rows:
        summary = out / r["run_dir"] / "summary.json"
        if r["status"] != "ok" or not (out / r["run_dir"] / "weights.safetensors").is_file():
            continue
        stamp = summary.stat().st_mtime
        hit = cache.get(r["run_dir"])
        if not hit or hit.get("summary_mtime") != stamp:
            res = evaluate_run(out / r["run_dir"], split="train")
            hit = {"summary_mtime": stamp, "train_acc": res["train_acc"], "train_loss": res["train_loss"]}
            cache[r["run_dir"]], changed = hit, True
        scores[r["run_dir"]] = hit["train_acc"]
    if changed:
        atomic_write_text(cache_path, json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return scores


def summarize(exp: Experiment, rows: list[dict], clean: Optional[dict] = None) -> dict:
    """Everything the report shows, as plain data (also handy from Python). Accuracies are in %,
    the gap in accuracy points; `clean` (run_dir -> clean train accuracy, clean_train_scores)
    gives the eval-mode train accuracy and the gap."""
    clean = clean or {}
    cells = expand(exp)
    base = cells[0]
    by_cell = {c.id: [r for r in rows if r["cell"] == c.id] for c in cells}
    unit, scale, better = METRIC_UNITS[exp.metric]
    table = []
    for c in cells:
        ok = [r for r in by_cell[c.id] if r["status"] == "ok"]
        entry = {"cell": c.id, "factors": c.factors, "runs": len(ok), "of": len(by_cell[c.id]),
                 "failed": sum(r["status"] in ("failed", "damaged") for r in by_cell[c.id])}
        entry[exp.metric] = mean_std((r[exp.metric] for r in ok), scale)
        for k in ("best_test_acc", "final_test_acc", "final_train_acc"):
            entry[k] = mean_std((r[k] for r in ok), 100.0)
        for k in ("wall_seconds", "parameters"):
            entry[k] = mean_std(r[k] for r in ok)
        entry["train_eval_acc"] = mean_std((clean.get(r["run_dir"]) for r in ok), 100.0)
        # The generalization gap per run, then averaged: what regularization is meant to shrink.
        # From the clean train accuracy: the running one is lowered by dropout and lags the weights.
        entry["gap"] = mean_std((clean[r["run_dir"]] - r["final_test_acc"] for r in ok
                                 if r["run_dir"] in clean and finite(r["final_test_acc"])), 100.0)
        table.append(entry)
    base_by_seed = {r["seed"]: r[exp.metric] for r in by_cell[base.id] if r["status"] == "ok" and finite(r[exp.metric])}
    pairs = []
    for c in cells[1:]:
        arm = {r["seed"]: r[exp.metric] for r in by_cell[c.id] if r["status"] == "ok" and finite(r[exp.metric])}
        seeds = sorted(set(arm) & set(base_by_seed))
        pairs.append((c.id, seeds, [base_by_seed[s] for s in seeds], [arm[s] for s in seeds]))
    # One Holm family: every comparison of this report.
    done = iter(paired.decide([paired.compare(b, a, better=better) for _, seeds, b, a in pairs if seeds]))
    diffs = [{"cell": cid, "pairs": len(seeds), "unit": unit, "scale": scale,
              "ties": sum(x == y for x, y in zip(b, a)),  # counted apart: never "0.5 of 3 seeds"
              "comparison": next(done) if seeds else None} for cid, seeds, b, a in pairs]
    missing = sum(r["status"] == "missing" for r in rows)
    return {"experiment": exp, "baseline": base.id, "table": table, "diffs": diffs, "missing": missing,
            "rows": rows, "failed": [(r["cell"], r["seed"], r["error"]) for r in rows
                                     if r["status"] in ("failed", "damaged")],
            # stopped by the machine (disk full, out of memory, killed): not results, named apart
            "machine": [(r["cell"], r["seed"], r["error"]) for r in rows if r["status"] == "machine"]}


def differences_rows(s: dict) -> list[dict]:
    exp = s["experiment"]
    return [paired.difference_row(d["cell"], s["baseline"], exp.metric, d["unit"], d["comparison"], d["scale"])
            for d in s["diffs"] if d["comparison"] is not None]


# ------------------------------------------------------------------ tables
def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def verdict_text(c: paired.Comparison) -> str:
    if c.verdict == paired.INCONCLUSIVE and c.seeds_needed:
        return f"inconclusive (about {c.seeds_needed:,} seeds in all for this size)"
    if c.verdict == paired.INCONCLUSIVE:
        return "inconclusive"
    if c.verdict == paired.TOO_FEW:
        return f"no verdict (n < {paired.MIN_N})"
    return c.verdict


def diff_table(s: dict) -> list[list]:
    unit = METRIC_UNITS[s["experiment"].metric][0]
    rows = [["cell", "n", f"Δ {s['experiment'].metric} ({unit})", f"{paired.LEVEL:.0%} interval", "p",
             "p (Holm)", "cell better in", "verdict"]]
    for d in s["diffs"]:
        c, k = d["comparison"], d["scale"]
        if c is None:
            rows.append([d["cell"], "0", "–", "–", "–", "–", "–", "no paired seeds"])
            continue
        interval = "–" if not math.isfinite(c.low) else f"[{num(c.low * k, 2, sign=True)}, {num(c.high * k, 2, sign=True)}]"
        rows.append([d["cell"], str(c.n), num(c.mean * k, 2, sign=True), interval, _p(c.p), _p(c.p_holm),
                     better_in(c, d.get("ties", 0)), verdict_text(c)])
    return rows


def better_in(c: paired.Comparison, ties: int) -> str:
    """"2 of 3 seeds, tied in 1": prob_better counts a tie as half a seed, the page counts it apart."""
    wins = round(c.prob_better * c.n - ties / 2)
    return f"{wins} of {c.n} seeds" + (f", tied in {ties}" if ties else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def diff_note(s: dict) -> str:
    family = sum(d["comparison"] is not None for d in s["diffs"])
    return (f"Difference of each cell to the baseline cell `{s['baseline']}` (the first level of every factor), "
            f"paired by seed over the seeds both finished. Interval: {paired.LEVEL:.0%} paired t interval (it covers "
            f"the true difference {paired.COVERAGE}); p: "
            f"two-sided paired t-test; p (Holm): adjusted with Holm-Bonferroni over the {_plural(family, 'comparison')} "
            f"of this report, and the verdict "
            f"uses it (higher / lower at p (Holm) < {paired.ALPHA:g}). Below {paired.MIN_N} paired seeds no verdict "
            f"is given. For an inconclusive difference, the seeds in all (not more) a paired t-test would need to "
            f"detect one of the "
            f"observed size (power {paired.POWER:g}) is a rough guide. Every number is in "
            f"[differences.csv](differences.csv); what wrote it (git commit, versions, machine, date) is in "
            f"[provenance.json](provenance.json) and at the foot of the page.")


def cell_table(s: dict) -> list[list]:
    exp = s["experiment"]
    m = exp.metric
    unit = METRIC_UNITS[m][0]
    extra = [] if m in ("final_test_acc", "best_test_acc") else [f"{m} ({unit})"]
    rows: list[list[Cell]] = [["cell", *exp.factors, "runs", "final test acc (%)", "best test acc (%)",
                               "train acc, eval mode (%)", "train − test (points)", "train acc, running (%)", *extra,
                               "seconds", "parameters"]]

    def ms(e: dict, key: str, digits: int) -> str:  # the cell's (mean, sd) of `key`
        return mean_sd(e[key][0], e[key][1], digits=digits)

    for e in s["table"]:
        rows.append([Link(e["cell"], f"configs/{e['cell']}.yaml"), *(_level(v) for v in e["factors"].values()),
                     f"{e['runs']}/{e['of']}", ms(e, "final_test_acc", 2), ms(e, "best_test_acc", 2),
                     ms(e, "train_eval_acc", 2), ms(e, "gap", 2), ms(e, "final_train_acc", 2),
                     *[ms(e, m, 4) for _ in extra], ms(e, "wall_seconds", 1),
                     num(int(e["parameters"][0])) if finite(e["parameters"][0]) else "–"])
    return rows


def runs_table(s: dict) -> list[list]:
    exp = s["experiment"]
    scale = METRIC_UNITS[exp.metric][1]
    rows: list[list[Cell]] = [["cell", "seed", "status", f"{exp.metric}" + (" (%)" if scale == 100 else ""),
                               "run folder", "config"]]
    for r in s["rows"]:
        v = r[exp.metric]
        rows.append([r["cell"], str(r["seed"]), r["status"],
                     num(v * scale, 2 if scale == 100 else 4) if finite(v) else "–",
                     Link(r["run_dir"] + "/", r["run_dir"] + "/"), Link("config.json", r["run_dir"] + "/config.json")])
    return rows


def on_off_matrix(exp: Experiment) -> list[list[str]]:
    """Header + one row per cell: for each factor, its level where it differs from the baseline
    ("on"), a dot where the cell keeps the baseline level."""
    rows = [["cell", *exp.factors]]
    for c in expand(exp):
        rows.append([c.id] + [_level(v) if v != exp.factors[k][0] else "·" for k, v in c.levels])
    return rows


# ------------------------------------------------------------------ provenance
PROVENANCE = "provenance.json"  # beside differences.csv: git commit, versions, machine, date


def trained_with(out: Path, rows: list[dict]) -> str:
    """Where and with what the runs were trained, from their summary.json files."""
    devices, torches, times = set(), set(), []
    for r in rows:
        p = out / r["run_dir"] / "summary.json"
        if r["status"] == "ok" and p.is_file():
            sm = json.loads(p.read_text(encoding="utf-8"))
            devices.add(str(sm.get("device", "?")))
            torches.add(str((sm.get("versions") or {}).get("torch", "?")))
            times.append(p.stat().st_mtime)
    if not times:
        return "No run has finished."
    day = lambda t: time.strftime("%Y-%m-%d", time.gmtime(t))  # noqa: E731
    span = day(min(times)) if day(min(times)) == day(max(times)) else f"{day(min(times))} to {day(max(times))}"
    return (f"Runs trained on {', '.join(sorted(devices))} with torch {', '.join(sorted(torches))}, finished "
            f"{span}.")


# ------------------------------------------------------------------ figures
def curves_figures(exp: Experiment, rows: list[dict], out: Path) -> list[render.Figure]:
    """Per factor with more than one level: test accuracy and train loss per epoch, one line per
    level (every finished run at that level, the other factors and the seeds pooled)."""
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return []
    classes = _classes(out / ok[0]["run_dir"])
    figs = []
    for factor, levels in exp.factors.items():
        if len(levels) < 2:
            continue
        groups = [(f"{factor}={_level(level)}", [m for r in ok if r.get(factor) == level
                                                  if (m := _metrics_or_none(out / r["run_dir"]))])
                  for level in levels]
        fig = figures.learning_curves(groups, f"{exp.name}: by {factor}", classes)
        name = f"curves-{factor}.png"
        png = figures.save(fig, out / name)
        figs.append(render.Figure(png, name, f"learning curves by {factor}",
                                  f"By {factor}: thin lines are single seeds, thick lines the mean, the band ± 1 sd."))
    return figs


def _classes(run_dir: Path):
    p = run_dir / "preprocess.json"
    try:
        return Inputs.from_dict(json.loads(p.read_text(encoding="utf-8"))).num_classes
    except (OSError, ValueError, TypeError):
        return None


# ------------------------------------------------------------------ the page
def header_lines(s: dict) -> list[str]:
    exp = s["experiment"]
    lines = [f"Factors: {'; '.join(f'`{k}` ' + ', '.join(_level(v) for v in vs) for k, vs in exp.factors.items())}. "
             f"Seeds: {', '.join(map(str, exp.seeds))} (every cell runs the same seeds, so the comparisons are "
             f"paired). Compared metric: `{exp.metric}`. The base config is at the end."]
    if s["missing"]:
        lines.append(f"**Incomplete: {s['missing']} runs have not finished** (rerun `normlab compare` on this "
                     f"folder, or wait for the other shards).")
    for cell, seed, err in s["failed"]:
        lines.append(f"Run {cell} seed {seed} failed: {err.splitlines()[-1] if err else 'unknown error'}")
    if s.get("machine"):
        lines.append(f"**Not finished: {len(s['machine'])} runs were stopped by the machine, not by the experiment** "
                     f"(they are not results and count as neither failed nor diverged; rerun `normlab compare` on "
                     f"this folder to train them):")
        lines += [f"Run {cell} seed {seed} stopped by the machine: {err}" for cell, seed, err in s["machine"]]
    return lines


def blocks(s: dict, figs: list, foot: str) -> list[tuple]:
    exp = s["experiment"]
    out = [("p", exp.description)] if exp.description else []
    out += [("p", line) for line in header_lines(s)]
    out += [("h2", "Difference to the baseline"), ("table", diff_table(s)), ("note", diff_note(s)),
            ("h2", "Results per cell (mean ± sd over seeds)"), ("table", cell_table(s)),
            ("note", "Accuracies in %. Train acc, eval mode: the final weights scored on the run's own "
                     "training split in eval mode without augmentation (`normlab eval --split train`); the gap "
                     "is that minus the final test accuracy, per run, then averaged, in accuracy points. Train "
                     "acc, running: what the trainer logs, the average over the last epoch's batches in train "
                     "mode (dropout, if any, active; weights still moving), so it is not comparable with test accuracy. "
                     "Each cell links to its resolved config.")]
    if figs:
        out.append(("h2", "Learning curves"))
        out += [("figure", f) for f in figs]
    out += [("h2", "Runs"), ("table", runs_table(s)),
            ("note", "Run folders are where `normlab compare` wrote them, relative to this report; a committed "
                     "copy of a report carries no run folders (their weights are not versioned)."),
            ("h2", "Factor on/off matrix (· = baseline level)"), ("table", on_off_matrix(exp)),
            ("h2", "Base config"), ("code", render.yaml_text(exp.base)),
            ("foot", foot)]
    return out


def write_cell_configs(exp: Experiment, rows: list[dict], out: Path) -> None:
    """configs/CELL.yaml: the resolved config of the cell's first finished run, its seeds listed."""
    (out / "configs").mkdir(exist_ok=True)
    for c in expand(exp):
        cfg = None
        for r in rows:
            p = out / r["run_dir"] / "config.json"
            if r["cell"] == c.id and p.is_file():
                cfg = json.loads(p.read_text(encoding="utf-8"))
                break
        if cfg is None:  # nothing ran yet: what the experiment asks for
            cfg = {**exp.base, **c.factors}
        cfg.pop("out", None)
        cfg["seed"] = list(exp.seeds)
        atomic_write_text(out / "configs" / f"{c.id}.yaml",
                          f"# cell {c.id} of {exp.name}; one run per seed\n{render.yaml_text(cfg)}\n")


def write_report(out) -> dict:
    """Write everything listed in the module docstring into SWEEP_DIR; return the summary and the
    paths written."""
    out = Path(out)
    exp = read_experiment(out)
    write_results(out)
    rows = collect(out)
    s = summarize(exp, rows, clean_train_scores(out, rows))
    figs = curves_figures(exp, rows, out)
    write_cell_configs(exp, rows, out)
    info = render.provenance_info()
    foot = render.provenance(trained_with(out, rows), info)
    page = blocks(s, figs, foot)
    atomic_write_text(out / "differences.csv", paired.differences_csv(differences_rows(s)))
    atomic_write_text(out / PROVENANCE, json.dumps(info, indent=2) + "\n")  # what wrote differences.csv
    atomic_write_text(out / "report.md", render.markdown(exp.name, page))
    atomic_write_text(out / "report.html", render.html_page(f"{exp.name}: normlab report", page))
    s["paths"] = {"results": out / "results.csv", "differences": out / "differences.csv",
                  "markdown": out / "report.md", "html": out / "report.html"}
    return s


def _metrics_or_none(run_dir: Path):
    """A run's metrics rows, or None where metrics.csv is damaged: its curve is left out."""
    try:
        return RunDir(run_dir).read_metrics()
    except CheckpointError:
        return None
