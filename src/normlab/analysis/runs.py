"""Run folders: list them (`normlab runs DIR`) and compare a few side by side (`normlab report RUN...`).

A run folder is any directory holding a config.json written by `normlab train` (a sweep's runs
included). Its status:
  finished     summary.json exists
  failed       failed.json exists (a sweep records a run that raised, e.g. a diverged loss)
  interrupted  neither: killed, stopped with Ctrl-C, or still training
  damaged      config.json or summary.json is not a JSON object (a list, null, garbled) or
               metrics.csv is garbled: listed with its `problem`, and the listing goes on
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Optional, Sequence

from ..data.inputs import Inputs
from ..errors import ConfigError, NormlabError, unknown_name
from ..fileio import atomic_write_text
from ..rundir import RunDir
from . import figures, render
from .render import Cell, Link, num

COLUMNS = ("path", "model", "dataset", "norm", "epochs", "final_test_acc", "best_test_acc", "seconds", "date",
           "status")


def find_runs(root) -> list[Path]:
    """Every run folder under `root` (or `root` itself), sorted by path; a run's own subfolders
    are not searched."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{str(root)!r} is not a directory; give a folder that holds run folders (e.g. runs)")
    found = []
    for here, dirs, files in os.walk(root):
        if "config.json" in files:
            found.append(Path(here))
            dirs[:] = []
        else:
            dirs.sort()
    return sorted(found)


def _json(p: Path) -> dict:
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def _read_object(p: Path) -> tuple[dict, Optional[str]]:
    """A run file that must hold a JSON object: (its content, None), or ({}, what is wrong with
    it). A missing file is no problem here (the status says what it means)."""
    import stat

    try:
        if not stat.S_ISREG(p.stat().st_mode):
            return {}, f"{p.name} is not a regular file"
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        return {}, f"{p.name} is unreadable ({' '.join(str(exc).split())})"
    if not isinstance(d, dict):
        kind = {list: "a list", type(None): "null", str: "a string", bool: "a boolean"}.get(type(d), "a number")
        return {}, f"{p.name} holds {kind}, not a JSON object"
    return d, None


def describe(run: Path, root: Optional[Path] = None) -> dict:
    """One row of `normlab runs`: what the run is, how far it got and when. A run whose files are
    damaged (wrong-shaped JSON, a garbled metrics.csv) is a row with status "damaged" and its
    `problem`, never an error that stops the listing."""
    run = Path(run)
    path = str(run.relative_to(root)) if root and run != root else str(run)
    problems = []
    cfg, bad = _read_object(run / "config.json")
    problems += [bad] if bad else []
    summary, bad = _read_object(run / "summary.json")
    problems += [bad] if bad else []
    try:
        metrics = RunDir(run).read_metrics() if (run / "metrics.csv").is_file() else []
    except NormlabError:
        metrics = []
        problems.append("metrics.csv is damaged")
    try:
        stamp = max((p.stat().st_mtime for p in run.iterdir() if p.is_file()), default=run.stat().st_mtime)
    except OSError:
        stamp = 0.0
    if problems:
        status = "damaged"
    else:
        status = "finished" if summary else "failed" if (run / "failed.json").is_file() else "interrupted"
    accs = [r["test_acc"] for r in metrics if _number(r.get("test_acc"))]
    done = summary.get("epochs", metrics[-1].get("epoch") if metrics else 0)
    final = summary.get("final_test_acc", accs[-1] if accs else None)
    best = summary.get("best_test_acc", max(accs) if accs else None)
    secs = summary.get("wall_seconds", metrics[-1].get("elapsed_seconds") if metrics else None)
    row = {
        "path": path,
        "model": cfg.get("model"), "dataset": cfg.get("dataset"), "norm": cfg.get("norm"),
        "epochs": f"{done}/{cfg.get('epochs', '?')}",
        # numbers only: a damaged summary's strings would break the table's formatting
        "final_test_acc": final if _number(final) else None,
        "best_test_acc": best if _number(best) else None,
        "seconds": secs if _number(secs) else None,
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(stamp)),
        "status": status,
    }
    if problems:
        row["problem"] = "; ".join(problems)
    return row


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _sort_key(column: str):
    """Values of any type sort without a TypeError: numbers (by value), then text, then anything
    else (by its JSON text); `epochs` by the epochs done."""
    def key(row):
        v = row[column]
        if column == "epochs":
            head = str(v).split("/")[0]
            v = int(head) if head.lstrip("-").isdigit() else head
        if _number(v):
            return (0, float(v), "")
        if isinstance(v, str):
            return (1, 0.0, v)
        return (2, 0.0, json.dumps(v, sort_keys=True, default=str))

    return key


