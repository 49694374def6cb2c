"""Seed batching in `compare` and `claims`: the pending seeds of one cell trained as one seed
batch (train/seed_batch.py) where that applies and measured faster, else one by one.

A cell's pending runs (same config but the seed) form groups of at most `cap` seeds. A group is
trained by train_seeds into the runs' own folders, holding every run's sweep lock, with its
checkpoints in SWEEP_DIR/.seed-batch/runs/<cell>-s<seeds>; running the command again resumes it
there. Where a cell is not batched, one line says why: a config seed batching refuses
(L-BFGS, DDP, ...), a model it has no stacked form for (ln-chw), a family that did
not measure faster batched on a CPU (the table below, from benchmarks/seed_batch.py), or a run
that was started one by one and is resumed so.
"""

from __future__ import annotations

import glob
import json
import shutil
import time
from pathlib import Path
from typing import Callable, Optional, Union

from ..analysis.results import is_finished
from ..config import make_config
from ..device import resolve_device
from ..errors import NormlabError
from ..locks import Locked
from ..locks import hold as hold_lock
from ..models.mlp import hidden_widths
from ..models.registry import get_spec
from ..train import checkpoint
from ..train.resolve import resolve_config
from ..train.seed_batch import NotStackable, norm_refusal, refusal, train_seeds
from . import jobs
from .jobs import lock_path, machine_failure, one_line, record_failure, run_job

# Model families batched by default on a CPU: those whose seed-steps/s measured faster batched at
# S = 5, 10 and 20 in the claims' settings (benchmarks/seed_batch.py, one thread, 2026-12-07; the
# table is in docs/performance.md). On a GPU every family that stacks is batched.
ON_CPU = {"mlp": "1.9x / 3.1x / 3.7x at S = 5 / 10 / 20",
          "linear": "the mlp's layers (a Linear layer)",
          "lenet": "2.3x / 1.8x / 1.5x at S = 5 / 10 / 20 (grouped convolutions in channels_last)",
          "resnet-cifar": "1.3x at S = 5 and 10 (resnet20)",
          "preact-resnet": "1.3x / 1.2x / 1.3x at S = 5 / 10 / 20 (preact-resnet20; AMD EPYC without AVX-512, 2026-12-07)",
          "rnn": "1.7x / 2.8x / 3.1x at S = 5 / 10 / 20 (gru-rows, batched matmuls in its cells; same machine)"}
OFF_CPU = {"digitnet": "its grouped convolutions measured 0.8-1.1x batched on a CPU (benchmarks/seed_batch.py)"}
# An MLP this wide is matmul-bound one by one already: the 2x512 MLP measured 1.13x / 1.01x a
# step at S = 5 / 20 (benchmarks/seed_batch.py's measure() on overfit's config, not committed) and
# its claims cells (`overfit`) 0.87x in the full claims, both ways side by side
# (benchmarks/results/seed_batch_claims_full_at_once.json, AMD EPYC without AVX-512, 2026-12-07).
WIDE_MLP = 512
WIDE_MLP_WHY = (f"an MLP {WIDE_MLP} units wide or wider measured no faster batched on a CPU (2x512: 1.0-1.1x a step, "
                f"its claims cells 0.87x)")

SeedBatch = Union[bool, int]  # True: where it applies and pays; False: never; N: at most N seeds a group


def _key(cfg: dict) -> str:
    return json.dumps({k: v for k, v in cfg.items() if k not in ("seed", "out")}, sort_keys=True, default=str)


def why_not(cfg: dict) -> Optional[str]:
    """Why this cell's seeds are trained one by one (one phrase), or None to batch them."""

    try:
        c = resolve_config(make_config(cfg))
    except NormlabError:
        return "its config is refused (each run says why)"
    reason = refusal(c) or norm_refusal(c)
    if reason:
        return reason
    family = get_spec(c.model).family
    try:
        gpu = resolve_device(c.device).type == "cuda"
    except NormlabError:
        gpu = False
    if gpu:
        return None
    if family not in ON_CPU:
        return OFF_CPU.get(family, f"family {family} was not measured faster batched on a CPU")
    if family == "mlp":
        try:
            widest = max(hidden_widths(c.depth, c.width, c.widths), default=0)
        except NormlabError:
            return "its config is refused (each run says why)"
        if widest >= WIDE_MLP:
            return WIDE_MLP_WHY
    return None


