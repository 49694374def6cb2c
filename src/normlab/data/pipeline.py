"""From a config to loaders: the one place the trainer, eval and predict get their data from.

`load(cfg)` loads the dataset, holds out the validation split, and fits the input transform on
what remains of the training split only; `build(cfg, device, drop_single)` returns device loaders
(train with augmentation, val, test); `Inputs.input_transform()` (data/inputs.py) rebuilds the
fitted transform from a run's preprocess.json so eval and predict apply exactly what training did.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import ConfigError
from . import augment as augment_mod
from . import preprocess as preprocess_mod
from .inputs import Inputs
from .loader import DeviceLoader
from .sources import Dataset, load_dataset
from .split import stratified_split

VAL_SEED_OFFSET = 7919
STREAM_FIT_SAMPLE = 2048  # images decoded to fit preprocessing on a streamed folder
STREAM_WORKERS = 2  # the val split depends on the run's seed, not on the train/test split's


@dataclass
class Pipeline:
    data: Dataset
    train: DeviceLoader
    test: DeviceLoader
    val: Optional[DeviceLoader]
    inputs: Inputs  # saved as preprocess.json in the run directory

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.inputs.input_shape

    @property
    def num_classes(self) -> int:
        return self.inputs.num_classes


def _resize_size(cfg):
    spec = cfg.resize
    return augment_mod._size_arg(spec) if spec else None


def _load_data(cfg) -> Dataset:
    size = _resize_size(cfg)
    kw = {}
    if cfg.dataset == "imagefolder":
        kw = {"resize": size, "strict": cfg.strict, "stream": cfg.stream}
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, mirror=cfg.data_mirror, **kw)
    if cfg.classes:
        keep_classes(data, cfg.classes)
    if "stream" in data.info:
        return data
    if size and tuple(data.train_x.shape[-2:]) != tuple(size):
        data.train_x = augment_mod.resize(data.train_x, size)
        data.test_x = augment_mod.resize(data.test_x, size)
    return data


def keep_classes(data: Dataset, spec: str) -> None:
    """Keep only the listed classes (names, or indices when no class has that name), relabelled
    0, 1, ... in the order given; "3,8" on MNIST keeps the digits 3 and 8 as labels 0 and 1."""
    from ..errors import ConfigError

    wanted = [s.strip() for s in str(spec).split(",") if s.strip()]
    index = []
    for w in wanted:
        if w in data.classes:
            index.append(data.classes.index(w))
        elif w.isdigit() and int(w) < len(data.classes):
            index.append(int(w))
        else:
            raise ConfigError(f"classes: {w!r} is neither a class of {data.name} nor an index below "
                              f"{len(data.classes)}; its classes are {', '.join(data.classes[:20])}")
    if len(set(index)) != len(index) or len(index) < 2:
        raise ConfigError(f"classes: give at least two different classes, e.g. --classes 3,8; got {spec!r}")
    if "stream" in data.info:
        raise ConfigError("classes: not available for a streamed image folder; use --stream off")
    lut = torch.full((len(data.classes),), -1, dtype=torch.int64)
    lut[torch.tensor(index)] = torch.arange(len(index))
    for split in ("train", "test"):
        y = getattr(data, f"{split}_y")
        sel = lut[y] >= 0
        setattr(data, f"{split}_x", getattr(data, f"{split}_x")[sel])
        setattr(data, f"{split}_y", lut[y[sel]])
    data.classes = [data.classes[i] for i in index]
    data.info = dict(data.info, classes_kept=list(data.classes), train_size=len(data.train_y),
                     test_size=len(data.test_y))


def split_val(data: Dataset, fraction: float, seed: int) -> Optional[tuple]:
    """Move a stratified, seeded `fraction` of the training split into (val_x, val_y)
    (for a streamed folder, val_x is the list of files)."""
    if not fraction:
        return None
    tr, va = stratified_split(data.train_y.numpy(), fraction, seed + VAL_SEED_OFFSET)
    if len(va) == 0 or len(tr) == 0:
        from ..errors import ConfigError

        raise ConfigError(f"val_split {fraction} leaves an empty split of {len(data.train_y)} training images")
    if "stream" in data.info:
        st = data.info["stream"]
        files = st["train"]
        st["train"], val_files = [files[i] for i in tr], [files[i] for i in va]
        shape = tuple(data.train_x.shape[1:])
        data.train_x = data.train_x[:1].expand(len(tr), *shape)
        data.info = dict(data.info, train_size=len(tr), val_size=len(va))
        held_y = data.train_y[torch.from_numpy(va)]
        data.train_y = data.train_y[torch.from_numpy(tr)]
        return val_files, held_y
    keep, held = torch.from_numpy(tr), torch.from_numpy(va)
    held_x, held_y = data.train_x[held], data.train_y[held]
    data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
    data.info = dict(data.info, train_size=len(tr), val_size=len(va))
    return held_x, held_y


def load(cfg, raw: Optional[Dataset] = None) -> tuple[Dataset, Inputs]:
    """The dataset a config names (val split held out) and its input record, fitted on the
    training split only. The val images ride along in `data.val` for `build`. `raw`: the data
    set as read for a config that differs from `cfg` in the seed alone, so it is not read again
    (the split replaces its tensors, never writes into them)."""
    data = dataclasses.replace(raw) if raw is not None and "stream" not in raw.info else _load_data(cfg)
    data.val = split_val(data, cfg.val_split, cfg.seed)
    aug = cfg.augment
    size = augment_mod.output_size(aug, data.train_x.shape[-2:])
    image_shape = (int(data.train_x.shape[1]), *size)
    if "stream" in data.info:  # fit on a seeded sample of the training files
        from . import imagefolder

        st = data.info["stream"]
        fit_x = imagefolder.decode_sample(st["train"], st["channels"], st["size"], STREAM_FIT_SAMPLE,
                                          cfg.seed, imagefolder.Report(False))
        fit_x = augment_mod.resize(fit_x, size)
    else:
        fit_x = augment_mod.deterministic(aug, data.train_x, size)
    transform = preprocess_mod.fit(cfg.preprocess, fit_x)
    # source_shape: the images' own size, before augmentation's pad/crop (predict needs it)
    normalize = None
    if transform.kind == "channel":  # the older record, read by tools that predate --preprocess
        hw = image_shape[1] * image_shape[2]
        normalize = {"mean": transform.center[::hw].tolist(), "std": transform.scale[::hw].tolist()}
    inputs = Inputs(image_shape, tuple(data.classes), source_shape=tuple(data.train_x.shape[1:]),
                    model_input_shape=tuple(transform.output_shape), transform=transform.to_dict(),
                    normalize=normalize, augment=aug, val_split=cfg.val_split,
                    background=background(fit_x[:BACKGROUND_SAMPLE]).mean().item(), dataset=data.info)
    return data, inputs


BACKGROUND_SAMPLE = 2000  # images whose border sets the training data's background level


def background(x: torch.Tensor) -> torch.Tensor:
    """Each uint8 image's background level in 0..1: the mean of its outermost ring of pixels
    (MNIST's digits sit on a black border, 0.0; a scan of ink on paper is near 1.0)."""
    x = x.float() / 255
    ring = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)
    return ring.flatten(1).mean(1)


