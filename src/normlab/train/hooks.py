"""Hooks: each concern of a training run beside the loop, in a small object of its own.

The loop (trainer.fit) calls every hook's methods at fixed points, hooks in ascending `order`
(ties in the order given):

  on_start(loop)              once, after the run is built and its directory exists
  on_epoch_start(loop)        before each epoch's training pass
  on_step_end(loop)           after each optimizer step
  on_train_end(loop, stats)   after the training pass; stats = {"loss", "acc", "seen"}, may be changed
  on_epoch_end(loop, row)     after evaluation; row is the epoch's metrics row
  on_end(loop, summary)       once, after the last epoch, with the run's summary
  close(loop)                 always, last, also when the run stops with an error

A hook may set `loop.should_stop = True` (the loop ends after the current epoch) or raise.
`Loop` (trainer.py) is what they see: the built run, the run directory, the loop's own state
(epoch, metrics rows so far, best epoch) and `evaluated`, the model that is scored and saved (the
EMA's, with --ema).

A hook owns its state: what `state_dict()` returns when the epoch is committed is saved with its
checkpoint and given back to `load_state_dict()` when the run is resumed, so a hook of one's own
(a counter, a schedule of its own) continues where it stopped, as the built-in ones do. That is
why a user's hook runs before the checkpoint by default: what it changes at an epoch's end is in
that epoch's checkpoint. A hook that must see the epoch on disk takes a later `order` (and should
then change no state of its own at the epoch's end).

The built-in order, and why it matters:
  ORDER_SIGNALS    0  the signal handlers are in place before anything else runs
  ORDER_PROGRESS  10  the bar opens before the step hooks and closes before any line is printed
  ORDER_EMA       20  the average is updated before the checkpoint saves it
  ORDER_DIST      30  the training pass's numbers are summed over processes before they are logged
  ORDER_USER      35  a user's hooks, unless they say otherwise: their epoch-end state is committed
  ORDER_CHECKPOINT 40 an epoch is committed (every hook's state with it) before it is reported
  ORDER_FILES     50  curves.png, TensorBoard: from the committed rows
  ORDER_CONSOLE   60  the epoch line, once its checkpoint is on disk
  ORDER_STOPPING  70  early stopping decides after the epoch is saved and shown (it keeps no state)
  ORDER_FINISHED 1000 summary.json, after every other file of the run
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any, Optional

from ..errors import CheckpointError, ConfigError, TrainingError
from ..faults import point as fault_point
from ..models.from_config import slow_channels_last
from ..plots import plot_curves
from . import checkpoint, distributed
from .ema import EMA

ORDER_SIGNALS, ORDER_PROGRESS, ORDER_EMA, ORDER_DIST, ORDER_USER, ORDER_CHECKPOINT = 0, 10, 20, 30, 35, 40
ORDER_FILES, ORDER_CONSOLE, ORDER_STOPPING, ORDER_FINISHED = 50, 60, 70, 1000


class Hook:
    """The base: every method does nothing, so a hook overrides only what it needs."""

    order: int = ORDER_USER

    def state_dict(self) -> dict:
        """What this hook needs to continue after --resume (plain values and tensors, as a
        checkpoint holds them: loaded with weights_only=True); {} for none."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Continue from what `state_dict()` returned at the last committed epoch."""

    def on_start(self, loop) -> None: ...

    def on_epoch_start(self, loop) -> None: ...

    def on_step_end(self, loop) -> None: ...

    def on_train_end(self, loop, stats: dict) -> None: ...

    def on_epoch_end(self, loop, row: dict) -> None: ...

    def on_end(self, loop, summary: dict) -> None: ...

    def close(self, loop) -> None: ...


