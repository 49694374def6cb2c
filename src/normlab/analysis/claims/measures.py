"""Measures: a finished run directory in, one number out.

They read only what a run leaves on disk (summary.json, failed.json, the weights), so they work
the same on runs trained now, in a worker process, by another shard or by an earlier,
interrupted `normlab claims` that was resumed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ...api import load
from ...data import pipeline
from ...rundir import RunDir

NAN = float("nan")


def summary(run: Path) -> dict:
    p = Path(run) / "summary.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def failure(run: Path) -> str:
    """The error a failed run recorded ('' when it did not fail)."""
    p = Path(run) / "failed.json"
    return json.loads(p.read_text(encoding="utf-8")).get("error", "") if p.is_file() else ""


def diverged(run: Path) -> bool:
    """The trainer stopped the run on a non-finite loss (its TrainingError names the step)."""
    return "the loss became" in failure(run)


def unit(name: str, scale: float = 1.0):
    """Mark a measure with the unit its differences are reported in and the factor from its raw
    value to that unit (100 for an accuracy in [0, 1] shown in accuracy points)."""
    def mark(fn):
        fn.unit, fn.scale = name, scale
        return fn
    return mark


ACC = ("accuracy points", 100.0)
NATS = ("nats", 1.0)  # cross-entropy


def metric(key: str, how: tuple):
    """summary.json's `key` (NaN for a run that failed)."""
    def read(run: Path) -> float:
        v = summary(run).get(key)
        return float(v) if isinstance(v, (int, float)) else NAN
    read.__name__ = key
    return unit(*how)(read)


test_acc = metric("final_test_acc", ACC)
train_acc = metric("final_train_acc", ACC)
train_loss = metric("final_train_loss", NATS)


CHANCE = 0.1  # the ten classes of mnist5k and digits


@unit(*ACC)
def test_acc_or_chance(run: Path) -> float:
    """Final test accuracy; a run that failed (could not train at all) counts at chance."""
    return CHANCE if failure(run) else test_acc(run)


def seconds(run: Path) -> float:
    return float(summary(run).get("wall_seconds") or 0.0)


def _matrices(run: Path) -> list[torch.Tensor]:
    """The 2-D weights of a run (the Linear layers' weight matrices)."""

    return [w for w in RunDir(run).load_weights().values() if w.ndim == 2]


@unit("percentage points of the weights", 100.0)
def zero_fraction(run: Path) -> float:
    ws = _matrices(run)
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


@unit("L2 norm")
def weight_norm(run: Path) -> float:
    return math.sqrt(sum(float((w.double() ** 2).sum()) for w in _matrices(run)))


@torch.no_grad()
def _scores(model, loader) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a model over a loader."""
    loss, correct, seen = 0.0, 0, 0
    for xb, yb in loader:
        out = model(xb)
        loss += float(torch.nn.functional.cross_entropy(out.double(), yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
        seen += len(yb)
    return loss / seen, correct / seen


_EVAL_CACHE: dict = {}


def eval_scores(run: Path) -> dict:
    """Loss and accuracy of the saved weights, in eval mode, on the run's own training split
    (after its val_split) and on the test split. Dropout, which lowers the running train
    accuracy the trainer logs, does not act here, so it cannot shrink a gap by itself."""

    weights = Path(run) / "weights.safetensors"
    key = (str(Path(run).resolve()), weights.stat().st_mtime_ns if weights.is_file() else None)
    if key in _EVAL_CACHE:  # several measures of one claim read the same scores
        return _EVAL_CACHE[key]
    r = load(run)
    data, pre = pipeline.load(r.config)
    pipe = pipeline.build(r.config.replace(augment=""), torch.device("cpu"), False, data=data, inputs=pre)
    (tr_loss, tr_acc), (te_loss, te_acc) = _scores(r.model, pipe.train), _scores(r.model, pipe.test)
    _EVAL_CACHE[key] = {"train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss, "test_acc": te_acc}
    return _EVAL_CACHE[key]


@unit(*NATS)
def eval_loss_gap(run: Path) -> float:
    """Test loss minus train loss (cross-entropy, eval mode, see eval_scores)."""
    if failure(run):
        return NAN
    s = eval_scores(run)
    return s["test_loss"] - s["train_loss"]


@unit(*ACC)
def eval_acc_gap(run: Path) -> float:
    """Train accuracy minus test accuracy (eval mode, see eval_scores)."""
    if failure(run):
        return NAN
    s = eval_scores(run)
    return s["train_acc"] - s["test_acc"]


@unit(*ACC)
def eval_train_acc(run: Path) -> float:
    """The clean train accuracy: final weights, eval mode, the run's own training split."""
    return NAN if failure(run) else eval_scores(run)["train_acc"]


