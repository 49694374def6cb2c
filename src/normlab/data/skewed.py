"""Class-skewed (non-i.i.d.) minibatches: each training batch holds examples of only K classes.

Ioffe (2017, sec. 4.3) trains with minibatches of 32 built from 16 labels, 2 examples each, to show
how batch norm suffers when the examples of a minibatch are not independent: the batch statistics
then describe a few classes, not the data, and differ from the population statistics inference
uses. `--batch-classes K` builds such batches: every batch of B examples holds B/K examples of each
of K classes.

Each epoch, per class, the class's examples are shuffled and cut into chunks of B/K (the last
chunk of a class may be smaller). Batches are then formed one at a time from one chunk of each of
the K classes with the most chunks left, ties broken at random: with balanced classes this takes
the classes in rounds, in a fresh random grouping each round, and uses every example exactly once
an epoch. When fewer than K classes have chunks left, a batch holds fewer classes. How many batches
an epoch has depends on the class counts only (not on the draw), so the schedule knows it in
advance.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import ConfigError


def check(batch_size: int, k: int, labels: torch.Tensor) -> None:
    """The one-line refusals: K must divide the batch and not exceed the classes present."""
    present = int(torch.unique(labels).numel())
    if batch_size % k:
        raise ConfigError(f"batch_classes: --batch-classes {k} must divide --batch-size {batch_size} (each batch "
                          f"holds batch/K examples of each of K classes); give a K that divides it")
    if k > present:
        raise ConfigError(f"batch_classes: --batch-classes {k} exceeds the {present} classes of the training "
                          f"split; give at most {present}")


def _chunks_per_class(labels: torch.Tensor, per: int) -> list[int]:
    counts = torch.bincount(labels.cpu())
    return [-(-int(n) // per) for n in counts if n > 0]


def batch_count(labels: torch.Tensor, batch_size: int, k: int) -> int:
    """Batches an epoch has: the greedy grouping below run on the counts alone."""
    left = sorted(_chunks_per_class(labels, batch_size // k), reverse=True)
    batches = 0
    while left and left[0] > 0:
        for i in range(min(k, len(left))):
            left[i] -= 1
        left = sorted((c for c in left if c > 0), reverse=True)
        batches += 1
    return batches


def batches(labels: torch.Tensor, batch_size: int, k: int,
            generator: Optional[torch.Generator] = None) -> list[torch.Tensor]:
    """One epoch's batches, as index tensors into `labels` (on the CPU)."""
    per = batch_size // k
    y = labels.cpu()
    classes = torch.unique(y).tolist()
    chunks = {}
    for c in classes:
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        chunks[c] = list(idx.split(per))
    out = []
    while any(chunks.values()):
        open_ = [c for c in classes if chunks[c]]
        # the classes with the most chunks left, ties in a random order
        tiebreak = torch.randperm(len(open_), generator=generator).tolist()
        order = sorted(range(len(open_)), key=lambda i: (-len(chunks[open_[i]]), tiebreak[i]))
        take = [open_[i] for i in order[:k]]
        out.append(torch.cat([chunks[c].pop(0) for c in take]))
    return out