def units(todo: list, seed_batch: SeedBatch = True, log: Callable = print, alone: Optional[dict] = None) -> list:
    """The (name, config) runs of `todo` as units of work: (names, configs, group_dir), a group
    dir of None meaning one run trained on its own; runs whose name starts with a key of `alone`
    are trained one by one, for the reason it gives."""
    out: list = []
    off: dict[str, list] = {}
    i = 0
    while i < len(todo):
        j = i + 1
        while j < len(todo) and _key(todo[j][1]) == _key(todo[i][1]):
            j += 1
        cell = todo[i:j]
        i = j
        told = next((why for prefix, why in (alone or {}).items() if cell[0][0].startswith(prefix)), None)
        reason = "--no-seed-batch" if seed_batch is False else told or why_not(cell[0][1])
        cap = len(cell) if seed_batch is True or seed_batch is False else max(1, int(seed_batch))
        if reason is None and cap < 2:
            reason = f"--seed-batch {cap}"
        # a run started one by one (its own committed epoch, no group holds it) resumes so
        started = [(n, c) for n, c in cell if reason is None and _started_alone(Path(c["out"]))]
        rest = [(n, c) for n, c in cell if (n, c) not in started]
        out += [([n], [c], None) for n, c in started]
        if reason is not None or len(rest) < 2:
            if reason is not None and len(cell) > 1:
                off.setdefault(reason, []).append(_cell_name(cell[0][0]))
            out += [([n], [c], None) for n, c in rest]
            continue
        rest, out = _resumed_groups(rest, out)  # groups a killed command left: resumed whole
        for k in range(0, len(rest), cap):
            chunk = rest[k:k + cap]
            if len(chunk) == 1:
                out.append(([chunk[0][0]], [chunk[0][1]], None))
            else:
                out.append(([n for n, _ in chunk], [c for _, c in chunk], group_dir([c for _, c in chunk])))
    for reason, cells in off.items():
        log(f"normlab: seeds one by one in {len(cells)} cell{'s' * (len(cells) > 1)} ({', '.join(cells[:3])}"
            f"{', ...' if len(cells) > 3 else ''}): {reason}")
    return out


def batches_of(run_dir: Path) -> Path:
    """Where the seed batches of the runs beside `run_dir` keep their checkpoints: a folder per
    folder of runs (SWEEP_DIR/runs -> SWEEP_DIR/.seed-batch/runs), so two folders holding runs of
    the same names (the leaderboard's b2/ and b8/) never share a batch."""
    return run_dir.parent.parent / ".seed-batch" / run_dir.parent.name


def _batches_of_cell(run_dir: Path) -> list:
    return sorted(batches_of(run_dir).glob(f"{glob.escape(_cell_name(run_dir.name))}-s*"))


def _resumed_groups(cell: list, out: list) -> tuple:
    """The runs of `cell` that a seed batch with committed epochs holds (batches_of)
    become that batch again, with all its seeds (finished ones too: it resumes as one); the
    rest is returned to be grouped anew."""

    if not cell:
        return cell, out
    first = Path(cell[0][1]["out"])
    prefix = first.name.rsplit("-s", 1)[0]
    pending = {c["seed"]: (n, c) for n, c in cell}
    for g in _batches_of_cell(first):
        try:
            seeds = [int(x) for x in g.name[len(prefix) + 2:].split("_")]
        except ValueError:
            continue
        if checkpoint.last_epoch_dir(g) is None or not any(s in pending for s in seeds):
            continue
        names, cfgs = [], []
        for sd in seeds:
            n, c = pending.pop(sd, (None, None))
            if c is None:  # finished since: part of the batch still
                c = dict(cell[0][1], seed=sd, out=str(first.parent / f"{prefix}-s{sd}"))
                n = cell[0][0].rsplit("-s", 1)[0] + f"-s{sd}"
            names.append(n)
            cfgs.append(c)
        out.append((names, cfgs, g))
    return [(n, c) for n, c in cell if c["seed"] in pending], out