class Checkpoint(Hook):
    """Restores a resumed run from its last committed epoch; commits each epoch at its end.

    `save_epoch` is the one place an epoch's state reaches the disk, through
    checkpoint.commit_epoch: every file of the epoch in a hidden folder, renamed into place last,
    so an epoch is on disk entirely or not at all. Only rank 0 writes (`write`)."""

    order = ORDER_CHECKPOINT

    def __init__(self, columns: list[str], write: bool = True, ema: Optional[EMA] = None,
                 planned_epochs: Optional[int] = None):
        self.columns, self.write, self.ema = columns, write, ema
        self.planned_epochs = planned_epochs  # a resumed run's --epochs as its config.json had it
        self.hooks: list[Hook] = []  # every hook of the run, whose state is saved and restored here

    def on_start(self, loop) -> None:
        if loop.resume:
            self.restore(loop)

    def restore(self, loop) -> None:
        run, r = loop.run_dir, loop.run
        ckpt = checkpoint.load_last_complete_epoch(run.path, ema=self.ema is not None)
        assert ckpt is not None  # loop.resume: an epoch was committed
        state = ckpt.state
        r.model.load_state_dict(ckpt.weights(checkpoint.MODEL))
        r.optimizer.load_state_dict(state["optimizer"])
        r.scheduler.load_state_dict(state["scheduler"])
        replan_schedule(loop, self.planned_epochs)
        checkpoint.set_rng_state(state["rng"], r.pipe.train.generator)
        if self.ema is not None:
            self.ema.shadow.load_state_dict(ckpt.weights(checkpoint.EMA_FILE))
        saved = state.get("hooks") or {}  # absent in checkpoints written before hooks kept state
        for key, hook in hook_keys(self.hooks).items():
            if key in saved:
                hook.load_state_dict(saved[key])
        loop.start_epoch, loop.elapsed0 = state["epoch"] + 1, state["elapsed"]
        loop.best_score, loop.best_epoch = state["best_score"], state["best_epoch"]
        loop.rows = [dict(row) for row in state["rows"]]
        patience = r.cfg.patience
        finished = loop.start_epoch > r.cfg.epochs or bool(patience and state["epoch"] - loop.best_epoch >= patience)
        if finished and _summary_epochs(run) == state["epoch"]:
            raise ConfigError(f"{str(run.path)!r} already finished {state['epoch']} epochs; "
                              f"to train longer pass --epochs N with N > {state['epoch']}")
        if finished:  # every epoch is done: only the end-of-run files are missing
            loop.start_epoch = r.cfg.epochs + 1
        if self.write:
            checkpoint.after_commit(run.path, dict(state, columns=self.columns))  # metrics.csv repaired
            run.write_json("config.json", r.cfg.to_dict())
        loop.log(f"normlab: {run.path} finished its {state['epoch']} epochs; writing its results" if finished
                 else f"normlab: resuming {run.path} after epoch {state['epoch']}")

    def on_epoch_end(self, loop, row: dict) -> None:
        if self.write:
            self.save_epoch(loop, row)

    def save_epoch(self, loop, row: dict) -> None:
        r = loop.run
        checkpoint.commit_epoch(
            loop.run_dir.path, loop.epoch, r.model.state_dict(),
            {"epoch": loop.epoch, "step": loop.epoch * r.steps_per_epoch, "elapsed": row["elapsed_seconds"],
             "optimizer": r.optimizer.state_dict(), "scheduler": r.scheduler.state_dict(),
             "rng": checkpoint.rng_state(r.pipe.train.generator),
             "best_score": loop.best_score, "best_epoch": loop.best_epoch, "rows": loop.rows,
             "columns": self.columns,
             "hooks": {k: s for k, h in hook_keys(self.hooks).items() if (s := h.state_dict())}},
            best=loop.evaluated.state_dict() if loop.improved else None,
            ema=loop.evaluated.state_dict() if self.ema is not None else None)

    def on_end(self, loop, summary: dict) -> None:
        if self.write:
            loop.run_dir.save_weights(loop.evaluated.state_dict())


def hook_keys(hooks: list[Hook]) -> dict[str, Hook]:
    """A stable name per hook for its saved state: the class name, numbered from the second of a
    kind on (`Counter`, `Counter#2`)."""
    keys: dict[str, Hook] = {}
    for h in hooks:
        name = type(h).__qualname__
        key, n = name, 1
        while key in keys:
            n += 1
            key = f"{name}#{n}"
        keys[key] = h
    return keys


def _summary_epochs(run) -> Optional[int]:
    """The epochs a run's summary.json reports; None if it has none or it is damaged."""
    try:
        return run.read_json("summary.json").get("epochs") if (run / "summary.json").is_file() else None
    except (CheckpointError, AttributeError):
        return None


