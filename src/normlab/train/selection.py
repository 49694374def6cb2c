"""Which epochs a run evaluates on its validation split, and which epoch is its best: one rule
for a run trained alone (trainer.py) and a seed of a seed batch (seed_batch.py)."""

from __future__ import annotations

import math

from ..config import TrainConfig


def row_score(row: dict) -> float:
    """What selects the best epoch: validation accuracy where there is a validation split (an
    epoch it was not evaluated after, see --val-every, is never the best)."""
    if "val_acc" in row:
        return -math.inf if row["val_acc"] is None else row["val_acc"]
    return row["test_acc"]


def val_due(cfg: TrainConfig, epoch: int) -> bool:
    """Whether the validation split is evaluated after `epoch` (--val-every N: every Nth and the last)."""
    return epoch % cfg.val_every == 0 or epoch >= cfg.epochs


def new_best(row: dict, best_score: float, best_epoch: int):
    """(score, epoch) of the best epoch once `row` is in, or None where it does not improve. The
    first epoch is always the best so far, even unevaluated: best weights exist from the first
    checkpoint on, and the first evaluated epoch (its score above the -1 start) takes its place."""
    score = row_score(row)
    if score > best_score or best_epoch == 0:
        return max(score, best_score), row["epoch"]
    return None
