"""Seed-batched training: the S seeds of one config trained together as one stacked model.

Every seed keeps what its separate run has (docs/training.md, "Several seeds at once"):
  - its initial weights: its model is built by build.build_model with its own seed, then
    stacked (models/stacked.py), so the weights are the separate run's by construction;
  - its data order and augmentation: its own loader generator, seeded as the separate run's;
  - its dropout masks: a generator per seed holding its run's global RNG state after the
    model was built (what a separate run's dropout layers draw from), drawn in the same order;
  - its batch-norm statistics, optimizer state, gradient clipping, early stopping, failure:
    every stacked tensor is seed-major and every operation acts per seed (no reduction mixes
    seeds); the loss is the sum of the seeds' mean losses, so each seed's gradient is its own.
A seed that stops early or fails (a non-finite loss) is frozen: after each step its slices of
the parameters, buffers and optimizer state are put back, so they no longer change.

Each seed gets its own run folder, written as a separate run writes it (config.json,
preprocess.json, checkpoints/, metrics.csv, weights.safetensors, curves.png, summary.json, the
summary recording `seed_batch`), so load/eval/predict/report/runs and `--resume` of one folder
work unchanged. The time columns hold each seed's share of the group's time (the group's seconds
divided by its seeds still training), so summing them over seeds gives the group's time.

Crash consistency: at the end of each epoch the whole group's state (stacked weights, optimizer,
schedule, every seed's generators, rows and best weights) is committed first, in one rename,
into a hidden group folder (train/checkpoint.py's commit_epoch), then each seed's own epoch.
A resumed group restores the group's last committed epoch and re-commits any seed folder that
lags behind it, so a kill -9 at any moment resumes every seed bit-identically to an
uninterrupted seed-batched run.
"""

from __future__ import annotations

import math
import os
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ..config import TrainConfig, make_config
from ..data import pipeline
from ..data.loader import DeviceLoader
from ..device import autocast
from ..errors import ConfigError, TrainingError
from ..faults import point as fault_point
from ..models import stacked as st
from ..plots import plot_curves
from ..rundir import RunDir
from . import checkpoint, determinism, optim, regularize, schedule
from .build import (
    _precision_resolved,
    _setup_device,
    build_model,
    check_batch_statistics,
    count_params,
    has_batchnorm,
    resolve_config,
)
from .resolve import resolve
from .selection import new_best, val_due

GROUP_NAME = "seed-batch"  # the summary's key, and part of the hidden group folder's name
# The stacked model's memory format on a CPU where it differs from the separate runs' own choice:
# LeNet's grouped convolutions ran about 1.8x faster in channels_last than in NCHW, stacked
# (benchmarks/seed_batch.py), though a single LeNet is a little faster in NCHW. Rounding aside
# (a layout changes the order of sums only), the results are the same.
STACKED_CHANNELS_LAST = {"lenet": True}


# ---------------------------------------------------------------- where it applies
def refusal(cfg: TrainConfig) -> Optional[str]:
    """Why this config's seeds cannot be trained as one seed batch (one line), or None.
    `cfg` resolved or not; the model's own layers are checked by `model_refusal`."""
    if cfg.optimizer == "lbfgs":
        return "L-BFGS's line search steps one model at a time"
    if "WORLD_SIZE" in os.environ:
        return "under torchrun (DDP) each process trains one model"
    if cfg.cuda_graphs:
        return "--cuda-graphs records one model's step"
    if cfg.compile:
        return "--compile compiles one model"
    if cfg.precision == "fp16":
        return "fp16 loss scaling skips a step for all seeds when one seed overflows"
    if cfg.ema is not None:
        return "--ema is not yet stacked"
    if cfg.tta:
        return "--tta evaluation is not yet stacked"
    if cfg.tensorboard:
        return "--tensorboard writes one run's scalars"
    if cfg.log_every:
        return "--log-every prints one run's loss"
    if cfg.batch_classes:
        return "--batch-classes makes batches whose sizes differ from seed to seed"
    if cfg.dataset == "imagefolder" and cfg.stream != "off":
        return "a streamed image folder is read by each run's own workers"
    return None


class NotStackable(ConfigError):
    """The model has a layer with no stacked form: its seeds are trained one by one instead."""


def norm_refusal(cfg: TrainConfig) -> Optional[str]:
    """What the config alone says about the model's layers (the rest is known once it is built)."""
    from ..nn.factory import ONE_IMPL, parse_norm

    if not isinstance(cfg.norm, str):
        return "a norm given as a Python callable"
    kind = parse_norm(cfg.norm)[0]  # gn:2+ws is gn+ws
    if kind in ONE_IMPL and kind not in st.STACKED_NEWER:
        return f"norm {cfg.norm} has no stacked form yet"
    if cfg.norm_impl == "reference" and kind != "none":
        return "--norm-impl reference has no stacked form"
    if kind == "ln-chw":
        return "norm ln-chw has no stacked form yet"
    return None


def model_refusal(model: torch.nn.Module, cfg: TrainConfig) -> Optional[str]:
    reason = st.why_not(model)
    return f"model {cfg.model} with norm {cfg.norm}: {reason}" if reason else None


