"""The training loop: config in, run directory out.

Read top to bottom: resolve the device, load the data once onto it, build the model, then per
epoch one pass of training and one of evaluation, a printed line and a metrics row.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import TrainConfig, make_config
from ..data import pipeline
from ..data.loader import DeviceLoader
from ..errors import ConfigError
from ..models.registry import create_model, get_spec
from .optim import make_optimizer
from .plots import plot_curves
from .schedule import make_scheduler
from .rundir import RunDir


@dataclass
class Result:
    run_dir: Path
    config: TrainConfig
    metrics: list[dict]
    summary: dict
    model: torch.nn.Module


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device: mps was asked for but is not available here; use --device cpu or auto")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device: unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill the model's own defaults (norm, act) and the run directory into the config."""
    spec = get_spec(cfg.model)
    out = cfg.out or str(Path("runs") / f"{cfg.model}-{cfg.dataset}-{datetime.now():%Y%m%d-%H%M%S}")
    return cfg.replace(norm=cfg.norm or spec.default_norm, act=cfg.act or spec.default_act, out=out)


def build_model(cfg: TrainConfig, input_shape, num_classes: int) -> torch.nn.Module:
    """The model a config describes, with the seed applied so initial weights are reproducible."""
    spec = get_spec(cfg.model)
    model_kw = {k: getattr(cfg, k) for k in ("depth", "width") if getattr(cfg, k) is not None}
    unknown = [k for k in model_kw if k not in spec.defaults]
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: model {cfg.model!r} has no such option "
                          f"(it takes: {', '.join(sorted(spec.defaults)) or 'none'})")
    torch.manual_seed(cfg.seed)
    return create_model(cfg.model, num_classes=num_classes, in_channels=input_shape[0],
                        input_size=input_shape[1:], norm=cfg.norm, act=cfg.act, dropout=cfg.dropout,
                        init=cfg.init, norm_impl=cfg.norm_impl, **model_kw)


def has_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) or type(m).__name__.startswith("BatchNorm")
               for m in model.modules())


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DeviceLoader) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy over the loader, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=loader.x.device)
    correct = torch.zeros((), dtype=torch.int64, device=loader.x.device)
    for xb, yb in loader:
        out = model(xb)
        loss_sum += F.cross_entropy(out, yb, reduction="sum").double()
        correct += (out.argmax(1) == yb).sum()
    model.train(was_training)
    n = loader.num_samples
    return loss_sum.item() / n, correct.item() / n


def train_epoch(model, loader: DeviceLoader, optimizer, scheduler, bar) -> tuple[float, float, int]:
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=loader.x.device)
    correct = torch.zeros((), dtype=torch.int64, device=loader.x.device)
    seen = 0
    for xb, yb in loader:
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        # Accumulate on the device: no host sync per step.
        loss_sum += loss.detach().double() * len(yb)
        correct += (out.detach().argmax(1) == yb).sum()
        seen += len(yb)
        bar.update(1)
    loss_mean = loss_sum.item() / seen
    if not math.isfinite(loss_mean):
        raise FloatingPointError("training loss is not finite")
    return loss_mean, correct.item() / seen, seen


def epoch_line(row: dict, epochs: int) -> str:
    return (f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.3f}  train acc {row['train_acc']:.3f}  "
            f"test acc {row['test_acc']:.3f}  {row['examples_per_s']:,.0f} ex/s  {row['epoch_seconds']:.1f} s")


def versions() -> dict:
    import numpy
    import torchvision

    from .. import __version__

    return {"normlab": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def train(config: Union[TrainConfig, dict, None] = None, log=print) -> Result:
    """Train the model a config describes and write its run directory.

    `config` is a TrainConfig or a dict of options (the keys of `normlab train --help`).
    """
    cfg = resolve_config(make_config(config))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    data, preprocess = pipeline.load(cfg)
    model = build_model(cfg, data.shape, data.num_classes).to(device)
    pipe = pipeline.build(cfg, device, drop_single=has_batchnorm(model), data=data, preprocess=preprocess)
    train_loader, test_loader = pipe.train, pipe.test
    run = RunDir.create(cfg.out)
    run.write_json("config.json", cfg.to_dict())
    run.write_json("preprocess.json", preprocess)

    optimizer = make_optimizer(model.parameters(), cfg)

    steps = len(train_loader)
    scheduler = make_scheduler(optimizer, cfg.schedule, cfg.epochs * steps, round(cfg.warmup * steps))

    log(f"normlab: {cfg.model} (norm={cfg.norm}, act={cfg.act}, {count_params(model):,} parameters) "
        f"on {cfg.dataset} ({len(data.train_y):,} train / {len(data.test_y):,} test), device {device}, "
        f"run dir {run.path}")
    rows: list[dict] = []
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        with tqdm(total=len(train_loader), desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                  disable=None if cfg.progress else True, file=sys.stderr) as bar:
            try:
                train_loss, train_acc, seen = train_epoch(model, train_loader, optimizer, scheduler, bar)
            except FloatingPointError:
                raise ConfigError(f"training diverged in epoch {epoch}: the loss became NaN or inf "
                                  f"(lower --lr, or add normalization); run directory {run.path}") from None
        t_train = time.perf_counter() - t0
        test_loss, test_acc = evaluate(model, test_loader)
        now = time.perf_counter()
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
               "test_acc": test_acc, "lr": lr, "epoch_seconds": now - t0,
               "elapsed_seconds": now - start, "examples_per_s": seen / max(t_train, 1e-9)}
        rows.append(row)
        run.write_metrics(rows)
        log(epoch_line(row, cfg.epochs))

    run.save_weights(model.state_dict())
    best = max(rows, key=lambda r: r["test_acc"])
    summary = {
        "model": cfg.model, "dataset": cfg.dataset, "seed": cfg.seed, "epochs": cfg.epochs,
        "final_test_acc": rows[-1]["test_acc"], "final_test_loss": rows[-1]["test_loss"],
        "final_train_acc": rows[-1]["train_acc"], "final_train_loss": rows[-1]["train_loss"],
        "best_test_acc": best["test_acc"], "best_epoch": best["epoch"],
        "wall_seconds": time.perf_counter() - start, "parameters": count_params(model),
        "device": str(device), "threads": torch.get_num_threads(), "versions": versions(),
    }
    run.write_json("summary.json", summary)
    plot_curves(rows, run / "curves.png", title=f"{cfg.model} on {cfg.dataset}")
    log(f"done: test acc {summary['final_test_acc']:.4f} (best {summary['best_test_acc']:.4f} at epoch "
        f"{summary['best_epoch']}) in {summary['wall_seconds']:.1f} s -> {run.path}")
    return Result(run.path, cfg, rows, summary, model)