class Finished(Hook):
    """summary.json, written after every other file of the run: its presence says the run is
    finished and usable (a sweep skips it, --resume refuses it)."""

    order = ORDER_FINISHED

    def on_end(self, loop, summary: dict) -> None:
        loop.run_dir.write_json("summary.json", summary)


class Curves(Hook):
    """curves.png at the end. (metrics.csv is written by Checkpoint, right after each epoch's
    commit, from the committed rows.)"""

    order = ORDER_FILES

    def on_end(self, loop, summary: dict) -> None:
        cfg = loop.run.cfg
        plot_curves(loop.rows, loop.run_dir / "curves.png", title=f"{cfg.model} on {cfg.dataset}",
                    classes=loop.run.pipe.num_classes)
        fault_point("finish curves.png")


class TensorBoard(Hook):
    """The metrics row of each epoch as scalars in RUN_DIR/tensorboard (--tensorboard)."""

    order = ORDER_FILES

    def __init__(self, columns: list[str]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("tensorboard: the tensorboard package is not installed; "
                              "pip install tensorboard or drop --tensorboard") from None
        self.columns, self.writer_class = columns, SummaryWriter
        self.writer: Optional[SummaryWriter] = None

    def on_start(self, loop) -> None:
        self.writer = self.writer_class(log_dir=str(loop.run_dir / "tensorboard"))

    def on_epoch_end(self, loop, row: dict) -> None:
        assert self.writer is not None  # opened in on_start
        for k in self.columns[1:]:
            if row.get(k) is not None:
                self.writer.add_scalar(k, row[k], loop.epoch)
        self.writer.flush()

    def close(self, loop) -> None:
        if self.writer is not None:
            self.writer.close()


class EarlyStopping(Hook):
    """Stop after `patience` epochs without a better validation score (--patience)."""

    order = ORDER_STOPPING

    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_end(self, loop, row: dict) -> None:
        if loop.epoch - loop.best_epoch >= self.patience:
            loop.log(f"early stopping: no validation improvement for {self.patience} epochs "
                     f"(best epoch {loop.best_epoch})")
            loop.should_stop = True


class EMAHook(Hook):
    """An exponential moving average of the weights (--ema), updated after every step; the loop
    evaluates, selects and saves the average (`loop.evaluated = hook.ema.shadow`; the
    checkpoint saves and restores it as ema.safetensors)."""

    order = ORDER_EMA

    def __init__(self, model, decay: float):
        self.ema = EMA(model, decay)

    def on_start(self, loop) -> None:
        loop.evaluated = self.ema.shadow

    def on_step_end(self, loop) -> None:
        self.ema.update()


class Console(Hook):
    """The printed lines: what is trained where, one line per epoch, and the result."""

    order = ORDER_CONSOLE

    def on_start(self, loop) -> None:
        r, cfg = loop.run, loop.run.cfg
        if cfg.channels_last and r.device.type == "cpu" and slow_channels_last(cfg.norm):
            # measured in benchmarks/norms.py: 2x (gn) and 3x (in) slower per layer in NHWC on CPU
            loop.log(f"normlab: note: --channels-last makes {cfg.norm!r} layers slower on a CPU "
                     f"(docs/norms.md); it pays for conv-heavy nets with bn, ln or no norm")
        params = sum(p.numel() for p in r.model.parameters())
        loop.log(f"normlab: {cfg.model} (norm={cfg.norm}, act={cfg.act}, {params:,} parameters) "
                 f"on {cfg.dataset} ({len(r.pipe.train.y):,} train / {len(r.pipe.test.y):,} test), "
                 f"device {r.device}, run dir {loop.run_dir.path}")

    def on_epoch_end(self, loop, row: dict) -> None:
        loop.log(epoch_line(row, loop.run.cfg.epochs))

    def on_end(self, loop, summary: dict) -> None:
        loop.log(f"done: test acc {summary['final_test_acc']:.4f} (best {summary['best_test_acc']:.4f}) "
                 f"in {summary['wall_seconds']:.1f} s -> {loop.run_dir.path}")


def epoch_line(row: dict, epochs: int) -> str:
    return (f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.3f}  train acc {row['train_acc']:.3f}  "
            f"test acc {row['test_acc']:.3f}  {row['examples_per_s']:,.0f} ex/s  {row['epoch_seconds']:.1f} s")


