"""Ablation sweeps: an experiment file expanded into a grid of runs, each cell with paired seeds.

An experiment file (YAML or JSON) holds
  base:    train options shared by every run            {dataset: digits, model: mlp, epochs: 5}
  factors: option -> list of levels, crossed as a grid  {norm: [bn, none], dropout: [0.0, 0.5]}
  seeds:   a count N (seeds 0..N-1) or a list of seeds
  metric:  (optional) the summary value compared in the report, default final_test_acc

Every cell runs the same seeds. The trainer seeds the initial weights and the data order from the
run's seed alone, so two arms with the same seed start from the same weights (where the shapes
agree) and see the batches in the same order: the comparison is paired.

Runs go to SWEEP_DIR/runs/<cell-id>-s<seed>, the cell id being its levels, e.g.
norm=bn,dropout=0.5-s0. A run whose summary.json exists is finished and is
skipped on a rerun; a run directory without one was interrupted and is resumed from its last
committed epoch (bit-identical to training it in one go) or, where it has none, started over, so
a sweep killed at any point resumes by running the same command again.

Whoever trains a run holds its lock, SWEEP_DIR/.locks/<run>.lock (locks.py): a second `compare`
on the same folder skips the runs another live process is training instead of deleting them.
Worker processes die with the parent (parent-death signal, and a watch on the parent's pid
where that signal does not exist); Ctrl-C or SIGTERM stop them, keep what finished and write
results.csv.
"""

from __future__ import annotations

import csv
import errno
import io
import itertools
import json
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..config import FIELDS, load_config_file, make_config, normalize_key
from ..locks import Locked, hold as hold_lock
from ..errors import CheckpointError, ConfigError, NormlabError, unknown_name
from ..fileio import atomic_write_json, atomic_write_text
from ..train.unused import refuse_unused

TOP_KEYS = ("base", "factors", "seeds", "metric", "name", "description")
RESERVED = {"out": "each run's directory is chosen by the sweep",
            "seed": "give the seeds with the top-level `seeds:` key",
            "progress": "the sweep turns progress bars off"}
METRICS = ("final_test_acc", "best_test_acc", "final_test_loss", "final_train_acc", "final_train_loss")
SUMMARY_COLUMNS = ("final_test_acc", "best_test_acc", "final_test_loss", "final_train_acc",
                   "final_train_loss", "wall_seconds", "parameters")


@dataclass
class Experiment:
    base: dict
    factors: dict            # option -> list of levels, in file order; the first level is the baseline
    seeds: list
    metric: str = "final_test_acc"
    name: str = "experiment"
    description: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "base": self.base,
                "factors": self.factors, "seeds": self.seeds, "metric": self.metric}


@dataclass(frozen=True)
class Cell:
    id: str
    levels: tuple            # ((option, value), ...) in factor order

    @property
    def factors(self) -> dict:
        return dict(self.levels)


@dataclass(frozen=True)
class Job:
    cell: Cell
    seed: int

    @property
    def name(self) -> str:
        return f"{self.cell.id}-s{self.seed}"


@dataclass
class SweepOutcome:
    ran: list = field(default_factory=list)      # job names trained now
    skipped: list = field(default_factory=list)  # already finished
    failed: list = field(default_factory=list)   # (job name, message)
    busy: list = field(default_factory=list)     # being trained by another live process: left alone
    machine: list = field(default_factory=list)  # (job name, message): stopped by the machine, not a result
    interrupted: bool = False                    # Ctrl-C / SIGTERM stopped the sweep


