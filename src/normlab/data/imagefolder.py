"""`ROOT/class/image.png` folders, decoded with torchvision.io.

Layout: `ROOT/train/<class>/*` + `ROOT/test/<class>/*` when both exist, else `ROOT/<class>/*` split
into train/test per class with a fixed seed. Every image becomes uint8 (C, H, W) of one size and
one channel count: RGB if any image is in colour, else grayscale; images of another size are
resized (antialiased) to `resize` or to the size of the first image. Files that cannot be decoded
are reported with their path and reason and skipped (`strict=True` makes the first one an error).

Small folders are decoded once into memory (then live on the device like MNIST); large ones stream
through `StreamLoader`, a DataLoader whose workers decode files, so memory stays bounded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from ..deps import torchvision as import_torchvision
from ..errors import DataError
from .split import stratified_split

EXTENSIONS = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


def _class_files(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"image folder {str(folder)!r} has no class sub-folders; expected "
                        f"{folder}/<class>/<image>.png (one folder per class)")
    files = []
    for k, c in enumerate(classes):
        # Not only regular files: a FIFO or a device named like an image is kept here so that
        # decode() refuses it by name (skipped with its reason) instead of it vanishing unseen.
        files += [(str(p), k) for p in sorted((folder / c).rglob("*"))
                  if not p.is_dir() and p.suffix.lower() in EXTENSIONS]
    if not files:
        raise DataError(f"image folder {str(folder)!r} holds no images ({', '.join(sorted(EXTENSIONS))})")
    return classes, files


def scan(root) -> tuple[list[str], list[tuple[str, int]], Optional[list[tuple[str, int]]]]:
    """(classes, train files, test files or None when the folder has no train/test split)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"--data-dir {str(root)!r} is not a folder; imagefolder needs ROOT/<class>/<image>")
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes, train = _class_files(root / "train")
        test_classes, test = _class_files(root / "test")
        if test_classes != classes:
            raise DataError(f"{str(root / 'test')!r} has classes {test_classes}, but "
                            f"{str(root / 'train')!r} has {classes}; they must be the same")
        return classes, train, test
    classes, files = _class_files(root)
    return classes, files, None


# Pillow's own bound on a decoded image (89.5 megapixels, about 268 MB as RGB): a header claiming
# more is refused before anything is allocated, so a tiny file cannot ask for gigabytes.
MAX_PIXELS = 89_478_485