def list_runs(root, sort: str = "path", reverse: bool = False) -> list[dict]:
    if sort not in COLUMNS:
        raise unknown_name("sort column", sort, COLUMNS)
    root = Path(root)
    rows = [describe(r, root) for r in find_runs(root)]
    # Missing values (an interrupted run has no accuracy yet) sort last either way.
    present = [r for r in rows if r[sort] is not None]
    absent = [r for r in rows if r[sort] is None]
    return sorted(present, key=_sort_key(sort), reverse=reverse) + absent


def _pct(v) -> str:
    return "–" if not isinstance(v, (int, float)) or not math.isfinite(v) else f"{100 * v:.2f}"


def _shown(v) -> str:
    """A value as one printable cell: a newline or a terminal escape from a run's files is shown
    escaped, so it can neither break the table's rows nor drive the terminal."""
    text = str(v)
    return text if text.isprintable() else "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def text_table(rows: Sequence[dict]) -> str:
    head = ("path", "model", "dataset", "norm", "epochs", "final %", "best %", "seconds", "date (UTC)", "status")
    body = [tuple(map(_shown, (r["path"], r["model"], r["dataset"], r["norm"], r["epochs"])))
            + (_pct(r["final_test_acc"]), _pct(r["best_test_acc"]), num(r["seconds"], 1), r["date"], r["status"])
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    right = {4, 5, 6, 7}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    notes = [f"{_shown(r['path'])}: damaged ({_shown(r['problem'])})" for r in rows if r.get("problem")]
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body] + notes)


# ---------------------------------------------------------------- side by side
def _differing(configs: list[dict]) -> list[str]:
    keys = [k for k in configs[0] if k not in ("out", "progress")]
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]


def compare_runs(run_dirs: Sequence, out) -> dict:
    """A report of a few run folders side by side: a table of their results, the options in
    which their configs differ, learning curves in one figure. Writes OUT/report.md,
    OUT/report.html, OUT/runs.csv and OUT/curves.png/.svg."""
    runs = [Path(r) for r in run_dirs]
    for r in runs:
        if not (r / "config.json").is_file():
            raise ConfigError(f"{str(r)!r} is not a run folder (no config.json); `normlab runs DIR` lists the run "
                              f"folders under DIR")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    rows = [describe(r) for r in runs]
    labels = [f"{i + 1}: {r.name}" for i, r in enumerate(runs)]
    configs = [_json(r / "config.json") for r in runs]
    differ = _differing(configs)

    def href(r: Path, name: str = "") -> str:
        rel = os.path.relpath(r / name if name else r, out).replace(os.sep, "/") + ("" if name else "/")
        # "./": a folder named like a scheme ("javascript:x") stays a relative link
        return rel if rel.startswith("../") else "./" + rel

    table: list[list[Cell]] = [["run", "model", "dataset", "norm", "epochs", "final test acc (%)",
                                "best test acc (%)", "seconds", "date (UTC)", "status", "config"]]
    for lab, r, row in zip(labels, runs, rows):
        table.append([Link(lab, href(r)), str(row["model"]), str(row["dataset"]), str(row["norm"]), row["epochs"],
                      _pct(row["final_test_acc"]), _pct(row["best_test_acc"]), num(row["seconds"], 1), row["date"],
                      row["status"], Link("config.json", href(r, "config.json"))])
    diff = [["option", *labels]] + [[k, *(render.yaml_text({k: c.get(k)}).split(": ", 1)[-1] for c in configs)]
                                    for k in differ]
    try:
        classes = Inputs.from_dict(_json(runs[0] / "preprocess.json")).num_classes
    except (ValueError, TypeError):
        classes = None
    groups = [(lab, [RunDir(r).read_metrics()]) for lab, r in zip(labels, runs)]
    fig = figures.learning_curves(groups, "runs side by side", classes)
    png = figures.save(fig, out / "curves.png")
    blocks = [("p", f"{len(runs)} run folders; the table numbers the runs as the figure does."),
              ("h2", "Results"), ("table", table),
              ("h2", "Where the configs differ"),
              ("table", diff) if differ else ("p", "The configs are identical (seeds included)."),
              ("h2", "Learning curves"),
              ("figure", render.Figure(png, "curves.png", "learning curves of the runs",
                                       "One line per run (a single seed each, so no band).")),
              ("foot", render.provenance())]
    atomic_write_text(out / "report.md", render.markdown("Runs side by side", blocks))
    atomic_write_text(out / "report.html", render.html_page("Runs side by side", blocks))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row, r in zip(rows, runs):
        w.writerow({**row, "path": str(r)})
    atomic_write_text(out / "runs.csv", buf.getvalue())
    return {"rows": rows, "differ": differ,
            "paths": {"markdown": out / "report.md", "html": out / "report.html", "csv": out / "runs.csv"}}