# ------------------------------------------------------------------ the experiment file
def parse_experiment(data, source: str = "experiment") -> Experiment:
    """Check an experiment mapping and every cell's config before any training starts."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an experiment must be a mapping with base, factors and seeds")
    for key in data:
        if key not in TOP_KEYS:
            raise unknown_name(f"key in {source}:", key, TOP_KEYS)
    base_in = data.get("base") or {}
    factors_in = data.get("factors") or {}
    if not isinstance(base_in, dict) or not isinstance(factors_in, dict):
        raise ConfigError(f"{source}: base and factors must be mappings of option: value")
    base = {normalize_key(k): v for k, v in base_in.items()}
    factors = {}
    for key, levels in factors_in.items():
        name = normalize_key(key)
        if name not in FIELDS:
            raise unknown_name(f"factor in {source}:", key, FIELDS)
        if not isinstance(levels, list) or not levels:
            raise ConfigError(f"{source}: factor {key!r} must be a non-empty list of levels, got {levels!r}")
        if len(set(map(_slug, levels))) != len(levels):
            raise ConfigError(f"{source}: factor {key!r} lists the same level twice: {levels!r}")
        factors[name] = list(levels)
    for name in list(base) + list(factors):
        if name in RESERVED:
            raise ConfigError(f"{source}: {name!r} cannot be set in an experiment ({RESERVED[name]})")
    seeds = data.get("seeds", 1)
    if isinstance(seeds, bool) or not (isinstance(seeds, int) and seeds >= 1
                                       or isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"{source}: seeds must be a count >= 1 or a list of integers, got {seeds!r}")
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: seeds lists a seed twice: {seeds!r}")
    metric = data.get("metric", "final_test_acc")
    if metric not in METRICS:
        raise unknown_name("metric", metric, METRICS)
    exp = Experiment(base, factors, seeds, metric, str(data.get("name") or source), str(data.get("description") or ""))
    for cell in expand(exp):  # every cell must be a valid config, checked now, not mid-sweep
        try:
            refuse_unused(make_config(cell_config(exp, cell, seeds[0])))  # resolves it, and refuses unused options
        except ConfigError as exc:
            raise ConfigError(f"{source}: cell {cell.id}: {exc}") from None
    return exp


def load_experiment(path) -> Experiment:
    return parse_experiment(load_config_file(path), source=Path(path).stem)


def _slug(value) -> str:
    text = "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


def expand(exp: Experiment) -> list[Cell]:
    """The full grid, in a fixed order: the last factor varies fastest; the first cell is the
    baseline (the first level of every factor)."""
    names = list(exp.factors)
    cells = []
    for combo in itertools.product(*(exp.factors[n] for n in names)):
        levels = tuple(zip(names, combo))
        cid = ",".join(f"{n}={_slug(v)}" for n, v in levels) or "base"
        cells.append(Cell(cid, levels))
    return cells


def cell_config(exp: Experiment, cell: Cell, seed: int, out: Optional[str] = None) -> dict:
    cfg = dict(exp.base)
    cfg.update(cell.factors)
    cfg.update(seed=seed, progress=False)
    if out is not None:
        cfg["out"] = out
    return cfg


def jobs_of(exp: Experiment, cells: Optional[Sequence[Cell]] = None) -> list[Job]:
    return [Job(c, s) for c in (expand(exp) if cells is None else cells) for s in exp.seeds]


def parse_shard(text: Optional[str]) -> Optional[tuple[int, int]]:
    """'2/4' -> (2, 4): the second of four slices, counted from 1."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise ConfigError(f"shard must be i/n with 1 <= i <= n, e.g. 1/4, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_cells(cells: Sequence[Cell], i: int, n: int) -> list[Cell]:
    """Cells i-1, i-1+n, i-1+2n, ...: every cell lands in exactly one of the n shards, and all
    seeds of a cell stay together, so each shard can report complete cells."""
    return [c for k, c in enumerate(cells) if k % n == i - 1]


# ------------------------------------------------------------------ running
def _silent(*_a, **_k):
    pass


def lock_path(run_dir: Path) -> Path:
    return run_dir.parent.parent / ".locks" / f"{run_dir.name}.lock"


# errno values that say the machine stopped a run (a full disk, a folder it may not write, a
# failing device), not the experiment.
MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO,
                  errno.ENOMEM}