def replan_schedule(loop, planned) -> None:
    """A run extended with --resume --epochs M (it was planned for N) continues on the schedule
    of an M-epoch run: the lr is where an M-epoch run is at this step, at once (not from the
    next step on), and the log says so. For a linear or cosine schedule that is a jump up from
    about 0 at the end of the old plan: extending a decayed run warms it up again."""
    r = loop.run
    if planned is None or planned == r.cfg.epochs or r.cfg.schedule == "constant":
        return
    sched = r.scheduler
    old = r.optimizer.param_groups[0]["lr"]
    # Every schedule here is a LambdaLR: lr = base_lr x factor(step), so the re-planned lr is its
    # factor at this step. (get_last_lr() says the old plan's lr until the next step; nothing
    # here reads it, and the next step recomputes it from the lambdas.)
    for group, base, factor in zip(r.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
        group["lr"] = base * factor(sched.last_epoch)
    loop.log(f"normlab: the {r.cfg.schedule} schedule is re-planned for {r.cfg.epochs} epochs (it was {planned}), "
             f"as if the run had started with --epochs {r.cfg.epochs}: lr {old:.3g} -> "
             f"{r.optimizer.param_groups[0]['lr']:.3g}")


class ProgressBar(Hook):
    """A tqdm bar per epoch on stderr (--progress; off where stderr is not a terminal), with
    the whole run's remaining time beside the epoch's own ETA from the second epoch on."""

    order = ORDER_PROGRESS

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: Optional[Any] = None
        self.started: Optional[float] = None
        self.first_epoch: Optional[int] = None

    def on_epoch_start(self, loop) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=loop.run.steps_per_epoch, desc=f"epoch {loop.epoch}/{loop.run.cfg.epochs}",
                        leave=False, disable=None if self.enabled else True, file=sys.stderr)
        left = self.run_left(loop.epoch, loop.run.cfg.epochs, time.perf_counter())
        if left is not None:
            self.bar.set_postfix_str(f"run {tqdm.format_interval(left)} left", refresh=False)

    def run_left(self, epoch: int, epochs: int, now: float) -> Optional[float]:
        """Seconds left in the run at the start of `epoch`: the mean epoch time so far (this
        session's epochs; a resumed run starts counting again) times the epochs still to go."""
        if self.started is None or self.first_epoch is None:
            self.started, self.first_epoch = now, epoch
            return None
        done = epoch - self.first_epoch
        return (now - self.started) / done * (epochs - epoch + 1)

    def on_step_end(self, loop) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_train_end(self, loop, stats: dict) -> None:
        self.close(loop)

    def close(self, loop) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Signals(Hook):
    """SIGINT/SIGTERM set `loop.stop_event`, which the loop checks after each step; the checkpoint
    of the last complete epoch is on disk, so the run can be resumed from there."""

    order = ORDER_SIGNALS

    def __init__(self):
        self.old: dict = {}

    def on_start(self, loop) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self.old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in self.old:
            signal.signal(s, lambda *_: loop.stop_event.set())

    def close(self, loop) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)
        self.old = {}


class Distributed(Hook):
    """Under torchrun: the training pass's loss and accuracy summed over the processes, and a
    check at the end that the model replicas stayed identical."""

    order = ORDER_DIST

    def __init__(self, dist: distributed.Dist):
        self.dist = dist

    def on_train_end(self, loop, stats: dict) -> None:
        loss_sum, correct, seen = distributed.all_sum(
            [stats["loss"] * stats["seen"], stats["acc"] * stats["seen"], stats["seen"]], self.dist, loop.run.device)
        stats.update(loss=loss_sum / seen, acc=correct / seen, seen=int(seen))

    def on_end(self, loop, summary: dict) -> None:
        identical = distributed.replicas_identical(loop.run.model, self.dist)
        summary["replicas_identical"] = identical
        if not identical:
            raise TrainingError("the processes' model replicas diverged (their parameters differ); "
                                "please report this with the run's config.json")