def check_pixels(path) -> None:
    """Raise ValueError if the file's header claims more than MAX_PIXELS pixels (reads the header only)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                w, h = img.size
        except Image.DecompressionBombError:
            w = h = None
    if w is None or w * h > MAX_PIXELS:
        size = "more pixels" if w is None else f"{w}x{h} pixels"
        raise ValueError(f"its header claims {size} than the limit of {MAX_PIXELS:,} (a decompression bomb, or "
                         f"an image far too large for a classifier; shrink it first)")


def to_uint8(img):
    """16-bit samples scaled to 8 bits by their high byte, as Pillow does for 16-bit RGB PNGs, so
    training (torchvision) and predict (Pillow) see the same pixels; 8-bit input unchanged."""
    if img.dtype == torch.uint16:
        return (img.to(torch.int32) >> 8).to(torch.uint8)
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    return img


def decode(path: str) -> torch.Tensor:
    """uint8 (C, H, W) with C as stored (1..4); raises on undecodable or oversized files, and on
    anything but a regular file (a FIFO would block the reader forever) before opening it."""
    import warnings

    from .validate import regular

    regular(path, "image")
    check_pixels(path)
    with warnings.catch_warnings():  # torchvision 0.29 warns that TorchCodec will take over decoding
        warnings.simplefilter("ignore", DeprecationWarning)
        tvio = import_torchvision("torchvision.io")

        return to_uint8(tvio.decode_image(tvio.read_file(path), mode=tvio.ImageReadMode.UNCHANGED))


def conform(img: torch.Tensor, channels: int, size: tuple[int, int]) -> tuple[torch.Tensor, bool]:
    """To `channels` (1 or 3) and `size`; returns (image, whether the channel count changed)."""
    F = import_torchvision("torchvision.transforms.v2.functional")

    c = img.shape[0]
    if c in (2, 4):  # drop alpha
        img, c = img[:-1], c - 1
    changed = c != channels
    if c == 1 and channels == 3:
        img = img.expand(3, -1, -1)
    elif c == 3 and channels == 1:
        img = F.rgb_to_grayscale(img)
    if tuple(img.shape[1:]) != tuple(size):
        img = F.resize(img, list(size), antialias=True)
    return img.contiguous(), changed


class Report:
    """Collects skipped files and conversions, and says each kind of event once."""

    def __init__(self, strict: bool, log=None):
        self.strict = strict
        self.skipped: list[dict] = []
        self.converted = 0
        self.log = log or (lambda msg: print(msg, file=sys.stderr))

    def bad(self, path: str, reason: str) -> None:
        if self.strict:
            raise DataError(f"image {path!r} could not be decoded ({reason}); remove it, or drop --strict "
                            f"to skip undecodable images")
        self.log(f"normlab: skipping {path!r}: {reason}")
        self.skipped.append({"path": path, "reason": reason})

    def finish(self, channels: int) -> None:
        if self.converted:
            kind = "RGB" if channels == 3 else "grayscale"
            self.log(f"normlab: converted {self.converted} image(s) to {kind} to match the rest of the folder")
        if self.skipped:
            self.log(f"normlab: skipped {len(self.skipped)} image(s) that could not be decoded")


def _decode_all(files, report: Report):
    out, labels = [], []
    for path, label in files:
        try:
            out.append(decode(path))
            labels.append(label)
        except Exception as exc:  # torchvision.io raises RuntimeError/ValueError by decoder
            report.bad(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return out, labels


def target_format(images, resize) -> tuple[int, tuple[int, int]]:
    channels = 3 if any(im.shape[0] >= 3 for im in images) else 1
    size = tuple(resize) if resize else tuple(images[0].shape[1:])
    return channels, size


def load_in_memory(root, resize=None, strict=False, split_seed=0, test_fraction=0.2, log=None):
    """(classes, (train_x, train_y), (test_x, test_y), info) with all images decoded."""
    classes, train, test = scan(root)
    report = Report(strict, log)
    imgs, labels = _decode_all(train + (test or []), report)
    if not imgs:
        raise DataError(f"no image under {str(root)!r} could be decoded")
    channels, size = target_format(imgs, resize)
    conformed = []
    for im in imgs:
        im, changed = conform(im, channels, size)
        report.converted += changed
        conformed.append(im)
    report.finish(channels)
    x = torch.stack(conformed)
    y = torch.tensor(labels, dtype=torch.int64)
    if test is not None:
        n_train = len(train) - sum(1 for s in report.skipped if s["path"] in {p for p, _ in train})
        tr, te = np.arange(n_train), np.arange(n_train, len(y))
    else:
        tr, te = stratified_split(y.numpy(), test_fraction, split_seed)
    info = {"origin": f"image folder {root}", "skipped": report.skipped, "converted": report.converted,
            "split": "train/test folders" if test is not None else f"stratified, seed {split_seed}"}
    return classes, (x[tr], y[tr]), (x[te], y[te]), info


# ---------------------------------------------------------------- streaming
class FolderStream(torch.utils.data.Dataset):
    """Decodes one file per item in a DataLoader worker; undecodable files come back as None."""

    def __init__(self, files, channels: int, size):
        self.files, self.channels, self.size = list(files), channels, tuple(size)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        path, label = self.files[i]
        try:
            img, changed = conform(decode(path), self.channels, self.size)
            return img, label, changed, None
        except Exception as exc:
            return None, label, False, (path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _collate(items):
    good = [it for it in items if it[0] is not None]
    x = torch.stack([it[0] for it in good]) if good else None
    y = torch.tensor([it[1] for it in good], dtype=torch.int64)
    return x, y, sum(it[2] for it in good), [it[3] for it in items if it[3] is not None]


class StreamLoader:
    """Same interface as DeviceLoader (iterate -> normalized batches, `len`, `num_samples`) for
    folders too large for memory: workers decode, the main process augments and normalizes the
    batch on the device, so augmentation has the same semantics as the device-resident path."""

    def __init__(self, files, channels, size, batch_size, normalize, device, shuffle=False,
                 generator=None, drop_single=False, augment=None, workers=2, report: Optional[Report] = None):
        self.files, self.channels, self.size = files, channels, size
        self.batch_size, self.normalize, self.device = batch_size, normalize, device
        self.shuffle, self.generator, self.drop_single = shuffle, generator, drop_single
        self.augment, self.workers = augment, workers
        self.report = report or Report(False)
        # What code written for DeviceLoader reads: the labels, and `x.device` (an empty tensor
        # on the device, since the images stay on disk).
        self.y = torch.tensor([k for _, k in files], dtype=torch.int64, device=device)
        self.x = torch.empty((0, channels) + tuple(size), dtype=torch.uint8, device=device)

    def __len__(self):
        full, rest = divmod(len(self.files), self.batch_size)
        return full + (rest > 0)

    @property
    def num_samples(self):
        return len(self.files)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(
            FolderStream(self.files, self.channels, self.size), batch_size=self.batch_size,
            shuffle=self.shuffle, generator=self.generator, num_workers=self.workers,
            collate_fn=_collate, persistent_workers=False)
        for x, y, converted, bad in loader:
            self.report.converted += converted
            for path, reason in bad:
                self.report.bad(path, reason)
            if x is None or (self.drop_single and len(y) == 1):
                continue
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.augment is not None:
                x = self.augment(x, self.generator)
            yield self.normalize(x), y


STREAM_BYTES = 2 * 1024**3  # above this decoded size, `stream=auto` streams instead of loading
SAMPLE_FOR_FORMAT = 64


def plan_stream(root, resize=None, split_seed=0, test_fraction=0.2, log=None):
    """File lists and output format for streaming, decoding only a seeded sample of the files.

    The channel count is RGB if any sampled image is in colour; the size is `resize` or the first
    sampled image's. Returns (classes, train files, test files, channels, size, estimated bytes)."""
    classes, train, test = scan(root)
    everything = train + (test or [])
    rng = np.random.default_rng(split_seed)
    pick = rng.permutation(len(everything))[:SAMPLE_FOR_FORMAT]
    sample = []
    for i in pick:
        try:
            sample.append(decode(everything[i][0]))
        except Exception:
            continue  # reported when the loader reaches it
    if not sample:
        raise DataError(f"none of {len(pick)} sampled images under {str(root)!r} could be decoded")
    channels, size = target_format(sample, resize)
    if test is None:
        labels = np.array([k for _, k in train])
        tr, te = stratified_split(labels, test_fraction, split_seed)
        train, test = [train[i] for i in tr], [train[i] for i in te]
    nbytes = len(everything) * channels * size[0] * size[1]
    return classes, train, test, channels, tuple(size), nbytes


def decode_sample(files, channels, size, count, seed, report: Report) -> torch.Tensor:
    """A seeded sample of `count` files decoded to (n, C, H, W), to fit preprocessing on."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(len(files))[:count]:
        try:
            out.append(conform(decode(files[i][0]), channels, size)[0])
        except Exception:
            continue
    if not out:
        raise DataError("no training image could be decoded to fit the preprocessing on")
    return torch.stack(out)