# ---------------------------------------------------------------- the pieces
@dataclass
class Seed:
    """One seed of the group: its config, folder, generators and its run's bookkeeping."""

    index: int
    cfg: TrainConfig
    run_dir: Optional[RunDir]
    template: dict  # its separate model's state_dict (names and shapes)
    data_gen: torch.Generator
    drop_gen: torch.Generator
    rows: list = field(default_factory=list)
    best_score: float = -1.0
    best_epoch: int = 0
    improved: bool = False
    best: Optional[dict] = None  # its best weights so far
    status: str = "active"  # active, stopped (early stopping), failed, finished
    error: Optional[str] = None
    elapsed: float = 0.0  # its share of the group's seconds
    summary: Optional[dict] = None
    weights: Optional[dict] = None

    @property
    def seed(self) -> int:
        return self.cfg.seed


@dataclass
class SeedResult:
    """What `train_seeds` returns per seed: its folder and summary, or the error that stopped it."""

    seed: int
    run_dir: Optional[Path]
    summary: Optional[dict]
    error: Optional[str]
    weights: Optional[dict] = None  # its final state_dict (as weights.safetensors holds it)
    rows: list = field(default_factory=list)


class SeedLoader:
    """The S seeds' training batches in lockstep, already in the stacked layout (B, S*C, ...),
    labels (S, B). Each seed's permutation (and augmentation) comes from its own generator, drawn
    as its separate run's DeviceLoader draws it; without augmentation the S batches are gathered
    and normalized in one go (the same per-image arithmetic)."""

    def __init__(self, loaders: Sequence[DeviceLoader]):
        self.loaders = list(loaders)
        first = self.loaders[0]
        # one gather for all seeds: plain shuffled batches of shared images (augmentation goes
        # through each seed's own loader; class-skewed batches are refused, see `refusal`)
        self.fast = all(ld.augment is None and ld.normalize is first.normalize and ld.x is first.x
                        and getattr(ld, "batch_classes", None) is None for ld in self.loaders)

    def __len__(self) -> int:
        return len(self.loaders[0])

    @property
    def num_samples(self) -> int:
        return self.loaders[0].num_samples

    def __iter__(self):
        if not self.fast:
            for batches in zip(*self.loaders):
                xs, ys = zip(*batches)
                yield torch.stack(xs), torch.stack(ys), False
            return
        first = self.loaders[0]
        n, bs, dev = len(first.y), first.batch_size, first.x.device
        orders = torch.stack([torch.randperm(n, generator=ld.generator) for ld in self.loaders]).to(dev)
        for i in range(len(first)):
            idx = orders[:, i * bs:min(n, (i + 1) * bs)]  # (S, B)
            s, b = idx.shape
            xb = first.normalize(first.x.index_select(0, idx.t().reshape(-1)))  # (B*S, ...), batch-major
            yield xb.reshape(b, s * xb.shape[1], *xb.shape[2:]), first.y.index_select(0, idx.reshape(-1)).view(s, b), True


