"""Device-resident batches: the whole (small) dataset sits on the device as uint8 once.

Each epoch draws one permutation from a seeded generator and slices it; conversion to float and
normalization happen per batch on the device. There is no per-sample Python in the hot path,
which is where the tutorials' DataLoader + PIL + ToTensor pipeline spends most of its time.
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch


def channel_stats(x_uint8: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, on the 0..1 scale (as ToTensor produces)."""
    x = x_uint8.to(torch.float64).div_(255.0)
    dims = [0] + list(range(2, x.dim()))
    std = x.std(dim=dims, unbiased=False)
    return x.mean(dim=dims).tolist(), std.clamp_min(1e-8).tolist()


class Normalize:
    """uint8 (N, C, H, W) -> float, scaled to 0..1 and standardized per channel."""

    def __init__(self, mean, std):
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self._cache: dict = {}

    def _consts(self, device, dtype):
        key = (device, dtype)
        if key not in self._cache:
            shape = (1, len(self.mean), 1, 1)
            m = torch.tensor(self.mean, dtype=dtype, device=device).view(shape)
            s = torch.tensor(self.std, dtype=dtype, device=device).view(shape)
            # Fold /255 and the standardization into one multiply-add.
            self._cache[key] = (1.0 / (255.0 * s), m / s)
        return self._cache[key]

    def __call__(self, x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        scale, shift = self._consts(x.device, dtype)
        return torch.addcmul(-shift, x.to(dtype), scale)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalize":
        return cls(d["mean"], d["std"])


class DeviceLoader:
    """Batches of (float images, labels) from uint8 tensors already on the device.

    shuffle: a new permutation per epoch from `generator` (CPU, seeded), so the data order is
    the same on every device for a given seed. drop_single: drop a final batch of exactly one
    sample (BatchNorm cannot normalize a single value per channel in training).
    batch_classes: class-skewed batches (data/skewed.py): each batch holds batch_size / K
    examples of each of K classes, instead of a uniform shuffle (training only).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, normalize: Normalize,
                 shuffle: bool = False, generator: Optional[torch.Generator] = None,
                 drop_single: bool = False, augment=None, batch_classes: Optional[int] = None):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.normalize = normalize
        self.shuffle = shuffle
        self.generator = generator
        self.drop_single = drop_single
        self.augment = augment
        self.batch_classes = batch_classes
        if batch_classes is not None:
            from . import skewed

            skewed.check(batch_size, batch_classes, y)

    def __len__(self) -> int:
        n = len(self.y)
        if self.batch_classes is not None:
            from . import skewed

            return skewed.batch_count(self.y, self.batch_size, self.batch_classes)
        full, rest = divmod(n, self.batch_size)
        if rest == 1 and self.drop_single and n > 1:
            rest = 0
        return full + (rest > 0)

    @property
    def num_samples(self) -> int:
        n = len(self.y)
        if self.drop_single and n % self.batch_size == 1 and n > 1:
            return n - 1
        return n

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.batch_classes is not None:
            yield from self._skewed()
            return
        n = len(self.y)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
        else:
            order = None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min(n, (i + 1) * self.batch_size))
            if order is None:
                xb, yb = self.x[sl], self.y[sl]
            else:
                idx = order[sl]
                # index_select: a plain row gather, far cheaper than generic advanced indexing
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            yield self.normalize(xb), yb

    def _skewed(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from . import skewed

        k = self.batch_classes
        assert k is not None  # only called with class-skewed batches
        for idx in skewed.batches(self.y, self.batch_size, k, self.generator):
            if self.drop_single and len(idx) == 1:  # batch norm cannot train on one sample
                continue
            idx = idx.to(self.x.device)
            xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            yield self.normalize(xb), yb
