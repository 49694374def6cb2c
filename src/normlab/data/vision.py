"""The torchvision datasets (MNIST family, CIFAR, SVHN), loaded offline through torchvision's code.

normlab never downloads: `--data-dir ROOT` must already hold torchvision's layout (for example
`ROOT/FashionMNIST/raw/train-images-idx3-ubyte.gz`). When files are missing the error lists each
file, where it goes, and its MD5, so the set can be fetched on another machine and copied over.
Compressed archives that torchvision would have unpacked after a download (the `.gz` IDX files,
CIFAR's tarball) are unpacked here, then torchvision's own dataset classes read them.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DataError


def _root(name: str, data_dir: Optional[str]) -> Path:
    if not data_dir:
        raise DataError(f"dataset {name!r} lives on disk: pass --data-dir ROOT (the folder that holds "
                        f"torchvision's layout; `normlab datasets` lists the files each set needs)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"--data-dir {str(root)!r} is not a folder")
    return root


def _missing_error(name: str, root: Path, where: Path, needed: list[tuple[str, str]], url: str) -> DataError:
    lines = "\n".join(f"  {where / f}  (md5 {md5})" for f, md5 in needed)
    return DataError(f"dataset {name!r} is not present under {str(root)!r} "
                     f"and normlab does not download. Place these files:\n{lines}\n"
                     f"(from {url}; compressed files are unpacked on first use)")


# ---------------------------------------------------------------- MNIST family
def _mnist_files(cls) -> list[tuple[str, str]]:
    return [(f, md5) for f, md5 in cls.resources]


def mnist_requirements(cls, root: Path) -> list[tuple[Path, str]]:
    raw = root / cls.__name__ / "raw"
    return [(raw / f, md5) for f, md5 in _mnist_files(cls)]


def mnist_present(cls, root: Path) -> bool:
    raw = root / cls.__name__ / "raw"
    return all((raw / f).is_file() or (raw / f[:-3]).is_file() for f, _ in _mnist_files(cls))


def _load_mnist_like(cls, name: str, data_dir: Optional[str]):
    from torchvision.datasets.utils import extract_archive

    root = _root(name, data_dir)
    raw = root / cls.__name__ / "raw"
    missing = [(f, md5) for f, md5 in _mnist_files(cls) if not (raw / f).is_file() and not (raw / f[:-3]).is_file()]
    if missing:
        raise _missing_error(name, root, raw, missing, cls.mirrors[0] if getattr(cls, "mirrors", None) else "the dataset's site")
    for f, _ in _mnist_files(cls):
        if not (raw / f[:-3]).is_file():  # torchvision reads the unpacked IDX files
            try:
                extract_archive(str(raw / f), str(raw))
            except (OSError, EOFError) as exc:
                raise DataError(f"{str(raw / f)!r} is not a valid gzip file ({exc}); replace it") from None
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
            raise DataError(f"dataset {name!r} under {str(raw)!r} could not be read as IDX files: {exc}") from None
        splits.append((ds.data.to(torch.uint8).unsqueeze(1).contiguous(), ds.targets.to(torch.int64)))
    return splits, list(cls.classes)


# ---------------------------------------------------------------- CIFAR
def _cifar_class(base):
    """torchvision's CIFAR reader, checking that the batch files exist rather than their MD5, so
    a re-packed or test-sized copy in the same format loads (the MD5s are listed for downloads)."""

    class PresentOnly(base):
        def _check_integrity(self) -> bool:
            folder = os.path.join(self.root, self.base_folder)
            return all(os.path.isfile(os.path.join(folder, f)) for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            with open(path, "rb") as infile:
                self.classes = pickle.load(infile, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    PresentOnly.__name__ = base.__name__
    return PresentOnly


def cifar_requirements(cls, root: Path) -> list[tuple[Path, str]]:
    folder = root / cls.base_folder
    files = [tuple(x) for x in cls.train_list + cls.test_list] + [(cls.meta["filename"], cls.meta["md5"])]
    return [(folder / f, md5) for f, md5 in files]


def cifar_present(cls, root: Path) -> bool:
    return all(p.is_file() for p, _ in cifar_requirements(cls, root)) or (root / cls.filename).is_file()


def _load_cifar(cls, name: str, data_dir: Optional[str]):
    from torchvision.datasets.utils import extract_archive

    root = _root(name, data_dir)
    needed = cifar_requirements(cls, root)
    if not all(p.is_file() for p, _ in needed) and (root / cls.filename).is_file():
        extract_archive(str(root / cls.filename), str(root))
    missing = [(p.name, md5) for p, md5 in needed if not p.is_file()]
    if missing:
        err = _missing_error(name, root, root / cls.base_folder, missing, cls.url)
        raise DataError(f"{err}\nor place the archive {root / cls.filename} (md5 {cls.tgz_md5})")
    splits = []
    for train in (True, False):
        try:
            ds = _cifar_class(cls)(str(root), train=train, download=False)
        except (RuntimeError, ValueError, KeyError, pickle.UnpicklingError, EOFError) as exc:
            raise DataError(f"dataset {name!r} under {str(root / cls.base_folder)!r} could not be read "
                            f"as CIFAR batches: {exc}") from None
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        splits.append((x, torch.as_tensor(ds.targets, dtype=torch.int64)))
    return splits, list(ds.classes)


# ---------------------------------------------------------------- SVHN
def svhn_requirements(root: Path) -> list[tuple[Path, str]]:
    from torchvision.datasets import SVHN

    return [(root / SVHN.split_list[s][1], SVHN.split_list[s][2]) for s in ("train", "test")]


def _load_svhn(name: str, data_dir: Optional[str]):
    from torchvision.datasets import SVHN

    class PresentOnly(SVHN):
        def _check_integrity(self) -> bool:
            return os.path.isfile(os.path.join(self.root, self.filename))

    root = _root(name, data_dir)
    missing = [(p.name, md5) for p, md5 in svhn_requirements(root) if not p.is_file()]
    if missing:
        raise _missing_error(name, root, root, missing, "http://ufldl.stanford.edu/housenumbers/")
    splits = []
    for split in ("train", "test"):
        try:
            ds = PresentOnly(str(root), split=split, download=False)
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise DataError(f"dataset {name!r}: {str(root / SVHN.split_list[split][1])!r} could not be read: {exc}") from None
        splits.append((torch.from_numpy(np.ascontiguousarray(ds.data)), torch.as_tensor(ds.labels, dtype=torch.int64)))
    return splits, [str(i) for i in range(10)]
