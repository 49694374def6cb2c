"""An experiment is a grid of runs: base options, factors crossed as cells, paired seeds.

An experiment file (YAML or JSON) holds
  base:    train options shared by every run            {dataset: digits, model: mlp, epochs: 5}
  factors: option -> list of levels, crossed as a grid  {norm: [bn, none], dropout: [0.0, 0.5]}
  seeds:   a count N (seeds 0..N-1) or a list of seeds
  metric:  (optional) the summary value compared in the report, default final_test_acc

Every cell runs the same seeds. The trainer seeds the initial weights and the data order from the
run's seed alone, so two arms with the same seed start from the same weights (where the shapes
agree) and see the batches in the same order: the comparison is paired.

This module is the grid's shape only, read by whoever runs it (normlab.experiments) and whoever
reports on it (normlab.analysis); whether each cell is a config a run would accept is checked
where it is run.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Optional, Sequence

from .config import FIELDS, normalize_key
from .errors import ConfigError, unknown_name

TOP_KEYS = ("base", "factors", "seeds", "metric", "name", "description")


RESERVED = {"out": "each run's directory is chosen by the sweep",
            "seed": "give the seeds with the top-level `seeds:` key",
            "progress": "the sweep turns progress bars off"}


METRICS = ("final_test_acc", "best_test_acc", "final_test_loss", "final_train_acc", "final_train_loss")



@dataclass
class Experiment:
    base: dict
    factors: dict            # option -> list of levels, in file order; the first level is the baseline
    seeds: list
    metric: str = "final_test_acc"
    name: str = "experiment"
    description: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "base": self.base,
                "factors": self.factors, "seeds": self.seeds, "metric": self.metric}


@dataclass(frozen=True)
class Cell:
    id: str
    levels: tuple            # ((option, value), ...) in factor order

    @property
    def factors(self) -> dict:
        return dict(self.levels)


@dataclass(frozen=True)
class Job:
    cell: Cell
    seed: int

    @property
    def name(self) -> str:
        return f"{self.cell.id}-s{self.seed}"


def parse_grid(data, source: str = "experiment") -> Experiment:
    """An experiment mapping checked for its shape (keys, factors, seeds, metric); the cells'
    configs are checked where they are run (experiments/spec.py)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an experiment must be a mapping with base, factors and seeds")
    for key in data:
        if key not in TOP_KEYS:
            raise unknown_name(f"key in {source}:", key, TOP_KEYS)
    base_in = data.get("base") or {}
    factors_in = data.get("factors") or {}
    if not isinstance(base_in, dict) or not isinstance(factors_in, dict):
        raise ConfigError(f"{source}: base and factors must be mappings of option: value")
    base = {normalize_key(k): v for k, v in base_in.items()}
    factors = {}
    for key, levels in factors_in.items():
        name = normalize_key(key)
        if name not in FIELDS:
            raise unknown_name(f"factor in {source}:", key, FIELDS)
        if not isinstance(levels, list) or not levels:
            raise ConfigError(f"{source}: factor {key!r} must be a non-empty list of levels, got {levels!r}")
        if len(set(map(_slug, levels))) != len(levels):
            raise ConfigError(f"{source}: factor {key!r} lists the same level twice: {levels!r}")
        factors[name] = list(levels)
    for name in list(base) + list(factors):
        if name in RESERVED:
            raise ConfigError(f"{source}: {name!r} cannot be set in an experiment ({RESERVED[name]})")
    seeds = data.get("seeds", 1)
    if isinstance(seeds, bool) or not (isinstance(seeds, int) and seeds >= 1
                                       or isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"{source}: seeds must be a count >= 1 or a list of integers, got {seeds!r}")
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: seeds lists a seed twice: {seeds!r}")
    metric = data.get("metric", "final_test_acc")
    if metric not in METRICS:
        raise unknown_name("metric", metric, METRICS)
    return Experiment(base, factors, seeds, metric, str(data.get("name") or source), str(data.get("description") or ""))



def _slug(value) -> str:
    text = "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


def expand(exp: Experiment) -> list[Cell]:
    """The full grid, in a fixed order: the last factor varies fastest; the first cell is the
    baseline (the first level of every factor)."""
    names = list(exp.factors)
    cells = []
    for combo in itertools.product(*(exp.factors[n] for n in names)):
        levels = tuple(zip(names, combo))
        cid = ",".join(f"{n}={_slug(v)}" for n, v in levels) or "base"
        cells.append(Cell(cid, levels))
    return cells


def cell_config(exp: Experiment, cell: Cell, seed: int, out: Optional[str] = None) -> dict:
    cfg = dict(exp.base)
    cfg.update(cell.factors)
    cfg.update(seed=seed, progress=False)
    if out is not None:
        cfg["out"] = out
    return cfg


def jobs_of(exp: Experiment, cells: Optional[Sequence[Cell]] = None) -> list[Job]:
    return [Job(c, s) for c in (expand(exp) if cells is None else cells) for s in exp.seeds]