def stacked_optimizer(model: st.SeedStacked, template: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """optim.make_optimizer for the stacked parameters: the same groups (decided on each
    parameter's rank in the separate model), the same optimizer and fused choice."""
    pairs = list(zip(model.parameters(), template.parameters()))
    params = [p for p, _ in pairs if p.requires_grad]
    if cfg.decay_norm_bias or cfg.weight_decay == 0:
        groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    else:
        groups = [{"params": [p for p, o in pairs if o.ndim > 1], "weight_decay": cfg.weight_decay},
                  {"params": [p for p, o in pairs if o.ndim <= 1], "weight_decay": 0.0}]
    build = optim.OPTIMIZERS[optim.check_optimizer(cfg.optimizer)]
    if cfg.optimizer in optim.FUSABLE and params and all(p.device.type in optim.FUSED_DEVICES and p.is_floating_point()
                                                         for p in params):
        return build(groups, cfg, cfg.weight_decay, fused=True)
    return build(groups, cfg, cfg.weight_decay)


def _seed_part(t: torch.Tensor, s: int, seeds: int) -> torch.Tensor:
    """Seed s's slice of a seed-major stacked tensor (a view)."""
    n = t.shape[0] // seeds
    return t.narrow(0, s * n, n)


def seed_optimizer_state(sd: dict, s: int, seeds: int, template: torch.nn.Module) -> dict:
    """Seed s's optimizer state_dict, as its separate run's optimizer would save it: the
    parameter indices are the same (the stacked model lists its parameters in the separate
    model's order), each state tensor is the seed's slice in the parameter's shape."""
    shapes = [p.shape for p in template.parameters()]
    state = {}
    for i, entry in sd["state"].items():
        numel = math.prod(shapes[i])
        state[i] = {k: (_seed_part(v, s, seeds).reshape(shapes[i]).clone()
                        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.numel() == numel * seeds
                        else (v.clone() if isinstance(v, torch.Tensor) else v))
                    for k, v in entry.items()}
    return {"state": state, "param_groups": [dict(g) for g in sd["param_groups"]]}


class Freezer:
    """Seeds that stopped (early stopping, a non-finite loss) keep their values: their slices of
    every parameter, buffer and optimizer-state tensor are saved and put back after each step."""

    def __init__(self, model: torch.nn.Module, optimizer, seeds: int):
        self.model, self.optimizer, self.seeds = model, optimizer, seeds
        self.saved: list = []

    def _tensors(self):
        for t in list(self.model.parameters()) + list(self.model.buffers()):
            if t.dim() > 0:
                yield t
        for p, entry in self.optimizer.state.items():
            for v in entry.values():
                if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape == p.shape:
                    yield v

    @torch.no_grad()
    def freeze(self, s: int) -> None:
        self.saved += [(t, s, _seed_part(t, s, self.seeds).clone()) for t in self._tensors()]

    @torch.no_grad()
    def hold(self) -> None:
        for t, s, v in self.saved:
            _seed_part(t, s, self.seeds).copy_(v)


@torch.no_grad()
def clip_per_seed(params, value: float, mode: str, seeds: int) -> None:
    """Gradient clipping as torch.nn.utils.clip_grad_norm_ does it, with each seed's own total
    norm; clipping by value is element-wise already."""
    grads = [p.grad for p in params if p.grad is not None]
    if mode != "norm":
        torch.nn.utils.clip_grad_value_(params, value)
        return
    if not grads:
        return
    norms = torch.stack([g.reshape(seeds, -1).norm(dim=1) for g in grads], 1)  # (S, tensors)
    total = norms.norm(dim=1)
    coef = (value / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.unflatten(0, (seeds, -1)).mul_(coef.view(seeds, *([1] * g.dim())))


@torch.no_grad()
def max_norm_per_row(model: torch.nn.Module, value: float) -> None:
    """regularize.apply_max_norm on the stacked Linear and conv weights: each seed's unit is a
    row of the stacked weight, so renorm over rows is the separate runs' renorm. A Linear's row is
    one unit's inputs (in of (S, out, in)), a conv's one filter (Cin/g x k x k of (S*Cout, ...))."""
    for m in model.modules():
        if isinstance(m, (st.Linear, st.Conv2d)):
            w = m.weight
            rows = w.reshape(-1, w.shape[-1] if isinstance(m, st.Linear) else math.prod(w.shape[1:]))
            # a channels_last conv weight has no row view: renorm a contiguous copy and write it back
            w.copy_(torch.renorm(rows, 2, 0, value).view(w.shape))


# ---------------------------------------------------------------- training
def parse_seeds(text) -> list[int]:
    """'0-9' -> 0..9; '1,5,7' -> [1, 5, 7]; '0-4,10' mixes both; a list passes."""
    if isinstance(text, (list, tuple)):
        seeds = [int(s) for s in text]
    else:
        seeds = []
        for part in str(text).split(","):
            part = part.strip()
            a, sep, b = part.partition("-")
            if not (a.isdigit() and (not sep or b.isdigit())):
                raise ConfigError(f"seeds: give seeds as 0-9, 1,5,7 or 0-4,10; got {text!r}")
            seeds += list(range(int(a), int(b) + 1)) if sep else [int(a)]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: give at least one seed and none twice; got {text!r}")
    return seeds


def _load_data(cfgs: list[TrainConfig]) -> list:
    """The (data, inputs) of the seeds: one for all, or one per seed where a validation split is
    held out (the split, and so the fitted transform, depend on the seed): the files are read once."""
    if not cfgs[0].val_split:
        return [pipeline.load(cfgs[0].section("data"))]
    raw = pipeline._load_data(cfgs[0].section("data"))
    return [pipeline.load(c.section("data"), raw) for c in cfgs]


def _seed_folder(out, cfg: TrainConfig, inputs, held: ExitStack, resume: bool) -> Optional[RunDir]:
    """A seed's run folder, locked (None: no folder); a new group's gets its config.json and
    preprocess.json, as a separate run's."""
    if out is None:
        return None
    run_dir = _open_seed_dir(out, held, resume, cfg)
    if not resume:
        run_dir.write_json("config.json", cfg.to_dict())
        run_dir.write_json("preprocess.json", inputs.to_dict())
    return run_dir


def _locked_group_dir(group_dir, held: ExitStack) -> Optional[Path]:
    """The group's hidden folder, created and locked for the group's life (None: no folder)."""
    from ..locks import hold as hold_lock

    if group_dir is None:
        return None
    path = Path(group_dir)
    path.mkdir(parents=True, exist_ok=True)
    held.enter_context(hold_lock(path / ".lock"))
    return path


class Group:
    """A seed batch in progress: the stacked model, its optimizer and the seeds' bookkeeping."""

    def __init__(self, cfgs: list[TrainConfig], outs: list, group_dir: Path, log: Callable, held: ExitStack,
                 resume: bool = False):
        self.log, self.group_dir = log, _locked_group_dir(group_dir, held)
        self.device, _ = _setup_device(cfgs[0], None)
        cfgs = [_precision_resolved(c, self.device) for c in cfgs]
        self.cfg, self.S = cfgs[0], len(cfgs)
        if self.cfg.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("precision: fp16 autocast needs a CUDA device; on CPU use --precision bf16 or fp32")
        models, loaders = self._build_seeds(cfgs, outs, held, resume)
        self.template = models[0]
        self.parameters = count_params(models[0])
        self.model = self._stack(models)
        del models
        self.loader = SeedLoader(loaders)
        self.shared_eval = not self.cfg.val_split
        self._build_optimizer()
        self.columns = _columns(self.vals[0] is not None, self.num_classes > 5)
        self.stop = threading.Event()
        self.start_epoch, self.elapsed0 = 1, 0.0

    # ---- building
    def _build_seeds(self, cfgs: list[TrainConfig], outs: list, held: ExitStack,
                     resume: bool) -> tuple[list[torch.nn.Module], list[DeviceLoader]]:
        """Each seed's model, data and folder, in its separate run's order (so its generators hold
        what that run's do); sets self.seeds, self.tests, self.vals, self.num_classes."""
        loads = _load_data(cfgs)
        self.seeds: list[Seed] = []
        self.tests: list = []
        self.vals: list = []
        models: list[torch.nn.Module] = []
        loaders: list[DeviceLoader] = []
        for i, c in enumerate(cfgs):
            data, inputs = loads[min(i, len(loads) - 1)]
            model = build_model(c.section("model"), inputs.model_input_shape, inputs.num_classes).to(self.device)
            drop = torch.Generator()
            drop.set_state(torch.get_rng_state())  # what the separate run's dropout layers draw from
            if i == 0:
                self._check_first(model, c)
                self.num_classes = inputs.num_classes
            pipe = pipeline.build(c.section("data"), self.device, drop_single=has_batchnorm(model), data=data,
                                  inputs=inputs)
            if i and not self.cfg.val_split:  # one copy of the data on the device, shared by the seeds
                pipe.train.x, pipe.train.y, pipe.train.normalize = loaders[0].x, loaders[0].y, loaders[0].normalize
                pipe.test = self.tests[0]
            models.append(model)
            loaders.append(pipe.train)
            self.tests.append(pipe.test)
            self.vals.append(pipe.val)
            run_dir = _seed_folder(outs[i], c, inputs, held, resume)
            assert pipe.train.generator is not None  # a shuffled training loader has its generator
            self.seeds.append(Seed(i, c, run_dir, {k: v.detach().clone() for k, v in model.state_dict().items()},
                                   pipe.train.generator, drop))
        return models, loaders

    @staticmethod
    def _check_first(model: torch.nn.Module, c: TrainConfig) -> None:
        """What the first seed's model and config say about the group, before any data is built."""
        check_batch_statistics(model, c)
        why = model_refusal(model, c)
        if why:
            raise NotStackable(f"seed batching: {why}")
        if c.patience and not c.val_split:
            raise ConfigError("patience: early stopping needs a validation split (--val-split 0.1); "
                              "stopping on the test set would leak it into model selection")

    def _stack(self, models: list[torch.nn.Module]) -> st.SeedStacked:
        from ..models.registry import get_spec

        layout = bool(self.cfg.channels_last)
        if self.device.type == "cpu":
            layout = STACKED_CHANNELS_LAST.get(get_spec(self.cfg.model).family, layout)
        return st.SeedStacked(models, [s.drop_gen for s in self.seeds], layout,
                              bool(self.cfg.channels_last)).to(self.device)

    def _build_optimizer(self) -> None:
        """The optimizer, schedule, penalized parameters and freezer, as the separate runs have them."""
        cfg = self.cfg
        self.optimizer = stacked_optimizer(self.model, self.template, cfg.section("optim"))
        self.scheduler = schedule.make_scheduler(self.optimizer, cfg.section("optim"), len(self.loader))
        reg = self.reg = cfg.section("regularization")
        pairs = list(zip(self.model.parameters(), self.template.parameters()))
        self.penalized = [p for p, o in pairs if p.requires_grad and (reg.decay_norm_bias or o.ndim > 1)]
        self.freezer = Freezer(self.model, self.optimizer, self.S)

    # ---- one epoch
    def active(self) -> list[Seed]:
        return [s for s in self.seeds if s.status == "active"]

    def train_epoch(self, epoch: int) -> dict:
        model, S = self.model, self.S
        model.train()
        dev = self.device
        loss_sum = torch.zeros(S, dtype=torch.float64, device=dev)
        correct = torch.zeros(S, dtype=torch.int64, device=dev)
        seen = 0
        for i, (xb, yb, stacked) in enumerate(self.loader, start=1):
            b = yb.shape[1]
            out, losses = self.step(xb, yb, stacked)
            self._check_finite(losses, epoch, i)
            self.freezer.hold()
            loss_sum += losses.detach().double() * b
            correct += (out.detach().argmax(-1) == yb).sum(1)
            seen += b
            if self.stop.is_set():
                raise KeyboardInterrupt
        return {"loss": (loss_sum / seen).tolist(), "acc": (correct.double() / seen).tolist(), "seen": seen}

    def step(self, xb, yb, stacked: bool):
        """One optimizer step of every seed, as train/step.py's Step takes one for a run: the loss
        with its penalties, backward, per-seed clipping, the update, the L1 proximal step and
        max-norm, the schedule; frozen seeds are put back. Returns (logits, per-seed losses)."""
        model, opt, reg, S = self.model, self.optimizer, self.reg, self.S
        lr = opt.param_groups[0]["lr"]
        with autocast(self.device, self.cfg.precision):
            out = model(xb, mode="stacked" if stacked else "seeds").float()
        losses = F.cross_entropy(out.flatten(0, 1), yb.reshape(-1), reduction="none",
                                 label_smoothing=reg.label_smoothing).view(S, yb.shape[1]).mean(1)
        total = losses.sum()
        if reg.l2:
            total = total + regularize.l2_penalty(self.penalized, reg.l2)
        if reg.l1 and reg.l1_mode == "penalty":
            total = total + regularize.l1_penalty(self.penalized, reg.l1)
        opt.zero_grad(set_to_none=True)
        total.backward()
        if reg.clip_grad:
            clip_per_seed(list(model.parameters()), reg.clip_grad, reg.clip_mode, S)
        opt.step()
        if reg.l1 and reg.l1_mode == "proximal":
            regularize.l1_proximal(self.penalized, reg.l1, lr)
        if reg.max_norm:
            max_norm_per_row(model, reg.max_norm)
        self.scheduler.step()
        return out, losses

    def _check_finite(self, losses, epoch: int, step: int) -> None:
        """A seed whose loss is not finite fails as its separate run would (trainer.train_epoch):
        the message names the step; the seed is frozen, the others go on."""
        bad = ~torch.isfinite(losses.detach())
        if not bool(bad.any()):
            return
        for s in self.active():
            if bool(bad[s.index]):
                value = losses[s.index].item()
                path = s.run_dir.path if s.run_dir is not None else "(no folder)"
                last = (f"the last good checkpoint (epoch {epoch - 1}) is in {path}" if epoch > 1
                        else f"no epoch finished; {path} holds the config only")
                s.status, s.error = "failed", (f"training stopped: the loss became {value} at epoch {epoch}, step "
                                               f"{step}. Lower --lr, add normalization or --clip-grad; {last}")
                self.freezer.freeze(s.index)
                self.log(f"normlab: seed {s.seed}: {s.error}")

    @torch.no_grad()
    def evaluate(self, loaders) -> list[dict]:
        """Each seed's loss, accuracy (and top-5) on its split, as evaluation.evaluate computes them."""
        model, S, dev = self.model, self.S, self.device
        was = model.training
        model.eval()
        loss_sum = torch.zeros(S, dtype=torch.float64, device=dev)
        correct = torch.zeros(S, dtype=torch.int64, device=dev)
        top5 = torch.zeros(S, dtype=torch.int64, device=dev)
        batches = iter(loaders[0]) if self.shared_eval else zip(*loaders)
        k = self.num_classes
        for item in batches:
            if self.shared_eval:
                xb, yb = item
                with autocast(dev, self.cfg.precision):
                    out = model(xb, mode="shared").float()
                yb = yb.expand(S, -1)
            else:
                xs, ys = zip(*item)
                with autocast(dev, self.cfg.precision):
                    out = model(torch.stack(xs), mode="seeds").float()
                yb = torch.stack(ys)
            b = yb.shape[1]
            loss_sum += F.cross_entropy(out.flatten(0, 1), yb.reshape(-1), reduction="none").view(S, b).double().sum(1)
            correct += (out.argmax(-1) == yb).sum(1)
            if k > 5:
                top5 += (out.topk(5, dim=-1).indices == yb[..., None]).any(-1).sum(1)
        model.train(was)
        n = loaders[0].num_samples
        res = [{"loss": loss_sum[s].item() / n, "acc": correct[s].item() / n} for s in range(S)]
        if k > 5:
            for s in range(S):
                res[s]["top5"] = top5[s].item() / n
        return res

    # ---- saving
    def seed_weights(self, sd: dict, s: Seed) -> dict:
        return st.unstack_state(sd, s.index, self.S, s.template)

    def commit(self, epoch: int, elapsed: float) -> None:
        """The group's epoch first (the commit point), then each seed's own."""
        if self.group_dir is None or not any(s.best for s in self.seeds):
            return  # nothing to keep: every seed failed before its first epoch ended (as such runs save nothing)
        sd = self.model.net.state_dict()
        osd = self.optimizer.state_dict()
        ssd = self.scheduler.state_dict()
        # best weights are written in the epoch they change, else the previous epoch's file is
        # linked in (as a separate run's Checkpoint hook does): most late epochs change no seed's
        first = checkpoint.last_epoch_dir(self.group_dir) is None
        best = ({f"{s.index}/{k}": v for s in self.seeds for k, v in (s.best or {}).items()}
                if first or any(s.best_epoch == epoch for s in self.seeds) else None)
        state = {"epoch": epoch, "step": epoch * len(self.loader), "elapsed": elapsed, "optimizer": osd,
                 "scheduler": ssd, "rng": checkpoint.rng_state(self.seeds[0].data_gen),
                 "best_score": [s.best_score for s in self.seeds], "best_epoch": [s.best_epoch for s in self.seeds],
                 "rows": [{"epoch": e} for e in range(1, epoch + 1)],
                 "seeds": [{"seed": s.seed, "rows": s.rows, "status": s.status, "error": s.error, "elapsed": s.elapsed,
                            "data": s.data_gen.get_state(), "dropout": s.drop_gen.get_state()} for s in self.seeds],
                 "frozen": sorted({i for _, i, _ in self.freezer.saved})}
        checkpoint.commit_epoch(self.group_dir, epoch, sd, state, best=best)
        fault_point("seed-batch group committed")
        for s in self.seeds:
            self.commit_seed(s, epoch, sd, osd, ssd)

    def commit_seed(self, s: Seed, epoch: int, sd: dict, osd: dict, ssd: dict) -> None:
        """Seed s's epoch in its own folder, as its separate run's Checkpoint hook writes it; a
        seed that stopped or failed keeps the epochs it had."""
        if s.run_dir is None or s.status == "finished" or not s.rows or s.rows[-1]["epoch"] != epoch:
            return
        done = checkpoint._epoch_of(checkpoint.last_epoch_dir(s.run_dir.path))
        if done is not None and done >= epoch:
            return
        rng = checkpoint.rng_state(s.data_gen)
        rng["torch"] = s.drop_gen.get_state()
        state = {"epoch": epoch, "step": epoch * len(self.loader), "elapsed": s.elapsed,
                 "optimizer": seed_optimizer_state(osd, s.index, self.S, self.template), "scheduler": ssd,
                 "rng": rng, "best_score": s.best_score, "best_epoch": s.best_epoch, "rows": s.rows,
                 "columns": self.columns, "hooks": {}}  # the built-in hooks keep no state
        changed = s.best_epoch == epoch or done is None
        checkpoint.commit_epoch(s.run_dir.path, epoch, self.seed_weights(sd, s), state,
                                best=s.best if changed else None)

    def finish(self, s: Seed) -> None:
        """A seed's end-of-run files, in its separate run's order: weights, curves, summary."""
        s.weights = self.seed_weights(self.model.net.state_dict(), s)
        if s.run_dir is None:
            s.summary, s.status = self.summary(s), "finished"
            return
        s.run_dir.save_weights(s.weights)
        if s.cfg.curves:  # --no-curves: as a separate run, no plot
            plot_curves(s.rows, s.run_dir / "curves.png", title=f"{s.cfg.model} on {s.cfg.dataset}",
                        classes=self.num_classes)
        s.summary = self.summary(s)
        s.run_dir.write_json("summary.json", s.summary)
        s.status = "finished"
        self.log(f"done: seed {s.seed} test acc {s.summary['final_test_acc']:.4f} "
                 f"(best {s.summary['best_test_acc']:.4f}) -> {s.run_dir.path}")

    def summary(self, s: Seed) -> dict:
        from .trainer import run_summary

        summary = run_summary(s.cfg, s.rows, s.best_epoch, self.vals[0] is not None, s.elapsed,
                              self.parameters, self.device)
        summary["seed_batch"] = {"enabled": True, "seeds": self.S, "group": [x.seed for x in self.seeds],
                                 "time": "wall_seconds and the metrics' seconds are this seed's share of the group's"}
        return summary

    # ---- resuming
    def restore(self) -> bool:
        """Continue from the group's last committed epoch; False when it has none."""
        if self.group_dir is None:
            return False
        ck = checkpoint.load_last_complete_epoch(self.group_dir)
        if ck is None:
            return False
        state = ck.state
        names = [x["seed"] for x in state["seeds"]]
        if names != [s.seed for s in self.seeds]:
            raise ConfigError(f"{str(self.group_dir)!r} holds seeds {names}, not {[s.seed for s in self.seeds]}")
        self.model.net.load_state_dict(ck.weights(checkpoint.MODEL))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"], self.seeds[0].data_gen)
        best = ck.weights(checkpoint.BEST)
        for s, saved, bs, be in zip(self.seeds, state["seeds"], state["best_score"], state["best_epoch"]):
            s.rows = [dict(r) for r in saved["rows"]]
            s.status, s.error, s.elapsed = saved["status"], saved["error"], saved["elapsed"]
            s.data_gen.set_state(saved["data"])
            s.drop_gen.set_state(saved["dropout"])
            s.best_score, s.best_epoch = bs, be
            prefix = f"{s.index}/"
            s.best = {k[len(prefix):]: v for k, v in best.items() if k.startswith(prefix)}
        for i in state["frozen"]:
            self.freezer.freeze(i)
        if all(s.status in ("finished", "failed") for s in self.seeds):
            raise ConfigError(f"the seed batch in {str(self.group_dir)!r} has finished every seed already; "
                              f"train with a new --out to train them again")
        self.start_epoch, self.elapsed0 = state["epoch"] + 1, state["elapsed"]
        # seed folders the crash left one epoch behind the group, and end files it cut short
        sd, osd, ssd = self.model.net.state_dict(), self.optimizer.state_dict(), self.scheduler.state_dict()
        for s in self.seeds:
            if s.run_dir is not None and s.rows:
                last = checkpoint.last_epoch_dir(s.run_dir.path)
                checkpoint.remove_debris(s.run_dir.path, keep=checkpoint._epoch_of(last))
                self.commit_seed(s, s.rows[-1]["epoch"], sd, osd, ssd)
        self.log(f"normlab: resuming the seed batch {[s.seed for s in self.seeds]} after epoch {state['epoch']}")
        return True


def _open_seed_dir(out, held: ExitStack, resume: bool, cfg: TrainConfig) -> RunDir:
    """A seed's run folder, locked: created for a new group (a folder left by a group killed
    before its first epoch, which holds only its config, is started again), or the existing one
    of a resumed group, whose config must be this one."""
    from .trainer import LOCK, _create_locked

    p = Path(out)
    if not resume:
        if (p / "config.json").is_file() and not (p / "summary.json").is_file() \
                and checkpoint.last_epoch_dir(p) is None:
            import shutil

            shutil.rmtree(p)  # no epoch was committed: nothing of it can be kept
        return _create_locked(p, held)
    from ..locks import hold as hold_lock

    if not (p / "config.json").is_file():
        raise ConfigError(f"{str(p)!r} has no config.json, but its seed batch has committed epochs; "
                          f"train the seeds again with a new --out")
    run = RunDir(p)
    held.enter_context(hold_lock(p / LOCK))
    free = ("out", "threads", "progress")  # how a run is shown and how many threads: free on resume, as --resume's
    saved = {k: v for k, v in run.read_json("config.json").items() if k not in free}
    mine = {k: v for k, v in resolve_config(cfg).to_dict().items() if k not in free}
    if saved != mine:
        changed = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        raise ConfigError(f"{str(p)!r} was trained with another config ({', '.join(changed)} differ); "
                          f"resume it with its own, or train these seeds with a new --out")
    return run


def _columns(has_val: bool, top5: bool) -> list[str]:
    from .trainer import metric_columns

    return metric_columns(has_val, top5)


def train_seeds(config, seeds: Sequence[int], outs: Optional[Sequence] = None, group_dir=None,
                log: Callable = print) -> list[SeedResult]:
    """Train `config` once per seed, the seeds together as one stacked model.

    `outs`: each seed's run folder (created, or an empty one; None for no folder); `group_dir`:
    the hidden folder of the group's checkpoints (resumed from when it holds a committed epoch);
    both None: nothing is written (the weights come back in the results).
    Returns one SeedResult per seed (a seed that failed has its error and no summary).
    Raises ConfigError (before any work) where seed batching does not apply: see `refusal`.
    """
    outs = [None] * len(seeds) if outs is None else list(outs)
    base = make_config(config)
    resolve(base)  # names, defaults, unused options and impossible combinations refused, as a run does
    cfgs = [resolve_config(base.replace(seed=int(s), out=None if o is None else str(o))) for s, o in zip(seeds, outs)]
    why = refusal(cfgs[0])
    if why:
        raise ConfigError(f"seed batching: {why}; train the seeds one by one")
    why = norm_refusal(cfgs[0])
    if why:
        raise NotStackable(f"seed batching: {why}; train the seeds one by one")
    group_dir = None if group_dir is None else Path(group_dir)
    resume = group_dir is not None and checkpoint.last_epoch_dir(group_dir) is not None
    with determinism.restored(), ExitStack() as held:
        if not resume and group_dir is not None and group_dir.exists():
            import shutil

            shutil.rmtree(group_dir)  # a group killed before its first commit: nothing to keep
        group = Group(cfgs, list(outs), group_dir, log, held, resume)
        resumed = group.restore()
        _fit(group, resumed)
    return [SeedResult(s.seed, s.run_dir.path if s.run_dir is not None else None, s.summary, s.error, s.weights,
                       s.rows) for s in group.seeds]


def _fit(g: Group, resumed: bool) -> None:
    """Train the group's epochs from its start epoch on; every seed still going is finished at the end."""
    with _stop_on_signals(g.stop):
        if not resumed:
            g.log(f"normlab: {g.cfg.model} (norm={g.cfg.norm}) x {g.S} seeds {[s.seed for s in g.seeds]} trained "
                  f"seed-batched on {g.device}, {g.parameters:,} parameters each")
        start = time.perf_counter() - g.elapsed0
        for epoch in range(g.start_epoch, g.cfg.epochs + 1):
            active = g.active()
            if not active:
                break
            _fit_epoch(g, epoch, active, start)
        for s in g.seeds:
            if s.status in ("active", "stopped"):
                g.finish(s)


@contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGINT and SIGTERM set `stop` (the step loop then stops at a step's end) while in the block;
    the old handlers come back after it. Signals can be handled in the main thread only."""
    import signal

    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in old:
            signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _fit_epoch(g: Group, epoch: int, active: list[Seed], start: float) -> None:
    """One epoch of the seeds in `active`: train, evaluate, each seed's row and best weights, early
    stopping, the commit, and the end files of the seeds that stopped."""
    t0, lr = time.perf_counter(), g.optimizer.param_groups[0]["lr"]
    try:
        stats = g.train_epoch(epoch)
    except KeyboardInterrupt:
        g.log(f"normlab: interrupted in epoch {epoch}; run the same command again to resume the seed batch "
              f"(continues after epoch {epoch - 1})")
        raise
    t_train = time.perf_counter() - t0
    tests = g.evaluate(g.tests)
    vals = g.evaluate(g.vals) if g.vals[0] is not None and val_due(g.cfg, epoch) else None
    now = time.perf_counter()
    share = (now - t0) / len(active)
    for s in active:
        if s.status != "active":  # failed during this epoch: no row, as its separate run
            continue
        i = s.index
        s.elapsed += share
        row = {"epoch": epoch, "train_loss": stats["loss"][i], "train_acc": stats["acc"][i],
               "test_loss": tests[i]["loss"], "test_acc": tests[i]["acc"], "lr": lr,
               "test_top5": tests[i].get("top5"), "epoch_seconds": share, "elapsed_seconds": s.elapsed,
               "examples_per_s": stats["seen"] / max(t_train / len(active), 1e-9)}
        if vals is not None:
            row.update(val_loss=vals[i]["loss"], val_acc=vals[i]["acc"])
        elif g.vals[0] is not None:  # not evaluated this epoch (--val-every), as its separate run's row
            row.update(val_loss=None, val_acc=None)
        _add_row(g, s, row)
    _log_epoch(g, epoch, active, now - t0)
    _stop_early(g, epoch, active)
    g.commit(epoch, now - start)
    # the commit's seconds too, shared out: a separate run's seconds include its checkpoints'
    commit_share = (time.perf_counter() - now) / len(active)
    for s in active:
        s.elapsed += commit_share
        if s.status == "stopped":
            g.finish(s)


def _add_row(g: Group, s: Seed, row: dict) -> None:
    """Seed s's metrics row, and its best weights when its score (validation, else test accuracy) improved."""
    s.rows.append(row)
    best = new_best(row, s.best_score, s.best_epoch)
    s.improved = best is not None
    if best is not None:
        s.best_score, s.best_epoch = best
        s.best = g.seed_weights(g.model.net.state_dict(), s)


def _log_epoch(g: Group, epoch: int, active: list[Seed], seconds: float) -> None:
    done = [s for s in active if s.status == "active"]
    if done:
        accs = " ".join(f"{s.rows[-1]['test_acc']:.3f}" for s in done)
        loss = sum(s.rows[-1]["train_loss"] for s in done) / len(done)
        g.log(f"epoch {epoch}/{g.cfg.epochs}  {len(done)} seeds  loss {loss:.3f} (mean)  test acc {accs}  "
              f"{seconds:.1f} s")


def _stop_early(g: Group, epoch: int, active: list[Seed]) -> None:
    """Early stopping per seed, as its separate run's: its values are frozen from here on."""
    for s in active:
        if s.status == "active" and s.cfg.patience and epoch - s.best_epoch >= s.cfg.patience:
            g.log(f"early stopping: seed {s.seed}: no validation improvement for {s.cfg.patience} epochs "
                  f"(best epoch {s.best_epoch})")
            s.status = "stopped"
            g.freezer.freeze(s.index)


# ---------------------------------------------------------------- `normlab train --seeds`
def seed_batch_option(no_seed_batch: bool, cap: Optional[int]):
    """The --no-seed-batch / --seed-batch S pair as one value: False, True or the cap S."""
    if no_seed_batch and cap is not None:
        raise ConfigError("--seed-batch and --no-seed-batch contradict each other; give one of them")
    if cap is not None and cap < 1:
        raise ConfigError(f"--seed-batch: the most seeds trained together must be >= 1, got {cap}")
    return False if no_seed_batch else (True if cap is None else cap)


def train_many(config, seeds: Sequence[int], seed_batch=True, log: Callable = print) -> list[SeedResult]:
    """`normlab train --seeds`: one run folder per seed, OUT/seed-<s> (OUT: --out, or a new
    runs/MODEL-DATASET-TIMESTAMP), the seeds trained as seed batches of at most `seed_batch`
    (True: all at once; False: one by one, as does a config seed batching refuses, said in one
    line). Running it again with the same --out resumes an interrupted batch."""
    from .build import default_out
    from .trainer import train

    base = make_config(config)
    if base.seed != TrainConfig().seed:
        raise ConfigError("--seeds lists the seeds to train; drop --seed")
    resolve(base)  # names, defaults, unused options and impossible combinations refused, as a run does
    out = Path(default_out(base))
    cfg = resolve_config(base)
    why = "--no-seed-batch" if seed_batch is False else (refusal(cfg) or norm_refusal(cfg))
    cap = len(seeds) if isinstance(seed_batch, bool) else int(seed_batch)
    if why is None and cap < 2:
        why = f"--seed-batch {cap}"
    results: list[SeedResult] = []
    if why is not None:
        log(f"normlab: training the {len(seeds)} seeds one by one: {why}")
        for s in seeds:
            try:
                r = train(base.replace(seed=s, out=str(out / f"seed-{s}")), log=log)
                results.append(SeedResult(s, r.run_dir, r.summary, None))
            except TrainingError as exc:
                results.append(SeedResult(s, out / f"seed-{s}", None, str(exc)))
        return results
    for k in range(0, len(seeds), cap):
        chunk = list(seeds[k:k + cap])
        group = out / ".seed-batch" / ("s" + "_".join(map(str, chunk)))
        results += train_seeds(base, chunk, [out / f"seed-{s}" for s in chunk], group, log=log)
    return results
