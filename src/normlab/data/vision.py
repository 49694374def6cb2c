"""The torchvision datasets (MNIST family, CIFAR, SVHN): fetched on demand, read by torchvision's code.

Each set lives under the data root (download.data_root) in torchvision's own layout, e.g.
`ROOT/FashionMNIST/raw/train-images-idx3-ubyte.gz`, so a folder torchvision filled works as is. The
files, their MD5s and the publishers' URLs are taken from torchvision's dataset classes. A missing
set is downloaded (download.py: mirrors, checksums, resume, a lock) unless offline, where the error
lists each file, where it goes and its MD5. Archives are unpacked next to themselves under the same
lock, through a temporary name, so an interrupted unpack never looks finished.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import DataError
from . import download
from .download import Remote

# Bytes of each file as its publisher serves it (shown by `normlab datasets`; the MD5 is what is checked).
PUBLISHED_BYTES = {
    "MNIST/raw/train-images-idx3-ubyte.gz": 9912422, "MNIST/raw/train-labels-idx1-ubyte.gz": 28881,
    "MNIST/raw/t10k-images-idx3-ubyte.gz": 1648877, "MNIST/raw/t10k-labels-idx1-ubyte.gz": 4542,
    "FashionMNIST/raw/train-images-idx3-ubyte.gz": 26421880, "FashionMNIST/raw/train-labels-idx1-ubyte.gz": 29515,
    "FashionMNIST/raw/t10k-images-idx3-ubyte.gz": 4422102, "FashionMNIST/raw/t10k-labels-idx1-ubyte.gz": 5148,
    "KMNIST/raw/train-images-idx3-ubyte.gz": 18165135, "KMNIST/raw/train-labels-idx1-ubyte.gz": 29497,
    "KMNIST/raw/t10k-images-idx3-ubyte.gz": 3041136, "KMNIST/raw/t10k-labels-idx1-ubyte.gz": 5120,
    "cifar-10-python.tar.gz": 170498071, "cifar-100-python.tar.gz": 169001437,
    "train_32x32.mat": 182040794, "test_32x32.mat": 64275384,
}


def _tv(name):
    # torchvision is imported on first use: about a second that runs on mnist5k or digits skip.
    from ..deps import torchvision as import_torchvision

    return getattr(import_torchvision("torchvision.datasets"), name)


@dataclass
class VisionSet:
    """One torchvision dataset: its files, whether they are in place, how to unpack and read them."""

    name: str
    kind: str  # mnist, cifar or svhn
    cls_name: str

    @property
    def cls(self):
        return _tv(self.cls_name)

    # ------------------------------------------------------------ files
    def remotes(self) -> list[Remote]:
        """The files a download fetches, with the MD5s to check (NORMLAB_DATA_CHECKSUMS may replace them)."""
        cls, over = self.cls, download.checksum_overrides()
        if self.kind == "mnist":
            items = [(f"{cls.__name__}/raw/{f}", md5, tuple(m + f for m in cls.mirrors)) for f, md5 in cls.resources]
        elif self.kind == "cifar":
            items = [(cls.filename, cls.tgz_md5, (cls.url,))]
        else:
            items = [(cls.split_list[s][1], cls.split_list[s][2], (cls.split_list[s][0],)) for s in ("train", "test")]
        return [Remote(p, over.get(p, md5), urls, PUBLISHED_BYTES.get(p, 0)) for p, md5, urls in items]

    def where(self, root: Path) -> Path:
        """The folder the set's files go in."""
        if self.kind == "mnist":
            return root / self.cls_name / "raw"
        return root

    def has(self, root: Path, remote: Remote) -> bool:
        """A file counts when it, or what it unpacks to, is there (a `.part` never does)."""
        path = root / remote.path
        if path.is_file():
            return True
        if self.kind == "mnist":
            return path.with_suffix("").is_file()
        if self.kind == "cifar":
            return all(p.is_file() for p in self._cifar_files(root))
        return False

    def missing(self, root: Path) -> list[Remote]:
        return [r for r in self.remotes() if not self.has(root, r)]

    def present(self, root: Path) -> bool:
        return root.is_dir() and not self.missing(root)

    def _cifar_files(self, root: Path) -> list[Path]:
        cls = self.cls
        names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return [root / cls.base_folder / f for f in names]

    # ------------------------------------------------------------ getting them
    def ensure(self, root: Path, mirror: Optional[str] = None, log: Callable[[str], None] = print) -> None:
        """Download what is missing and unpack it, under the set's lock; offline, say what to place."""
        if not self.missing(root) and self._unpacked(root):
            return
        if self.missing(root) and download.offline():
            raise self.missing_error(root, "normlab is offline (--offline or NORMLAB_OFFLINE=1)")
        if self.missing(root) and root.exists() and not root.is_dir():
            raise DataError(f"data root {str(root)!r} is not a folder")
        with download.lock(root, self.name, log):
            todo = self.missing(root)  # another process may have fetched them while we waited
            if todo:
                log(f"normlab: dataset {self.name!r} is not under {root}; downloading "
                    f"{len(todo)} file(s) (offline use: `normlab datasets {self.name}`)")
                download.fetch_all(self.name, root, todo, mirror=mirror, log=log)
            self._unpack(root)

    def _unpacked(self, root: Path) -> bool:
        if self.kind == "mnist":
            raw = self.where(root)
            return all((raw / f[:-3]).is_file() for f, _ in self.cls.resources)
        if self.kind == "cifar":
            return all(p.is_file() for p in self._cifar_files(root))
        return True

    def _unpack(self, root: Path) -> None:
        """torchvision reads the unpacked IDX files and the CIFAR batch folder; each is written under
        a temporary name and renamed, so a kill half-way leaves nothing that looks complete."""
        if self.kind == "mnist":
            raw = self.where(root)
            for f, _ in self.cls.resources:
                dest = raw / f[:-3]
                if dest.is_file():
                    continue
                tmp = dest.with_name(dest.name + ".part")
                try:
                    with gzip.open(raw / f, "rb") as src, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except (OSError, EOFError) as exc:
                    tmp.unlink(missing_ok=True)
                    raise DataError(f"{str(raw / f)!r} is not a valid gzip file ({exc}); delete it and "
                                    f"run again to download it, or replace it") from None
                os.replace(tmp, dest)
        elif self.kind == "cifar" and not self._unpacked(root):
            cls = self.cls
            archive = root / cls.filename
            tmp = Path(tempfile.mkdtemp(prefix=f".{cls.base_folder}.", dir=root))
            try:
                try:
                    with tarfile.open(archive, "r:gz") as tar:
                        if hasattr(tarfile, "data_filter"):  # refuse links and paths out of the folder
                            tar.extractall(tmp, filter="data")
                        else:  # pragma: no cover - Python < 3.10.12
                            tar.extractall(tmp)
                except (OSError, EOFError, tarfile.TarError) as exc:
                    raise DataError(f"{str(archive)!r} is not a valid CIFAR archive ({exc}); delete it and "
                                    f"run again to download it, or replace it") from None
                if not (tmp / cls.base_folder).is_dir():
                    raise DataError(f"{str(archive)!r} holds no {cls.base_folder}/ folder; is it the CIFAR "
                                    f"archive? Delete it and run again to download it")
                dest = root / cls.base_folder
                if dest.exists():  # an incomplete folder from elsewhere: the archive's copy wins
                    shutil.rmtree(dest)
                os.replace(tmp / cls.base_folder, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def missing_error(self, root: Path, why: str) -> DataError:
        missing = self.missing(root)
        lines = "\n".join(f"  {root / r.path}  (md5 {r.md5}, from {r.urls[0]})" for r in missing)
        extra = ""
        if self.kind == "cifar":
            extra = f"\n(or the unpacked folder {root / self.cls.base_folder}/)"
        return DataError(f"dataset {self.name!r} is not present under {str(root)!r} and {why}. "
                         f"Place these files:\n{lines}{extra}")

    # ------------------------------------------------------------ reading
    def read(self, root: Path):
        """((train_x, train_y), (test_x, test_y)), classes: uint8 (N, C, H, W) and int64 labels."""
        return {"mnist": self._read_mnist, "cifar": self._read_cifar, "svhn": self._read_svhn}[self.kind](root)

    def _read_mnist(self, root: Path):
        cls = self.cls
        splits = []
        for train in (True, False):
            try:
                ds = cls(str(root), train=train, download=False)
            except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
                raise DataError(f"dataset {self.name!r} under {str(self.where(root))!r} could not be read "
                                f"as IDX files: {exc}") from None
            splits.append((ds.data.to(torch.uint8).unsqueeze(1).contiguous(), ds.targets.to(torch.int64)))
        return splits, list(cls.classes)

    def _read_cifar(self, root: Path):
        splits = []
        for train in (True, False):
            try:
                ds = _cifar_class(self.cls)(str(root), train=train, download=False)
            except (RuntimeError, ValueError, KeyError, pickle.UnpicklingError, EOFError) as exc:
                raise DataError(f"dataset {self.name!r} under {str(root / self.cls.base_folder)!r} could not "
                                f"be read as CIFAR batches: {exc}") from None
            x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
            splits.append((x, torch.as_tensor(ds.targets, dtype=torch.int64)))
        return splits, list(ds.classes)

    def _read_svhn(self, root: Path):
        SVHN = self.cls

        class PresentOnly(SVHN):
            def _check_integrity(self) -> bool:
                return os.path.isfile(os.path.join(self.root, self.filename))

        splits = []
        for split in ("train", "test"):
            try:
                ds = PresentOnly(str(root), split=split, download=False)
            except (RuntimeError, ValueError, KeyError, OSError) as exc:
                raise DataError(f"dataset {self.name!r}: {str(root / SVHN.split_list[split][1])!r} could not "
                                f"be read: {exc}") from None
            splits.append((torch.from_numpy(np.ascontiguousarray(ds.data)), torch.as_tensor(ds.labels, dtype=torch.int64)))
        return splits, [str(i) for i in range(10)]


def _cifar_class(base):
    """torchvision's CIFAR reader, checking that the batch files exist rather than their MD5, so
    a re-packed or test-sized copy in the same format loads (downloads are checked in download.py)."""

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


SETS: dict[str, VisionSet] = {s.name: s for s in (
    VisionSet("mnist", "mnist", "MNIST"),
    VisionSet("fashion-mnist", "mnist", "FashionMNIST"),
    VisionSet("kmnist", "mnist", "KMNIST"),
    VisionSet("cifar10", "cifar", "CIFAR10"),
    VisionSet("cifar100", "cifar", "CIFAR100"),
    VisionSet("svhn", "svhn", "SVHN"),
)}


def load(name: str, data_dir: Optional[str] = None, mirror: Optional[str] = None,
         log: Optional[Callable[[str], None]] = None):
    """Fetch the set if it is missing (unless offline), then read it: (splits, classes)."""
    log = log or _stderr
    vs = SETS[name]
    root = download.data_root(data_dir)
    vs.ensure(root, mirror=mirror, log=log)
    return vs.read(root)


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)