KILLED = ("a worker process died (killed, or out of memory?) before this run finished; "
          "run the same command again to train only the missing runs")


def machine_failure(exc: BaseException) -> Optional[str]:
    """The one-line reason when `exc` comes from the machine (disk full or unwritable, out of
    memory), else None: such a run is not a result of the experiment and is trained again on the
    next `compare`, whereas a diverged loss or a bad option is a result and is kept."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or \
            isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"out of memory ({first})"
    code = getattr(exc, "errno", None)  # OSError, WriteError, and a CheckpointError that records it
    if code in MACHINE_ERRNOS:
        return one_line(exc)
    return None


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, NormlabError) else text


def _record_failure(out: Path, record: dict) -> None:
    """failed.json, best effort: on a full disk it may not be writable, and the run is then simply
    not finished (trained again by the next `compare`)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "failed.json", record)
    except OSError:
        pass


def _record_killed(out: Path) -> None:
    """Mark a run whose worker died as the machine's failure, unless someone else has taken it
    over meanwhile (its lock) or it finished after all."""
    try:
        with hold_lock(lock_path(out)):
            if out.is_dir() and not is_finished(out):
                _record_failure(out, {"error": KILLED, "kind": "machine"})
    except (Locked, OSError):
        pass


def failure_record(run_dir: Path) -> Optional[dict]:
    """failed.json as a dict, None when there is none; a damaged one reads as an error record."""
    p = Path(run_dir) / "failed.json"
    if p.exists() and not p.is_file():
        return {"error": "failed.json is damaged (not a regular file)"}
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"error": f"failed.json is damaged ({exc})"}
    return d if isinstance(d, dict) else {"error": "failed.json is damaged (not a JSON object)"}


def run_job(cfg: dict) -> tuple[str, str, Optional[str], float]:
    """Train one run (in this process or a worker) while holding its lock.

    Returns (out, status, message, seconds) with status "done", "failed" (message: why; a result,
    such as a diverged loss), "machine" (message: why; a full disk, out of memory: not a result,
    trained again by the next `compare`), "skipped" (finished by another process meanwhile) or
    "busy" (message: who is training it). failed.json holds the one-line message; a bug's
    traceback goes to traceback.txt beside it.
    """
    from ..train.trainer import train

    t0 = time.perf_counter()
    out = Path(cfg["out"])
    try:
        with hold_lock(lock_path(out)):
            if is_finished(out):
                return str(out), "skipped", None, 0.0
            try:
                if (out / "failed.json").is_file():  # the machine's failure of an earlier try: try again
                    (out / "failed.json").unlink()
                if _resumable(out):  # interrupted part-way: continue from its last epoch (exact)
                    train({k: cfg[k] for k in ("threads",) if k in cfg}, log=_silent, resume=out)
                else:
                    if out.exists():  # nothing usable in it, and nobody holds it: start that run over
                        shutil.rmtree(out)
                    train(cfg, log=_silent)
                return str(out), "done", None, time.perf_counter() - t0
            except KeyboardInterrupt:
                if _IN_WORKER:  # stopped by the parent: leave at once, the parent reports
                    os._exit(130)
                raise
            except Exception as exc:
                why = machine_failure(exc)
                if why is not None:
                    _record_failure(out, {"error": why, "kind": "machine"})
                    return str(out), "machine", why, time.perf_counter() - t0
                msg = one_line(exc)
                record = {"error": msg, "kind": "result" if isinstance(exc, NormlabError) else "bug"}
                _record_failure(out, record)
                if record["kind"] == "bug":  # one run's bug cannot sink the sweep; its traceback is kept
                    try:
                        atomic_write_text(out / "traceback.txt", traceback.format_exc(limit=8))
                    except OSError:
                        pass
                return str(out), "failed", msg, time.perf_counter() - t0
    except Locked as exc:
        return str(out), "busy", f"being trained by process {exc.pid or '?'}; left alone", 0.0
    except OSError as exc:  # the lock itself could not be taken (its folder full or unwritable)
        return str(out), "machine", f"could not take the run's lock {str(lock_path(out))!r}: {one_line(exc)}", 0.0


