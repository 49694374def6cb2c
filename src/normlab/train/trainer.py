"""The training loop: config in, run directory out.

Read top to bottom: `train` builds the run (train/build.py), opens its directory, picks the
hooks and calls `fit`, the loop: per epoch one pass of training and one of evaluation, then the
hooks write the checkpoint, the metrics row and the printed line (train/hooks.py). A resumed
run restores every piece of state that pass depends on, so it continues bit-for-bit.
"""

from __future__ import annotations

import math
import platform
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from ..config import TrainConfig, make_config, resume_changes
from ..data.loader import DeviceLoader
from ..errors import CheckpointError, TrainingError
from ..evaluation import evaluate
from ..faults import point as fault_point
from ..fileio import remove_temps
from ..locks import hold as hold_lock
from ..machine import cpu_has_bf16
from ..recipes import precision_note
from ..rundir import METRIC_COLUMNS, RunDir, link_latest
from . import checkpoint, determinism, distributed
from . import hooks as H
from .build import Run, build_run, count_params, default_out
from .resolve import resolve
from .selection import new_best, val_due
from .step import Step


@dataclass
class Result:
    run_dir: Path
    config: TrainConfig
    metrics: list[dict]
    summary: dict
    model: torch.nn.Module


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the run stops at the next step boundary."""


@dataclass
class Loop:
    """The state of a run in progress, as the hooks see it (train/hooks.py)."""

    run: Run
    run_dir: RunDir
    log: Callable
    evaluated: torch.nn.Module  # what is scored and saved: the model, or its EMA (set by the EMA hook)
    resume: bool = False
    rows: list = field(default_factory=list)
    epoch: int = 0
    start_epoch: int = 1
    elapsed0: float = 0.0  # seconds trained before a resume
    start: float = 0.0  # perf_counter origin of elapsed_seconds
    best_score: float = -1.0
    best_epoch: int = 0
    improved: bool = False
    should_stop: bool = False
    stop_event: threading.Event = field(default_factory=threading.Event)


def train(config: Union[TrainConfig, dict, None] = None, log=print, resume=None,
          hooks: Sequence[H.Hook] = ()) -> Result:
    """Train the model a config describes and write its run directory.

    `config` is a TrainConfig or a dict of options (the keys of `normlab train --help`).
    `resume`: a run directory to continue from its last complete epoch (config from the run;
    `config` may change only config.RESUME_OPTIONS, e.g. raise `epochs`). `hooks`: extra
    train/hooks.py Hook objects, called in their `order` among the built-in ones (by default just
    before the epoch's checkpoint, which saves their state). Under torchrun, trains
    data-parallel (see train/distributed.py).
    """
    d = distributed.Dist()
    try:
        with determinism.restored(), ExitStack() as held:  # held: the run's lock, released however it ends
            result = _train(config, log, resume, list(hooks), d, held)
        distributed.finish(d)
        return result
    except RuntimeError as exc:  # what torch's collectives raise when a peer is gone
        lost = distributed.lost_peer(exc, d)
        if lost is None:
            raise
        raise lost from None
    finally:
        distributed.teardown(d)


LOCK = ".lock"


def _open_for_resume(path) -> RunDir:
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"run directory {str(p)!r} does not exist")
    if not (p / "config.json").is_file():
        raise CheckpointError(f"{str(p)!r} has no config.json: that run stopped before it saved anything; start "
                              f"it again with its original `normlab train` command (the same --out may be used)")
    return RunDir(p)


def _create_locked(out, held: ExitStack) -> RunDir:
    """The run's folder, created (or an empty one, or one holding only debris of a run killed
    before it saved its config), locked by this process."""
    p = RunDir.refuse_unusable(out)
    p.mkdir(parents=True, exist_ok=True)
    held.enter_context(hold_lock(p / LOCK))
    remove_temps(p)  # ours to remove: we hold the lock
    return RunDir.create(p, ignore=(LOCK,))


def _train(config, log, resume, extra_hooks: list, d: distributed.Dist, held: ExitStack) -> Result:
    if resume is not None:
        changes = resume_changes(config)  # refuses any other option, as the command line does
        run_dir = _open_for_resume(resume)
        # Read once, here: every rank reads it before build_run's DDP set-up (a collective), and
        # rank 0 rewrites it only after that, so no rank sees the new --epochs as the old one.
        saved = run_dir.read_json("config.json")
        cfg = make_config(saved, changes)
        latest, planned = False, saved.get("epochs")
    else:
        cfg = resolve(make_config(config))
        latest = cfg.out is None  # a default folder under runs/: runs/latest will point to it
        planned = None
        cfg = cfg.replace(out=default_out(cfg))
    run = build_run(cfg, dist=d)
    if latest:
        run.cfg = run.cfg.replace(out=distributed.rank0s(run.cfg.out, d))
    if not d.main:
        log = lambda *a: None  # noqa: E731  (rank 0 speaks for all)
    note = precision_note(run.cfg.recipe, run.cfg.precision, run.device.type, cpu_has_bf16())
    if note and resume is None:
        log(note)
    has_epoch = False
    if resume is not None:
        if d.main:
            held.enter_context(hold_lock(run_dir / LOCK))
            checkpoint.remove_debris(run_dir.path)  # temporary files and folders of killed writes
        has_epoch = checkpoint.last_epoch_dir(run_dir.path) is not None
        if not has_epoch:  # stopped before its first epoch was committed: start it again
            if any((run_dir / n).is_file() for n in ("summary.json", "state.pt", "last.safetensors")):
                raise CheckpointError(f"{str(run_dir.path)!r} has no checkpoints/ folder but results of training "
                                      f"(a run written by normlab before checkpoints/, or its checkpoints were "
                                      f"removed); it cannot be resumed exactly: train it again with a new --out")
            if d.main:
                run_dir.write_json("config.json", run.cfg.to_dict())
                run_dir.write_json("preprocess.json", run.inputs.to_dict())
            log(f"normlab: {run_dir.path} stopped before its first epoch ended; starting it again from the "
                f"beginning")
    elif d.main:
        run_dir = _create_locked(run.cfg.out, held)
        if latest:
            link_latest(run_dir.path)
        run_dir.write_json("config.json", run.cfg.to_dict())
        run_dir.write_json("preprocess.json", run.inputs.to_dict())
    else:
        run_dir = RunDir(run.cfg.out)
    loop = Loop(run, run_dir, log, evaluated=run.model, resume=has_epoch)
    hooks = default_hooks(run, planned) + extra_hooks
    summary = fit(loop, hooks)
    return Result(run_dir.path, run.cfg, loop.rows, summary, loop.evaluated)


def default_hooks(r: Run, planned_epochs: Optional[int] = None) -> list[H.Hook]:
    """The built-in hooks for a run's config (each says its place: `order`, train/hooks.py);
    rank 0 alone writes files."""
    cfg, main = r.cfg, r.dist.main
    columns = metric_columns(r.pipe.val is not None, r.inputs.num_classes > 5)
    hooks: list[H.Hook] = [H.Signals(), H.ProgressBar(cfg.progress and main)]
    ema = None
    if cfg.ema is not None:
        hook = H.EMAHook(r.model, cfg.ema)
        ema = hook.ema
        hooks.append(hook)
    if r.dist.enabled:
        hooks.append(H.Distributed(r.dist))
    hooks.append(H.Checkpoint(columns, write=main, ema=ema, planned_epochs=planned_epochs))
    if main:
        if cfg.curves:  # the plot at the end: most of a second-long run's time (sweeps of many runs turn it off)
            hooks.append(H.Curves())
        if cfg.tensorboard:
            hooks.append(H.TensorBoard(columns))
    hooks.append(H.Console())
    if cfg.patience:
        hooks.append(H.EarlyStopping(cfg.patience))
    if main:
        hooks.append(H.Finished())
    return hooks


def metric_columns(has_val: bool, top5: bool) -> list[str]:
    cols = list(METRIC_COLUMNS)
    if top5:
        cols.append("test_top5")
    if has_val:
        cols += ["val_loss", "val_acc"]
    return cols


def fit(loop: Loop, hooks: list[H.Hook]) -> dict:
    """The loop: epochs of a training pass and an evaluation, the hooks around them (in their
    `order`; the checkpoint saves and restores every hook's state)."""
    hooks = sorted(hooks, key=lambda h: h.order)  # stable: ties keep the order given
    for h in hooks:
        if isinstance(h, H.Checkpoint):
            h.hooks = hooks
    call = _dispatcher(hooks)
    step_hooks = [h for h in hooks if type(h).on_step_end is not H.Hook.on_step_end]
    r, cfg = loop.run, loop.run.cfg
    try:
        call("on_start", loop)
        loop.start = time.perf_counter() - loop.elapsed0
        for epoch in range(loop.start_epoch, cfg.epochs + 1):
            loop.epoch, t0, lr = epoch, time.perf_counter(), r.optimizer.param_groups[0]["lr"]
            call("on_epoch_start", loop)
            fault_point("epoch-start", loop.stop_event)  # a test can pause here and signal at a known instant
            stats = _train_pass(loop, step_hooks)
            call("on_train_end", loop, stats)
            t_train = time.perf_counter() - t0
            row = _evaluate(loop, {"epoch": epoch, "train_loss": stats["loss"], "train_acc": stats["acc"]}, lr)
            now = time.perf_counter()
            row.update(epoch_seconds=now - t0, elapsed_seconds=now - loop.start,
                       examples_per_s=stats["seen"] / max(t_train, 1e-9))
            loop.rows.append(row)
            best = new_best(row, loop.best_score, loop.best_epoch)
            loop.improved = best is not None
            if best is not None:
                loop.best_score, loop.best_epoch = best
            call("on_epoch_end", loop, row)
            if loop.should_stop:
                break
        summary = make_summary(loop)
        call("on_end", loop, summary)
        return summary
    finally:
        call("close", loop)


def _dispatcher(hooks: list[H.Hook]):
    def call(event: str, *args) -> None:
        for h in hooks:
            getattr(h, event)(*args)
    return call


def _evaluate(loop: Loop, row: dict, lr: float) -> dict:
    r, cfg = loop.run, loop.run.cfg
    test = evaluate(loop.evaluated, r.pipe.test, cfg.precision, bool(cfg.channels_last), cfg.tta)
    row.update(test_loss=test["loss"], test_acc=test["acc"], lr=lr, test_top5=test.get("top5"))
    if r.pipe.val is not None:  # an epoch --val-every skips keeps its columns, empty
        val = evaluate(loop.evaluated, r.pipe.val, cfg.precision, bool(cfg.channels_last), cfg.tta) \
            if val_due(cfg, row["epoch"]) else {"loss": None, "acc": None}
        row.update(val_loss=val["loss"], val_acc=val["acc"])
    return row


def _train_pass(loop: Loop, step_hooks: list[H.Hook]) -> dict:
    """One epoch's training pass, with a NaN loss or a signal turned into a message that says
    where the last good checkpoint is."""
    epoch, path = loop.epoch, loop.run_dir.path

    def on_step():
        for h in step_hooks:
            h.on_step_end(loop)
    try:
        loss, acc, seen = train_epoch(loop.run.step, loop.run.pipe.train, epoch, on_step, loop.stop_event,
                                      log_every=loop.run.cfg.log_every, log=loop.log)
    except TrainingError as exc:
        last = f"the last good checkpoint (epoch {epoch - 1}) is in {path}" if epoch > 1 \
            else f"no epoch finished; {path} holds the config only"
        raise TrainingError(f"training stopped: {exc}. Lower --lr, add normalization or "
                            f"--clip-grad; {last}") from None
    except Interrupted:
        for h in step_hooks:  # clear the progress bar first, so the message gets its own line
            if hasattr(h, "close"):
                h.close(loop)
        loop.log(f"normlab: interrupted in epoch {epoch}; resume with "
                 f"`normlab train --resume {path}` (continues after epoch {epoch - 1})")
        raise KeyboardInterrupt from None
    return {"loss": loss, "acc": acc, "seen": seen}


def train_epoch(step: Step, loader: DeviceLoader, epoch: int, on_step: Callable[[], object],
                stop: threading.Event, check_every: Optional[int] = None, log_every: Optional[int] = None,
                log=print):
    """One pass over the training batches; (mean loss, accuracy, examples).

    A non-finite loss stops training, naming the step. On a CPU each step's loss is read at
    once (cheap); on a GPU reading it would stall the queue of kernels every step, so the first
    bad step is recorded on the device and read every `check_every` steps (default 32).
    """
    step.model.train()
    dev = loader.x.device
    if check_every is None:
        check_every = 1 if dev.type == "cpu" else 32
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    bad_step = torch.full((), -1, dtype=torch.int64, device=dev)
    bad_loss = torch.zeros((), device=dev)
    seen, last = 0, len(loader)
    for i, (xb, yb) in enumerate(loader, start=1):
        out, loss = step(xb, yb)
        if check_every == 1:
            if not math.isfinite(loss.item()):
                raise TrainingError(f"the loss became {loss.item()} at epoch {epoch}, step {i}")
        else:
            first = (bad_step < 0) & ~torch.isfinite(loss.detach())
            bad_step = torch.where(first, i, bad_step)
            bad_loss = torch.where(first, loss.detach().float(), bad_loss)
            if (i % check_every == 0 or i == last) and int(bad_step) >= 0:
                raise TrainingError(f"the loss became {bad_loss.item()} at epoch {epoch}, step {int(bad_step)}")
        loss_sum += loss.detach().double() * len(yb)
        correct += (out.detach().argmax(1) == yb).sum()
        seen += len(yb)
        on_step()
        if log_every and i % log_every == 0:  # reads the loss: a sync on a GPU, so only every N steps
            log(f"epoch {epoch}, step {i}/{last}, loss {loss.item():.4f}")
        if stop.is_set():
            raise Interrupted()
    return loss_sum.item() / seen, correct.item() / seen, seen


def make_summary(loop: Loop) -> dict:
    r = loop.run
    return run_summary(r.cfg, loop.rows, loop.best_epoch, r.pipe.val is not None,
                       time.perf_counter() - loop.start, count_params(r.model), r.device, r.dist.world)


def run_summary(cfg: TrainConfig, rows: list[dict], best_epoch: int, has_val: bool, wall_seconds: float,
                parameters: int, device: torch.device, world: int = 1) -> dict:
    """summary.json of a finished run: its result, the epoch selected, where and with what it ran
    (a run trained alone and one trained in a seed batch write the same keys)."""
    best = next(row for row in rows if row["epoch"] == best_epoch)
    return {
        "model": cfg.model, "dataset": cfg.dataset, "seed": cfg.seed, "epochs": rows[-1]["epoch"],
        "final_test_acc": rows[-1]["test_acc"], "final_test_loss": rows[-1]["test_loss"],
        "final_train_acc": rows[-1]["train_acc"], "final_train_loss": rows[-1]["train_loss"],
        "best_test_acc": max(row["test_acc"] for row in rows),
        "selected_epoch": best_epoch, "selected_by": "val_acc" if has_val else "test_acc",
        "selected_test_acc": best["test_acc"],
        "wall_seconds": wall_seconds, "parameters": parameters,
        "device": str(device), "threads": torch.get_num_threads(), "versions": versions(),
        "world_size": world, "replicas_identical": True,
    }


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import numpy

    from .._version import __version__

    try:  # from the package metadata: importing torchvision would cost a second per run
        tv = version("torchvision")
    except PackageNotFoundError:
        tv = None
    return {"normlab": __version__, "torch": torch.__version__, "torchvision": tv,
            "numpy": numpy.__version__, "python": platform.python_version()}
