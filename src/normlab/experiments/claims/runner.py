"""`normlab claims`: train the selected claims' cells with the sweep runner, then measure.

Runs live in OUT/runs/<quick|full>/<experiment>/, each a `normlab compare` sweep folder
(experiment.json, runs/<cell>-s<seed>, results.csv), so
  - a finished run is never trained again: rerunning the command resumes an interrupted one;
  - `--jobs N` trains N runs at a time in worker processes (one pool for every claim's runs);
  - `--shard I/N` trains only the I-th of N slices of the cells; the report is written by the
    run that finds every cell finished (the last shard, or a plain rerun afterwards);
  - `normlab report OUT/runs/full/<experiment>` gives the usual sweep report of one experiment
    (once all of its cells have run).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Optional

from ...analysis import render
from ...analysis.claims.comparisons import tests_of
from ...analysis.claims.measures import seconds
from ...analysis.claims.pages import write_reports
from ...analysis.claims.verdict import all_of, decide_family
from ...analysis.results import is_finished, write_results
from ...fileio import atomic_write_text
from ...grid import expand, jobs_of
from ..seed_groups import SeedBatch
from ..spec import parse_experiment
from ..sweep import SweepOutcome, pending_jobs, prepare_sweep_dir, run_pending, shard_cells
from .index import CLAIMS, experiment, one_by_one, select


class Runs:
    """Arm label -> its run directories, one per seed (the same seeds, in the same order, for
    every label of a claim, so position i pairs the arms)."""

    def __init__(self, dirs: dict, seeds: list):
        self._dirs, self.seeds = dirs, list(seeds)

    def dirs(self, label: str) -> list[Path]:
        return self._dirs[label]

    def values(self, label: str, measure: Callable) -> list[float]:
        return [float(measure(d)) for d in self._dirs[label]]


def _cell_of(exp, levels: dict):
    for c in expand(exp):
        if c.factors == levels:
            return c
    raise KeyError(f"experiment {exp.name!r} has no cell {levels}")


def plan(names: list[str], quick: bool):
    """The experiments the trained claims among `names` need, and which of their cells:
    ({experiment name: (Experiment, [Cell, ...])}, {claim: {label: (experiment name, Cell)}})."""
    exps: dict[str, tuple] = {}
    arms: dict[str, dict] = {}
    for name in names:
        claim = CLAIMS[name]
        if claim.arms is None:
            continue
        arms[name] = {}
        for label, (ename, levels) in claim.arms(quick).items():
            if ename not in exps:
                exps[ename] = (parse_experiment(experiment(ename, quick), source=ename), [])
            exp, cells = exps[ename]
            cell = _cell_of(exp, levels)
            if cell not in cells:
                cells.append(cell)
            arms[name][label] = (ename, cell)
    return exps, arms


def train_cells(exps: dict, work: Path, jobs: int, shard: Optional[tuple], log: Callable,
                seed_batch: SeedBatch = True) -> tuple:
    """Train every unfinished run of the planned cells (or of one shard of them); returns the
    outcome and how many of the planned runs are still unfinished."""
    units = [(ename, cell) for ename, (_, cells) in exps.items() for cell in cells]
    mine = shard_cells(units, *shard) if shard else units
    outcome, todo = SweepOutcome(), []
    for ename, (exp, _) in exps.items():
        folder = prepare_sweep_dir(exp, work / ename)
        cells = [c for e, c in mine if e == ename]
        # One thread a run, always: the seconds stay comparable whatever --jobs is, and on a loaded
        # machine a run does not lose its time to threads waiting for each other.
        todo += pending_jobs(exp, folder, cells, True, outcome, prefix=f"{ename}/")
    where = f" (shard {shard[0]}/{shard[1]}: {len(mine)} of {len(units)} cells)" if shard else ""
    if units:
        log(f"normlab claims: {len(todo)} runs to train, {len(outcome.skipped)} already finished{where}")
    alone = {f"{e}/": one_by_one(e) for e in exps if one_by_one(e)}
    run_pending(todo, jobs, outcome, log, seed_batch, alone)
    missing = 0
    for ename, (exp, cells) in exps.items():
        write_results(work / ename)
        missing += sum(not is_finished(work / ename / "runs" / j.name) for j in jobs_of(exp, cells))
    return outcome, missing


def settle_verdicts(results: list[dict]) -> None:
    """Every paired comparison of the run decided as one family; a claim of several predictions
    then holds only when all of them do."""
    tests = [t for r in results for t in tests_of(r)]
    decide_family(tests)
    for r in results:
        preds = (r.get("numbers") or {}).get("predictions")
        if preds:
            r["verdict"] = all_of(p["verdict"] for p in preds.values())


def measure(names: list[str], quick: bool, exps: dict, arms: dict, work: Path) -> list[dict]:

    results = []
    for name in names:
        claim = CLAIMS[name]
        t0 = time.perf_counter()
        if claim.arms is None:
            r = claim.evaluate(quick)
            train_s = 0.0
        else:
            dirs = {label: [work / e / "runs" / f"{cell.id}-s{s}" for s in exps[e][0].seeds]
                    for label, (e, cell) in arms[name].items()}
            first = next(iter(arms[name].values()))[0]
            r = claim.evaluate(quick, Runs(dirs, exps[first][0].seeds))
            train_s = sum(seconds(d) for ds in dirs.values() for d in ds)
        r.update(name=name, claim=claim.text, seconds=time.perf_counter() - t0 + train_s,
                 train_seconds=train_s)
        if claim.quote:
            r["quote"] = list(claim.quote)
        if claim.source:
            r["source"] = list(claim.source)
        results.append(r)
    return results


def write_cell_configs(exps: dict, work: Path, out: Path) -> None:
    """OUT/configs/EXPERIMENT/CELL.yaml: each trained cell's resolved config, read from its first
    finished run (seed listed as all the cell's seeds); small, so a committed page keeps them."""
    for ename, (exp, cells) in exps.items():
        for cell in cells:
            cfg = {**exp.base, **cell.factors}
            for s in exp.seeds:
                p = work / ename / "runs" / f"{cell.id}-s{s}" / "config.json"
                if p.is_file():
                    cfg = json.loads(p.read_text(encoding="utf-8"))
                    break
            cfg.pop("out", None)
            cfg["seed"] = list(exp.seeds)
            target = out / "configs" / ename / f"{cell.id}.yaml"
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, f"# cell {cell.id} of the claims experiment {ename}; one run per seed\n"
                                      f"{render.yaml_text(cfg)}\n")