def _resumable(out: Path) -> bool:
    """A run folder holding its config and an intact committed epoch: resuming it gives exactly
    what training it again would (train/checkpoint.py), for less."""
    from ..train import checkpoint

    try:
        saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
        return checkpoint.load_last_complete_epoch(out, ema=saved.get("ema") is not None) is not None
    except (OSError, ValueError, AttributeError, NormlabError):
        return False


_IN_WORKER = False


def _worker_init(threads: int, parent: int) -> None:
    import torch

    global _IN_WORKER
    _IN_WORKER = True
    torch.set_num_threads(threads)
    # Ctrl-C reaches the whole process group; the parent decides what stops (it sends SIGTERM,
    # which the trainer turns into a stop at the next step).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """Make this process end when `parent` does, even after a kill -9 of the parent.

    Linux: the kernel sends SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG). Elsewhere,
    and for a parent that died before the prctl, a daemon thread watches the parent's pid.
    A worker killed this way loses at most its current epoch: checkpoints commit atomically."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="normlab-parent-watch").start()


def stop_workers(procs, grace: float = 5.0) -> None:
    """SIGTERM every worker (the trainer stops at the next step), SIGKILL those still alive
    after `grace` seconds; return when all are gone."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()


@contextmanager
def _signals_interrupt():
    """SIGTERM, like SIGINT, raises KeyboardInterrupt in the parent, so both end in the same
    orderly stop (workers stopped, results written) instead of a silent death."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def is_finished(run_dir: Path) -> bool:
    """A readable summary.json, or a failed.json of a result (not of the machine): a damaged
    summary, or a run the machine stopped, is not a finished run."""
    if (run_dir / "failed.json").is_file():
        return (failure_record(run_dir) or {}).get("kind") != "machine"
    try:
        return read_summary(run_dir) is not None
    except CheckpointError:
        return False


def prepare_sweep_dir(exp: Experiment, out) -> Path:
    """Create SWEEP_DIR and record the experiment; refuse a folder that holds another one."""
    out = Path(out)
    rec = out / "experiment.json"
    if rec.is_file():
        old = _read_experiment_json(rec)
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


def run_pending(todo: Sequence[tuple[str, dict]], jobs: int, outcome: SweepOutcome, log: Callable = print) -> None:
    """Train the (name, config) runs, `jobs` at a time in worker processes; each ends in its run
    folder's summary.json or failed.json (see run_job), recorded in `outcome`."""
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

    with _signals_interrupt():
        try:
            if jobs == 1 or len(todo) <= 1:
                for name, cfg in todo:
                    record(name, *run_job(cfg)[1:])
            else:
                _run_parallel(todo, jobs, record)
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
    from ..data.catalog import ensure_present
    from ..data.download import data_root

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
              log: Callable = print) -> SweepOutcome:
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
    run_pending(todo, jobs, outcome, log)
    write_results(out)
    return outcome


def _run_parallel(todo, jobs: int, record) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # spawn: a fresh interpreter per worker, safe with torch's threads (fork is not).
    # An executor, not multiprocessing.Pool: when a worker dies (killed, out of memory) a
    # Pool waits forever for its task, while the executor fails the pending runs at once.
    pool = ProcessPoolExecutor(min(jobs, len(todo)), mp_context=mp.get_context("spawn"),
                               initializer=_worker_init, initargs=(1, os.getpid()))
    killed = []
    try:
        futures = {pool.submit(run_job, cfg): (name, cfg) for name, cfg in todo}
        for fut in as_completed(futures):
            name, cfg = futures[fut]
            try:
                _, status, err, secs = fut.result()
            except BrokenProcessPool:  # killed: the machine's doing, not a result
                status, err, secs = "machine", KILLED, 0.0
                killed.append(Path(cfg["out"]))
            record(name, status, err, secs)
    except BaseException:
        workers = mp.active_children()
        pool.shutdown(wait=False, cancel_futures=True)
        stop_workers(workers)
        raise
    finally:
        pool.shutdown(wait=True)
    for out in killed:  # once every worker is gone, and with it the locks of the runs it held
        _record_killed(out)


