"""Ablation sweeps: an experiment expanded into a grid of runs (normlab/grid.py), trained one by
one or in worker processes, resumable by running the same command again.

Runs go to SWEEP_DIR/runs/<cell-id>-s<seed>, the cell id being its levels, e.g.
norm=bn,dropout=0.5-s0. A finished run is skipped on a rerun; an interrupted one resumes from its
last committed epoch, so a sweep killed at any point resumes by running the same command again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, TypeVar

from ..analysis.results import is_finished, read_experiment_json, write_results
from ..config import make_config
from ..data.catalog import ensure_present
from ..data.download import data_root
from ..errors import ConfigError, NormlabError
from ..fileio import atomic_write_json
from ..grid import Cell, Experiment, Job, cell_config, expand, jobs_of
from . import seed_groups
from .jobs import run_job
from .seed_groups import SeedBatch
from .workers import run_parallel, signals_interrupt

T = TypeVar("T")


@dataclass
class SweepOutcome:
    ran: list = field(default_factory=list)      # job names trained now
    skipped: list = field(default_factory=list)  # already finished
    failed: list = field(default_factory=list)   # (job name, message)
    busy: list = field(default_factory=list)     # being trained by another live process: left alone
    machine: list = field(default_factory=list)  # (job name, message): stopped by the machine, not a result
    interrupted: bool = False                    # Ctrl-C / SIGTERM stopped the sweep


def parse_shard(text: Optional[str]) -> Optional[tuple[int, int]]:
    """'2/4' -> (2, 4): the second of four slices, counted from 1."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise ConfigError(f"shard must be i/n with 1 <= i <= n, e.g. 1/4, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_cells(cells: Sequence[T], i: int, n: int) -> list[T]:
    """Cells i-1, i-1+n, i-1+2n, ...: every cell lands in exactly one of the n shards, and all
    seeds of a cell stay together, so each shard can report complete cells."""
    return [c for k, c in enumerate(cells) if k % n == i - 1]


def prepare_sweep_dir(exp: Experiment, out) -> Path:
    """Create SWEEP_DIR and record the experiment; refuse a folder that holds another one."""
    out = Path(out)
    rec = out / "experiment.json"
    if rec.is_file():
        old = read_experiment_json(rec)
        mine = json.loads(json.dumps(exp.to_dict()))
        changed = [k for k in ("base", "factors", "seeds") if old.get(k) != mine.get(k)]
        if changed:
            raise ConfigError(f"{str(out)!r} holds a sweep of a different experiment ({', '.join(changed)} differ); "
                              f"use another --out, or delete that folder to start over")
    elif out.exists() and not out.is_dir():
        raise ConfigError(f"out: {str(out)!r} exists and is not a directory")
    elif (out / "config.json").is_file() or (out / "preprocess.json").is_file():
        raise ConfigError(f"out: {str(out)!r} is a training run's folder, not a sweep's; "
                          f"give compare a new or empty --out (nothing there was changed)")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if not rec.is_file():
        atomic_write_json(rec, exp.to_dict())
    return out


def pending_jobs(exp: Experiment, out: Path, cells: Sequence[Cell], parallel: bool,
                 outcome: SweepOutcome, prefix: str = "") -> list[tuple[str, dict]]:
    """(name, config) of every unfinished run of `cells` under OUT/runs; finished ones are noted
    as skipped, and a run folder left by an interrupted run is cleared so it starts over."""
    todo = []
    for job in jobs_of(exp, cells):
        run_dir = Path(out) / "runs" / job.name
        if is_finished(run_dir):
            outcome.skipped.append(prefix + job.name)
            continue
        cfg = cell_config(exp, job.cell, job.seed, str(run_dir))
        if parallel and "threads" not in cfg:
            cfg["threads"] = 1  # parallel runs share the cores; one thread each avoids oversubscription
        todo.append((prefix + job.name, cfg))
    return todo


def run_pending(todo: Sequence[tuple[str, dict]], jobs: int, outcome: SweepOutcome, log: Callable = print,
                seed_batch: SeedBatch = True, alone: Optional[dict] = None) -> None:
    """Train the (name, config) runs, `jobs` at a time in worker processes; each ends in its run
    folder's summary.json or failed.json (see run_job), recorded in `outcome`. The seeds of a cell
    are trained as one seed batch where that applies (seed_groups.py; `seed_batch` False: never,
    N: at most N seeds a batch; `alone`: {name prefix: why} for runs never batched)."""
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    fetch_datasets(cfg for _, cfg in todo)

    def record(name, status, err, secs):
        if status == "failed":
            outcome.failed.append((name, err))
            log(f"  {name}: FAILED ({err.splitlines()[0]})")
        elif status == "machine":
            outcome.machine.append((name, err))
            log(f"  {name}: NOT FINISHED, stopped by the machine, not a result ({err}); "
                f"`normlab compare` again trains it")
        elif status == "busy":
            outcome.busy.append(name)
            log(f"  {name}: {err}")
        elif status == "skipped":
            outcome.skipped.append(name)
        else:
            outcome.ran.append(name)
            log(f"  {name}: done in {secs:.1f} s")

    work = seed_groups.units(list(todo), seed_batch, log, alone)
    with signals_interrupt():
        try:
            if jobs == 1 or len(work) <= 1:
                for unit in work:
                    for name, *rest in seed_groups.run_unit(unit, run_job):
                        record(name, *rest)
            else:
                run_parallel(work, jobs, record)
        except KeyboardInterrupt:
            outcome.interrupted = True
            log("normlab compare: interrupted; keeping the finished runs")


def plan(exp: Experiment, out, shard: Optional[tuple[int, int]] = None) -> list[tuple[Job, bool]]:
    """(job, finished) for every run of the experiment (or of one shard), in the order a sweep
    trains them; reads OUT but writes nothing (`compare --dry-run`)."""
    cells = expand(exp)
    if shard:
        cells = shard_cells(cells, *shard)
    return [(job, is_finished(Path(out) / "runs" / job.name)) for job in jobs_of(exp, cells)]


def fetch_datasets(configs) -> None:
    """Before a sweep (`compare`, `claims`) trains: every downloadable set its runs need is fetched
    once here, so a missing one is one download (not one per worker) and, offline, one error that
    lists the files to place, instead of every run failing with the first line of it."""

    done = set()
    for options in configs:
        try:
            cfg = make_config(options)
        except NormlabError:
            continue  # a bad config fails its own run, with its own message
        key = (cfg.dataset, data_root(cfg.data_dir))
        if key not in done:
            try:
                ensure_present(cfg.dataset, cfg.data_dir, cfg.data_mirror)
            except ConfigError:
                continue  # an unknown set, likewise
            done.add(key)


def run_sweep(exp: Experiment, out, jobs: int = 1, shard: Optional[tuple[int, int]] = None,
              log: Callable = print, seed_batch: SeedBatch = True) -> SweepOutcome:
    """Run every unfinished run of the experiment (or of one shard of its cells).

    Ctrl-C or SIGTERM stop it (workers included); what finished is kept, results.csv is written
    and the outcome says `interrupted`."""
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    out = prepare_sweep_dir(exp, out)
    cells = expand(exp)
    if shard:
        cells = shard_cells(cells, *shard)
    outcome = SweepOutcome()
    todo = pending_jobs(exp, out, cells, jobs > 1, outcome)
    where = f" (shard {shard[0]}/{shard[1]}: {len(cells)} cells)" if shard else ""
    log(f"normlab compare: {len(todo)} runs to train, {len(outcome.skipped)} already finished{where}")
    run_pending(todo, jobs, outcome, log, seed_batch)
    write_results(out)
    return outcome