def describe(exps: dict, arms: dict, work: Path, out: Path) -> dict:
    """What the page needs to link each claim to its cells: the experiments (base config, factors,
    seeds, the cells trained) and, per claim, arm label -> (experiment, cell id)."""
    return {"work": work.relative_to(out).as_posix(),
            "experiments": {e: {"base": dict(exp.base), "factors": {k: list(v) for k, v in exp.factors.items()},
                                "seeds": list(exp.seeds), "cells": [c.id for c in cells]}
                            for e, (exp, cells) in exps.items()},
            "arms": {name: {label: [e, cell.id] for label, (e, cell) in a.items()} for name, a in arms.items()}}


def load_text(start: tuple, end: tuple, trained: int) -> str:
    loads = (f"load average (1, 5, 15 min) {', '.join(f'{x:.2f}' for x in start)} when this command began, "
             f"{', '.join(f'{x:.2f}' for x in end)} when it ended")
    if not trained:
        return f"This command trained no run (it measured finished ones); {loads}."
    return f"This command trained {trained} runs; {loads} (the seconds are wall time on a shared machine)."


def trained_text(work: Path) -> str:
    """Where, with what and when the runs were trained, from their summary.json files."""
    devices, torches, threads, times = set(), set(), set(), []
    for p in work.glob("*/runs/*/summary.json"):
        try:
            sm = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        devices.add(str(sm.get("device", "?")))
        torches.add(str((sm.get("versions") or {}).get("torch", "?")))
        threads.add(str(sm.get("threads", "?")))
        times.append(p.stat().st_mtime)
    if not times:
        return "No run has finished."
    when = lambda t: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))  # noqa: E731
    return (f"Runs trained on {', '.join(sorted(devices))} with torch {', '.join(sorted(torches))}, "
            f"{'/'.join(sorted(threads))} thread(s) each, finished between {when(min(times))} and {when(max(times))}.")


def train_seconds(exps: dict, work: Path) -> float:
    """Wall seconds of every planned run, each counted once (a resumed run keeps its own)."""

    return sum(seconds(work / e / "runs" / j.name) for e, (exp, cells) in exps.items() for j in jobs_of(exp, cells))


def run_claims(out, quick: bool = False, only: Optional[str] = None, jobs: int = 1,
               shard: Optional[tuple] = None, log: Callable = print, seed_batch: SeedBatch = True) -> dict:
    """Train (or resume) the selected claims' runs and, once all of them are finished, measure
    each claim and write claims.md, claims.html and claims.json into `out`. Returns the report
    document, or {"missing": n} when a shard leaves runs for the others."""
    names = select(only)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "runs" / ("quick" if quick else "full")
    t_all = time.perf_counter()
    load_start = os.getloadavg()
    exps, arms = plan(names, quick)
    outcome, missing = train_cells(exps, work, jobs, shard, log, seed_batch)
    if missing:
        log(f"normlab claims: {missing} runs of the selected claims are not finished yet (other shards?); "
            f"run the same command without --shard once they are, to write the report")
        return {"missing": missing, "failed": outcome.failed}
    results = measure(names, quick, exps, arms, work)
    settle_verdicts(results)
    for r in results:
        log(f"{r['name']}: {r['verdict']} ({r['summary']})")
    write_cell_configs(exps, work, out)
    doc = {"quick": quick, "claims": results, "total_seconds": time.perf_counter() - t_all,
           "train_seconds_total": train_seconds(exps, work), "trained_now": len(outcome.ran),
           "resumed": len(outcome.skipped), **describe(exps, arms, work, out)}
    doc["provenance_info"] = render.provenance_info()
    doc["provenance"] = render.provenance(f"{trained_text(work)} "
                                          f"{load_text(load_start, os.getloadavg(), len(outcome.ran))}",
                                          doc["provenance_info"])
    write_reports(out, doc)
    return doc
