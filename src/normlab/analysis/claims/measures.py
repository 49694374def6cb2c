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


def metric(key: str):
    """summary.json's `key` (NaN for a run that failed)."""
    def read(run: Path) -> float:
        v = summary(run).get(key)
        return float(v) if isinstance(v, (int, float)) else NAN
    read.__name__ = key
    return read


test_acc = metric("final_test_acc")
train_acc = metric("final_train_acc")
train_loss = metric("final_train_loss")


CHANCE = 0.1  # the ten classes of mnist5k and digits


def test_acc_or_chance(run: Path) -> float:
    """Final test accuracy; a run that failed (could not train at all) counts at chance."""
    return CHANCE if failure(run) else test_acc(run)


def seconds(run: Path) -> float:
    return float(summary(run).get("wall_seconds") or 0.0)


def _matrices(run: Path) -> list[torch.Tensor]:
    """The 2-D weights of a run (the Linear layers' weight matrices)."""
    from ...rundir import RunDir

    return [w for w in RunDir(run).load_weights().values() if w.ndim == 2]


def zero_fraction(run: Path) -> float:
    ws = _matrices(run)
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def weight_norm(run: Path) -> float:
    return math.sqrt(sum(float((w.double() ** 2).sum()) for w in _matrices(run)))


@torch.no_grad()
def _scores(model, loader) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a model over a loader."""
    loss = correct = seen = 0
    for xb, yb in loader:
        out = model(xb)
        loss += float(torch.nn.functional.cross_entropy(out.double(), yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
        seen += len(yb)
    return loss / seen, correct / seen


def eval_scores(run: Path) -> dict:
    """Loss and accuracy of the saved weights, in eval mode, on the run's own training split
    (after its val_split) and on the test split. Dropout, which lowers the running train
    accuracy the trainer logs, does not act here, so it cannot shrink a gap by itself."""
    from ...api import load
    from ...data import pipeline

    r = load(run)
    data, pre = pipeline.load(r.config)
    pipe = pipeline.build(r.config.replace(augment=""), torch.device("cpu"), False, data=data, preprocess=pre)
    (tr_loss, tr_acc), (te_loss, te_acc) = _scores(r.model, pipe.train), _scores(r.model, pipe.test)
    return {"train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss, "test_acc": te_acc}


def eval_loss_gap(run: Path) -> float:
    """Test loss minus train loss (cross-entropy, eval mode, see eval_scores)."""
    s = eval_scores(run)
    return s["test_loss"] - s["train_loss"]


def eval_acc_gap(run: Path) -> float:
    """Train accuracy minus test accuracy (eval mode, see eval_scores)."""
    s = eval_scores(run)
    return s["train_acc"] - s["test_acc"]


def affine_views(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each image of a (preprocessed) batch under its own intensity change a * x + b, with
    contrast a from [0.5, 2] (log-uniform) and brightness b from [-1, 1], drawn from `seed`."""
    g = torch.Generator().manual_seed(seed)
    shape = (len(x),) + (1,) * (x.ndim - 1)
    a = torch.exp(torch.empty(shape).uniform_(math.log(0.5), math.log(2.0), generator=g))
    b = torch.empty(shape).uniform_(-1.0, 1.0, generator=g)
    return x * a.to(x.dtype) + b.to(x.dtype)


@torch.no_grad()
def contrast_change(run: Path) -> float:
    """Fraction of test images whose predicted class changes when every image gets its own
    contrast and brightness (affine_views, the same draw for every run)."""
    from ...api import load
    from ...data import pipeline

    r = load(run)
    changed = seen = 0
    for i, (xb, _) in enumerate(pipeline.test_loader(r.config, r.preprocess, torch.device("cpu"))):
        changed += int((r.model(xb).argmax(1) != r.model(affine_views(xb, seed=i)).argmax(1)).sum())
        seen += len(xb)
    return changed / seen