def _cell_name(name: str) -> str:
    return name.rsplit("-s", 1)[0]


def _started_alone(out: Path) -> bool:

    return out.is_dir() and not is_finished(out) and checkpoint.last_epoch_dir(out) is not None \
        and not any(g.is_dir() for g in _batches_of_cell(out))


def group_dir(cfgs: list) -> Path:
    """batches_of(the runs)/<cell>-s<seeds>: the group's own checkpoints."""
    first = Path(cfgs[0]["out"])
    seeds = "_".join(str(c["seed"]) for c in cfgs)
    return batches_of(first) / f"{_cell_name(first.name)}-s{seeds}"


def run_unit(unit, one: Callable = run_job) -> list:
    """Train one unit; [(name, status, message, seconds)] per run, as jobs.run_job (`one`)
    reports a run."""
    names, cfgs, gdir = unit
    if gdir is None:
        return [(names[0], *one(cfgs[0])[1:])]
    return run_group(names, cfgs, gdir)


def run_group(names: list, cfgs: list, gdir: Path) -> list:
    """A seed batch, holding every run's lock: finished runs are left out (a group resumed from
    its checkpoints keeps its seeds, so a finished seed there is part of it still)."""
    from contextlib import ExitStack


    t0 = time.perf_counter()
    outs = [Path(c["out"]) for c in cfgs]
    res: dict = {}
    with ExitStack() as held:
        try:
            for o in outs:
                held.enter_context(hold_lock(lock_path(o)))
        except Locked as exc:
            return [(n, "busy", f"being trained by process {exc.pid or '?'}; left alone", 0.0) for n in names]
        resuming = gdir.is_dir() and any((gdir / "checkpoints").glob("epoch-*"))
        finished = {n for n, o in zip(names, outs) if is_finished(o)}
        if not resuming and all(is_finished(o) for o in outs):
            return [(n, "skipped", None, 0.0) for n in names]
        if not resuming:
            for o in outs:
                if o.exists() and not is_finished(o):
                    shutil.rmtree(o)  # nothing usable in it (no epoch), and we hold its lock
        for o in outs:
            if (o / "failed.json").is_file() and not is_finished(o):
                (o / "failed.json").unlink()  # the machine's failure of an earlier try
        base = {k: v for k, v in cfgs[0].items() if k not in ("seed", "out")}
        try:
            results = train_seeds(base, [c["seed"] for c in cfgs], outs, gdir, log=lambda *a: None)
        except NotStackable:  # found when the model was built: its seeds one by one after all
            held.close()
            return [(n, *run_job(c)[1:]) for n, c in zip(names, cfgs)]
        except KeyboardInterrupt:

            if jobs.IN_WORKER:
                import os

                os._exit(130)
            raise
        except Exception as exc:
            why = machine_failure(exc)
            status, msg = ("machine", why) if why else ("failed", one_line(exc))
            for o in outs:
                if not is_finished(o):
                    record_failure(o, {"error": msg, "kind": "machine" if why else "result"})
            return [(n, status, msg, time.perf_counter() - t0) for n in names]
        for n, r, o in zip(names, results, outs):
            if n in finished:
                continue  # finished before: a seed of the resumed batch, not a run to report
            if r.error is not None:
                record_failure(o, {"error": r.error, "kind": "result"})
                res[n] = (n, "failed", r.error, 0.0)
            else:
                res[n] = (n, "done", None, float((r.summary or {}).get("wall_seconds") or 0.0))
    return [res[n] for n in names if n in res]
