"""From a config to loaders: the one place the trainer, eval and predict get their data from.

`build(cfg, device, drop_single)` loads the dataset, fits the input transform on the training
split only, and returns device loaders; `input_transform(preprocess)` rebuilds that transform
from a run's preprocess.json so eval and predict apply exactly what training did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .loader import DeviceLoader, Normalize, channel_stats
from .sources import Dataset, load_dataset


@dataclass
class Pipeline:
    data: Dataset
    train: DeviceLoader
    test: DeviceLoader
    val: Optional[DeviceLoader]
    preprocess: dict  # saved as preprocess.json in the run directory

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.preprocess["input_shape"])

    @property
    def num_classes(self) -> int:
        return len(self.preprocess["classes"])


def input_transform(preprocess: dict):
    """uint8 batch -> model input, as fitted at training time."""
    return Normalize.from_dict(preprocess["normalize"])


def load(cfg) -> tuple[Dataset, dict]:
    """The dataset a config names and its preprocess record (fitted on the training split)."""
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir)
    normalize = Normalize(*channel_stats(data.train_x))
    preprocess = {"input_shape": list(data.shape), "classes": data.classes,
                  "normalize": normalize.to_dict(), "dataset": data.info}
    return data, preprocess


def build(cfg, device: torch.device, drop_single: bool, data: Optional[Dataset] = None,
          preprocess: Optional[dict] = None) -> Pipeline:
    if data is None:
        data, preprocess = load(cfg)
    transform = input_transform(preprocess)
    order = torch.Generator().manual_seed(cfg.seed)
    train = DeviceLoader(data.train_x.to(device), data.train_y.to(device), cfg.batch_size, transform,
                         shuffle=True, generator=order, drop_single=drop_single)
    test = DeviceLoader(data.test_x.to(device), data.test_y.to(device), cfg.eval_batch_size, transform)
    return Pipeline(data, train, test, None, preprocess)


def test_loader(cfg, preprocess: dict, device: torch.device) -> DeviceLoader:
    """The test split of a run's dataset, transformed as the run was (for `normlab eval`)."""
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir)
    return DeviceLoader(data.test_x.to(device), data.test_y.to(device), cfg.eval_batch_size,
                        input_transform(preprocess))
