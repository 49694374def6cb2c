"""The training loop: config in, run directory out.

Read top to bottom: resolve the device, load the data once onto it, build the model, then per
epoch one pass of training and one of evaluation, a printed line, a metrics row and a
checkpoint (last, and best). A resumed run restores every piece of state that pass depends on,
so it continues bit-for-bit.
"""

from __future__ import annotations

import math
import platform
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from tqdm.auto import tqdm

from ..config import TrainConfig, make_config
from ..data import pipeline
from ..data.loader import DeviceLoader
from ..device import resolve_device
from ..errors import ConfigError, TrainingError
from ..evaluation import evaluate
from ..plots import plot_curves
from ..rundir import METRIC_COLUMNS, RunDir
from . import checkpoint, determinism, distributed
from .build import build_model, has_batchnorm, resolve_config
from .optim import make_optimizer
from .schedule import make_scheduler
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


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_epoch(step: Step, loader: DeviceLoader, epoch: int, bar, stop: threading.Event,
                check_every: Optional[int] = None):
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
        bar.update(1)
        if stop.is_set():
            raise Interrupted()
    return loss_sum.item() / seen, correct.item() / seen, seen


def epoch_line(row: dict, epochs: int) -> str:
    return (f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.3f}  train acc {row['train_acc']:.3f}  "
            f"test acc {row['test_acc']:.3f}  {row['examples_per_s']:,.0f} ex/s  {row['epoch_seconds']:.1f} s")


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