# ------------------------------------------------------------------ results
def read_experiment(out) -> Experiment:
    rec = Path(out) / "experiment.json"
    if not rec.is_file():
        raise ConfigError(f"{str(out)!r} is not a sweep directory (no experiment.json); "
                          f"create one with `normlab compare EXPERIMENT.yaml --out {out}`")
    d = _read_experiment_json(rec)
    try:
        return parse_experiment(d, source=str(rec))
    except ConfigError as exc:
        raise ConfigError(f"{exc} ({_DAMAGED_EXPERIMENT})") from None


_DAMAGED_EXPERIMENT = ("experiment.json records the sweep's experiment; restore it, or run `normlab compare "
                       "EXPERIMENT.yaml --out DIR` into a new folder")


def _read_experiment_json(rec: Path) -> dict:
    try:
        d = json.loads(rec.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{str(rec)!r} is damaged ({exc}); {_DAMAGED_EXPERIMENT}") from None
    if not isinstance(d, dict) or not {"base", "factors", "seeds"} <= set(d):
        raise ConfigError(f"{str(rec)!r} is damaged (it lacks base, factors or seeds); {_DAMAGED_EXPERIMENT}")
    return d


def read_summary(run_dir: Path) -> Optional[dict]:
    """A run's summary.json as a dict; None if there is none; CheckpointError if it is damaged."""
    path = run_dir / "summary.json"
    if path.exists() and not path.is_file():  # a FIFO or a folder in its place: reading would block
        raise CheckpointError(f"{str(path)!r} is damaged (not a regular file)")
    try:
        s = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{str(path)!r} is damaged ({exc})") from None
    if not isinstance(s, dict):
        raise CheckpointError(f"{str(path)!r} is damaged (not a JSON object)")
    return s


def collect(out) -> list[dict]:
    """One row per run of the grid, finished or not: factors, seed, status, summary metrics."""
    out = Path(out)
    exp = read_experiment(out)
    rows = []
    for job in jobs_of(exp):
        run_dir = out / "runs" / job.name
        row = {"cell": job.cell.id, **job.cell.factors, "seed": job.seed, "status": "missing", "error": ""}
        row.update({k: None for k in SUMMARY_COLUMNS})
        row["run_dir"] = str(Path("runs") / job.name)
        try:
            s = read_summary(run_dir)
        except CheckpointError as exc:  # one damaged run must not sink the whole report
            row["status"] = "damaged"
            row["error"] = (f"{exc}; `normlab compare` on this folder finishes that run again from its "
                            f"checkpoint (or retrains it)")
            s = None
        if s is not None:
            row["status"] = "ok"
            row.update({k: s.get(k) for k in SUMMARY_COLUMNS})
        elif row["status"] == "missing" and (run_dir / "failed.json").is_file():
            rec = failure_record(run_dir) or {}
            row["status"] = "machine" if rec.get("kind") == "machine" else "failed"
            row["error"] = str(rec.get("error", ""))
        rows.append(row)
    return rows


def results_columns(exp: Experiment) -> list[str]:
    return ["cell", *exp.factors, "seed", "status", *SUMMARY_COLUMNS, "run_dir", "error"]


def write_results(out) -> Path:
    exp = read_experiment(out)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=results_columns(exp), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in collect(out):
        w.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    path = Path(out) / "results.csv"
    atomic_write_text(path, buf.getvalue())
    return path


def finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