def affine_views(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each image of a (preprocessed) batch under its own intensity change a * x + b, with
    contrast a from [0.5, 2] (log-uniform) and brightness b from [-1, 1], drawn from `seed`."""
    g = torch.Generator().manual_seed(seed)
    shape = (len(x),) + (1,) * (x.ndim - 1)
    a = torch.exp(torch.empty(shape).uniform_(math.log(0.5), math.log(2.0), generator=g))
    b = torch.empty(shape).uniform_(-1.0, 1.0, generator=g)
    return x * a.to(x.dtype) + b.to(x.dtype)


@unit("percentage points of the test predictions", 100.0)
@torch.no_grad()
def contrast_change(run: Path) -> float:
    """Fraction of test images whose predicted class changes when every image gets its own
    contrast and brightness (affine_views, the same draw for every run)."""

    r = load(run)
    changed = seen = 0
    for i, (xb, _) in enumerate(pipeline.test_loader(r.config, r.inputs, torch.device("cpu"))):
        changed += int((r.model(xb).argmax(1) != r.model(affine_views(xb, seed=i)).argmax(1)).sum())
        seen += len(xb)
    return changed / seen


NEAR_ZERO = 1e-3


@unit("percentage points of the weights", 100.0)
def near_zero_fraction(run: Path) -> float:
    """Fraction of the Linear weights with |w| < 1e-3: small, but (unlike zero_fraction) not
    necessarily exactly zero; what an L1 penalty's subgradient steps can leave."""
    ws = _matrices(run)
    return sum(int((w.abs() < NEAR_ZERO).sum()) for w in ws) / sum(w.numel() for w in ws)


@unit("percentage points of the hidden units", 100.0)
@torch.no_grad()
def dead_units(run: Path) -> float:
    """Fraction of the hidden ReLU units that output 0 on every training image (eval mode, the
    run's own training split): units that no longer respond to any input, and so get no gradient."""

    if failure(run):
        return NAN
    r = load(run)
    data, pre = pipeline.load(r.config)
    pipe = pipeline.build(r.config.replace(augment=""), torch.device("cpu"), False, data=data, inputs=pre)
    relus = [mod for mod in r.model.modules() if isinstance(mod, torch.nn.ReLU)]
    alive: dict = {}
    hooks = [mod.register_forward_hook(lambda mod, i, out: alive.__setitem__(
        id(mod), alive.get(id(mod), torch.zeros(out.shape[1], dtype=torch.bool)) | (out > 0).any(0)))
        for mod in relus]
    try:
        for xb, _ in pipe.train:
            r.model(xb)
    finally:
        for h in hooks:
            h.remove()
    units = torch.cat(list(alive.values()))
    return float((~units).sum()) / units.numel()


THINNED = 20  # thinned networks averaged by thinned_scores


@torch.no_grad()
def thinned_scores(run: Path, k: int = THINNED) -> dict:
    """Test accuracy of a dropout net three ways: one thinned network (dropout left on, one draw
    of masks), the average of the softmax outputs of `k` thinned networks (Monte Carlo, each its own
    draw), and the eval-mode net (dropout off: weight scaling stands in for the average), with the
    share of test images on which the eval net and the k-average predict the same class."""

    r = load(run)
    drops = [mod for mod in r.model.modules() if isinstance(mod, torch.nn.Dropout)]
    if not drops:
        raise ValueError(f"{run}: the model has no dropout layer")
    torch.manual_seed(0)  # the same masks for every run
    hit = {"one": 0, "average": 0, "eval": 0}
    same = seen = 0
    for xb, yb in pipeline.test_loader(r.config, r.inputs, torch.device("cpu")):
        r.model.eval()
        p_eval = r.model(xb).argmax(1)
        for mod in drops:
            mod.train()
        probs = [torch.softmax(r.model(xb), 1) for _ in range(k)]
        r.model.eval()
        p_avg = torch.stack(probs).mean(0).argmax(1)
        hit["one"] += int((probs[0].argmax(1) == yb).sum())
        hit["average"] += int((p_avg == yb).sum())
        hit["eval"] += int((p_eval == yb).sum())
        same += int((p_eval == p_avg).sum())
        seen += len(yb)
    return {**{key: v / seen for key, v in hit.items()}, "agree": same / seen}


@unit(*NATS)
def late_progress(run: Path) -> float:
    """How much the training loss still fell in the second half of training: the mean train loss
    of the middle epoch (epochs // 2) minus that of the last, from the run's metrics.csv."""
    import csv

    if failure(run):
        return NAN
    with open(Path(run) / "metrics.csv", newline="", encoding="utf-8") as f:
        loss = {int(r["epoch"]): float(r["train_loss"]) for r in csv.DictReader(f)}
    last = max(loss)
    return loss[last // 2] - loss[last]
