"""An experiment file checked before anything trains: its grid (normlab/grid.py) and every cell's
config, refused the way `normlab train` would refuse it."""

from __future__ import annotations

from pathlib import Path

from ..config import load_config_file, make_config
from ..errors import ConfigError
from ..grid import Experiment, cell_config, expand, parse_grid
from ..train.resolve import resolve


def parse_experiment(data, source: str = "experiment") -> Experiment:
    """Check an experiment mapping and every cell's config before any training starts."""
    exp = parse_grid(data, source)
    for cell in expand(exp):  # every cell must be a valid config, checked now, not mid-sweep
        try:
            resolve(make_config(cell_config(exp, cell, exp.seeds[0])))  # as `normlab train` would
        except ConfigError as exc:
            raise ConfigError(f"{source}: cell {cell.id}: {exc}") from None
    return exp



def load_experiment(path) -> Experiment:
    return parse_experiment(load_config_file(path), source=Path(path).stem)