@contextmanager
def stop_on_signals():
    """SIGINT/SIGTERM set an event that the loop checks after each step; the checkpoint of the
    last complete epoch is on disk, so the run can be resumed from there."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _save_epoch(run: RunDir, model, evaluated, step: Step, improved: bool, state: dict) -> None:
    """Weights first, then state: whatever state.pt says, the weights it refers to exist."""
    if improved:
        run.save_weights(evaluated.state_dict(), "best.safetensors")
    run.save_weights(model.state_dict(), "last.safetensors")
    if step.ema is not None:
        run.save_weights(evaluated.state_dict(), "ema.safetensors")
    checkpoint.save_state(run / checkpoint.STATE_FILE, state)


def tensorboard_writer(cfg: TrainConfig, run: RunDir):
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("tensorboard: the tensorboard package is not installed; "
                          "pip install 'normlab[tensorboard]' or drop --tensorboard") from None
    return SummaryWriter(log_dir=str(run / "tensorboard"))


def metric_columns(has_val: bool, top5: bool) -> list[str]:
    cols = list(METRIC_COLUMNS)
    if top5:
        cols.append("test_top5")
    if has_val:
        cols += ["val_loss", "val_acc"]
    return cols


def train(config: Union[TrainConfig, dict, None] = None, log=print, resume=None,
          _stop_after_epoch: Optional[int] = None) -> Result:
    """Train the model a config describes and write its run directory.

    `config` is a TrainConfig or a dict of options (the keys of `normlab train --help`).
    `resume`: a run directory to continue from its last complete epoch (config from the run,
    except `epochs`, which `config` may raise). Under torchrun, trains data-parallel
    (see train/distributed.py).
    """
    d = distributed.Dist()
    try:
        with determinism.restored():
            return _train(config, log, resume, _stop_after_epoch, d)
    finally:
        distributed.teardown(d)


def _train(config, log, resume, _stop_after_epoch, d: distributed.Dist) -> Result:
    if resume is not None:
        run = RunDir.open(resume, required=("config.json", "preprocess.json", "last.safetensors",
                                            checkpoint.STATE_FILE))
        saved = run.read_json("config.json")
        allowed = ("epochs", "progress", "device", "threads")
        extra = {k: v for k, v in (config or {}).items() if k in allowed} if isinstance(config, dict) else {}
        cfg = make_config(saved, extra)
    else:
        cfg = resolve_config(make_config(config))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if cfg.deterministic:
        determinism.enable(device)
    dd, device = distributed.setup(cfg, device)
    d.rank, d.world, d.local_rank = dd.rank, dd.world, dd.local_rank
    if not d.main:
        log = lambda *a: None  # noqa: E731  (rank 0 speaks for all)
    data, preprocess = pipeline.load(cfg)
    model = build_model(cfg, tuple(preprocess.get("model_input_shape", data.shape)), data.num_classes).to(device)
    if cfg.precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision: fp16 autocast needs a CUDA device; on CPU use --precision bf16 or fp32")
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    drop_single = has_batchnorm(model)
    if d.enabled:
        # One global batch of world x batch_size, the same on every rank; each takes its slice.
        pipe = pipeline.build(cfg.replace(batch_size=cfg.batch_size * d.world), device, drop_single,
                              data=data, preprocess=preprocess)
        pipe.train = distributed.ShardedLoader(pipe.train, d, drop_single)
    else:
        pipe = pipeline.build(cfg, device, drop_single=drop_single, data=data, preprocess=preprocess)
    model, forward = distributed.wrap_model(model, d, device, cfg.sync_bn)
    patience = getattr(cfg, "patience", None)
    if patience and pipe.val is None:
        raise ConfigError("patience: early stopping needs a validation split (--val-split 0.1); "
                          "stopping on the test set would leak it into model selection")
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = len(pipe.train)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)

    rows: list[dict] = []
    start_epoch, elapsed0, best_score, best_epoch = 1, 0.0, -1.0, 0
    if resume is not None:
        state = checkpoint.load_state(run / checkpoint.STATE_FILE)
        model.load_state_dict(run.load_weights("last.safetensors"))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"], pipe.train.generator)
        start_epoch, elapsed0 = state["epoch"] + 1, state["elapsed"]
        best_score, best_epoch = state["best_score"], state["best_epoch"]
        rows = [r for r in run.read_metrics() if r["epoch"] <= state["epoch"]]
        if start_epoch > cfg.epochs:
            raise ConfigError(f"{str(run.path)!r} already finished {state['epoch']} epochs; "
                              f"to train longer pass --epochs N with N > {state['epoch']}")
        if d.main:
            run.write_json("config.json", cfg.to_dict())
        log(f"normlab: resuming {run.path} after epoch {state['epoch']}")
    elif d.main:
        run = RunDir.create(cfg.out)
        run.write_json("config.json", cfg.to_dict())
        run.write_json("preprocess.json", preprocess)
    else:
        run = RunDir(cfg.out)

    board = tensorboard_writer(cfg, run) if d.main else None
    step = Step(model, optimizer, scheduler, cfg, forward=torch.compile(forward) if cfg.compile else forward)
    # With --ema the averaged weights are the ones evaluated, selected and saved as weights.safetensors.
    evaluated = step.ema.shadow if step.ema is not None else model
    if resume is not None and step.ema is not None:
        step.ema.shadow.load_state_dict(run.load_weights("ema.safetensors"))
    columns = metric_columns(pipe.val is not None, data.num_classes > 5)
    if cfg.channels_last and device.type == "cpu" and cfg.norm in ("gn", "in"):
        # measured in benchmarks/norms.py: 2x (gn) and 3x (in) slower per layer in NHWC on CPU
        log(f"normlab: note: --channels-last makes {cfg.norm!r} layers slower on a CPU "
            f"(docs/norms.md); it pays for conv-heavy nets with bn, ln or no norm")
    log(f"normlab: {cfg.model} (norm={cfg.norm}, act={cfg.act}, {count_params(model):,} parameters) "
        f"on {cfg.dataset} ({len(pipe.train.y):,} train / {len(pipe.test.y):,} test), device {device}, "
        f"run dir {run.path}")
    start = time.perf_counter() - elapsed0
    with stop_on_signals() as stop:
        for epoch in range(start_epoch, cfg.epochs + 1):
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            with tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                      disable=None if cfg.progress and d.main else True, file=sys.stderr) as bar:
                try:
                    train_loss, train_acc, seen = train_epoch(step, pipe.train, epoch, bar, stop)
                except TrainingError as exc:
                    last = f"the last good checkpoint (epoch {epoch - 1}) is in {run.path}" if epoch > 1 \
                        else f"no epoch finished; {run.path} holds the config only"
                    raise TrainingError(f"training stopped: {exc}. Lower --lr, add normalization or "
                                        f"--clip-grad; {last}") from None
                except Interrupted:
                    log(f"normlab: interrupted in epoch {epoch}; resume with "
                        f"`normlab train --resume {run.path}` (continues after epoch {epoch - 1})")
                    raise KeyboardInterrupt from None
            if d.enabled:
                loss_sum, correct, seen = distributed.all_sum([train_loss * seen, train_acc * seen, seen], d, device)
                train_loss, train_acc, seen = loss_sum / seen, correct / seen, int(seen)
            t_train = time.perf_counter() - t0
            test = evaluate(evaluated, pipe.test, cfg.precision, cfg.channels_last, cfg.tta)
            row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "test_loss": test["loss"],
                   "test_acc": test["acc"], "lr": lr, "test_top5": test.get("top5")}
            score = test["acc"]
            if pipe.val is not None:
                val = evaluate(evaluated, pipe.val, cfg.precision, cfg.channels_last, cfg.tta)
                row.update(val_loss=val["loss"], val_acc=val["acc"])
                score = val["acc"]
            now = time.perf_counter()
            row.update(epoch_seconds=now - t0, elapsed_seconds=now - start,
                       examples_per_s=seen / max(t_train, 1e-9))
            rows.append(row)
            improved = score > best_score
            if improved:
                best_score, best_epoch = score, epoch
            if d.main:
                _save_epoch(run, model, evaluated, step, improved, {
                    "epoch": epoch, "step": epoch * steps_per_epoch, "elapsed": now - start,
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": checkpoint.rng_state(pipe.train.generator),
                    "best_score": best_score, "best_epoch": best_epoch})
                run.write_metrics(rows, columns)
            if board is not None:

                for k in columns[1:]:
                    if row.get(k) is not None:
                        board.add_scalar(k, row[k], epoch)
                board.flush()
            log(epoch_line(row, cfg.epochs))
            if _stop_after_epoch == epoch:
                raise KeyboardInterrupt
            if patience and epoch - best_epoch >= patience:
                log(f"early stopping: no validation improvement for {patience} epochs (best epoch {best_epoch})")
                break

    if board is not None:
        board.close()
    identical = distributed.replicas_identical(model, d)
    best = next(r for r in rows if r["epoch"] == best_epoch)
    summary = {
        "model": cfg.model, "dataset": cfg.dataset, "seed": cfg.seed, "epochs": rows[-1]["epoch"],
        "final_test_acc": rows[-1]["test_acc"], "final_test_loss": rows[-1]["test_loss"],
        "final_train_acc": rows[-1]["train_acc"], "final_train_loss": rows[-1]["train_loss"],
        "best_test_acc": max(r["test_acc"] for r in rows),
        "selected_epoch": best_epoch, "selected_by": "val_acc" if pipe.val is not None else "test_acc",
        "selected_test_acc": best["test_acc"],
        "wall_seconds": time.perf_counter() - start, "parameters": count_params(model),
        "device": str(device), "threads": torch.get_num_threads(), "versions": versions(),
        "world_size": d.world, "replicas_identical": identical,
    }
    if not identical:
        raise TrainingError("the processes' model replicas diverged (their parameters differ); "
                            "please report this with the run's config.json")
    if d.main:
        run.save_weights(evaluated.state_dict())
        run.write_json("summary.json", summary)
        plot_curves(rows, run / "curves.png", title=f"{cfg.model} on {cfg.dataset}")
    log(f"done: test acc {summary['final_test_acc']:.4f} (best {summary['best_test_acc']:.4f}) "
        f"in {summary['wall_seconds']:.1f} s -> {run.path}")
    return Result(run.path, cfg, rows, summary, evaluated)