def eval_resize(inputs: Inputs):
    """Test/val images get the augmentation's deterministic part only (pad, centre crop, resize)."""
    return lambda x, generator=None: augment_mod.deterministic(inputs.augment, x, inputs.size)


def build(cfg, device: torch.device, drop_single: bool, data: Optional[Dataset] = None,
          inputs: Optional[Inputs] = None) -> Pipeline:
    if data is None or inputs is None:
        data, inputs = load(cfg)
    if "stream" in data.info:
        return _build_stream(cfg, device, drop_single, data, inputs)
    transform = inputs.input_transform()
    order = torch.Generator().manual_seed(cfg.seed)
    aug = augment_mod.make_augment(cfg.augment)
    size = inputs.size
    if aug is None and tuple(data.train_x.shape[-2:]) != size:
        aug = eval_resize(inputs)
    train = DeviceLoader(data.train_x.to(device), data.train_y.to(device), cfg.batch_size, transform,
                         shuffle=True, generator=order, drop_single=drop_single, augment=aug,
                         batch_classes=cfg.batch_classes)
    eval_aug = eval_resize(inputs) if tuple(data.test_x.shape[-2:]) != size else None
    test = DeviceLoader(data.test_x.to(device), data.test_y.to(device), cfg.eval_batch_size, transform,
                        augment=eval_aug)
    val = None
    if data.val is not None:
        vx, vy = data.val
        val = DeviceLoader(vx.to(device), vy.to(device), cfg.eval_batch_size, transform, augment=eval_aug)
    return Pipeline(data, train, test, val, inputs)


def _stream(data, files, batch, transform, device, aug, **kw):
    from . import imagefolder

    st = data.info["stream"]
    report = imagefolder.Report(st.get("strict", False))
    return imagefolder.StreamLoader(files, st["channels"], st["size"], batch, transform, device,
                                    augment=aug, workers=STREAM_WORKERS, report=report, **kw)


def _build_stream(cfg, device, drop_single, data, inputs: Inputs) -> Pipeline:
    if cfg.batch_classes is not None:
        raise ConfigError("batch_classes: class-skewed batches are built for datasets held in memory; this "
                          "image folder streams from disk: add --stream off, or drop --batch-classes")
    transform = inputs.input_transform()
    st = data.info["stream"]
    aug = augment_mod.make_augment(cfg.augment)
    eval_aug = eval_resize(inputs) if tuple(st["size"]) != inputs.size else None
    if aug is None:
        aug = eval_aug
    train = _stream(data, st["train"], cfg.batch_size, transform, device, aug, shuffle=True,
                    generator=torch.Generator().manual_seed(cfg.seed), drop_single=drop_single)
    test = _stream(data, st["test"], cfg.eval_batch_size, transform, device, eval_aug)
    val = None
    if data.val is not None:
        val = _stream(data, data.val[0], cfg.eval_batch_size, transform, device, eval_aug)
    return Pipeline(data, train, test, val, inputs)


def test_loader(cfg, inputs: Inputs, device: torch.device) -> DeviceLoader:
    """The test split of a run's dataset, transformed as the run was (for `normlab eval`)."""
    return eval_loader(cfg, inputs, device, "test")


def eval_loader(cfg, inputs: Inputs, device: torch.device, split: str = "test") -> DeviceLoader:
    """A split of a run's dataset as evaluation sees it: transformed as the run was, in order,
    with no augmentation beyond resizing. split "train" is the run's own training split (its
    val_split held out with the same seed), for a train accuracy measured in eval mode."""
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    data = _load_data(cfg)
    if split == "train":
        split_val(data, cfg.val_split, cfg.seed)
    size = inputs.size
    if "stream" in data.info:
        eval_aug = eval_resize(inputs) if tuple(data.info["stream"]["size"]) != size else None
        return _stream(data, data.info["stream"][split], cfg.eval_batch_size, inputs.input_transform(),
                       device, eval_aug)
    x, y = (data.test_x, data.test_y) if split == "test" else (data.train_x, data.train_y)
    eval_aug = eval_resize(inputs) if tuple(x.shape[-2:]) != size else None
    return DeviceLoader(x.to(device), y.to(device), cfg.eval_batch_size, inputs.input_transform(),
                        augment=eval_aug)
