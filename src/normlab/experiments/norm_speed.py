"""Training speed of several configs measured side by side: the leaderboard's images/s.

A run's own examples/s says more about what else the machine did at that minute than about its
layer: runs of a board train hours apart, several at a time, some seed-batched (a seed batch's
examples/s is the batch's throughput shared out, not the layer's). So the speed of each arm is
measured apart from its training, in one process, one thread, arm after arm in interleaved
rounds (each round in the opposite order to the one before, so a drift in the machine's speed
falls on every arm alike), and each arm's figure is the median of its rounds.

One measurement is the trainer's own step (build.build_run's Step: forward, loss, backward,
optimizer update, on the config's memory format) on the run's own training batches, timed from
the third step on, for at least `min_steps` steps and `min_seconds` seconds.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import make_config
from ..train.build import build_run

ROUNDS = 3
MIN_STEPS = 5
MIN_SECONDS = 0.25
WARMUP = 2
# Long enough that no schedule reaches its end while timed (the lr does not change the speed).
EPOCHS = 1000


class _Timed:
    """One arm ready to step: its run's Step and an endless cycle over its training batches."""

    def __init__(self, cfg: dict):
        run = build_run(make_config({**cfg, "epochs": EPOCHS, "threads": 1}))
        self.step = run.step
        self.batches = itertools.cycle(list(run.pipe.train))
        self.step.model.train()
        for _ in range(WARMUP):
            self.one()

    def one(self) -> int:
        xb, yb = next(self.batches)
        self.step(xb, yb)
        return len(yb)

    def images_per_s(self, min_steps: int, min_seconds: float) -> float:
        images, steps, t0 = 0, 0, time.perf_counter()
        while steps < min_steps or time.perf_counter() - t0 < min_seconds:
            images += self.one()
            steps += 1
        return images / (time.perf_counter() - t0)


@dataclass(frozen=True)
class Speeds:
    images_per_s: dict        # key -> the median over rounds of training images/s
    rounds: int
    load: tuple               # the machine's 1-minute load average before and after


def measure(configs: dict, rounds: int = ROUNDS, min_steps: int = MIN_STEPS, min_seconds: float = MIN_SECONDS,
            log: Callable = print) -> Speeds:
    """Training images/s of each {key: a run's config}, measured side by side (see the module
    docstring)."""

    threads = torch.get_num_threads()
    load0 = os.getloadavg()
    try:
        torch.set_num_threads(1)
        timed = {k: _Timed(c) for k, c in configs.items()}
        samples: dict = {k: [] for k in configs}
        keys = list(configs)
        for r in range(rounds):
            for k in keys if r % 2 == 0 else reversed(keys):
                samples[k].append(timed[k].images_per_s(min_steps, min_seconds))
            log(f"normlab leaderboard: speed, round {r + 1} of {rounds} done")
    finally:
        torch.set_num_threads(threads)
    return Speeds({k: statistics.median(v) for k, v in samples.items()}, rounds, (load0[0], os.getloadavg()[0]))
