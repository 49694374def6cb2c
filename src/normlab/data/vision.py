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
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..errors import DataError
from . import download, validate
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
        a temporary name and renamed, so a kill half-way leaves nothing that looks complete. A disk
        that fills meanwhile is the disk's error, never the archive's: the archive is kept."""
        if self.kind == "mnist":
            raw = self.where(root)
            for f, _ in self.cls.resources:
                dest = raw / f[:-3]
                if dest.is_file():
                    continue
                tmp = dest.with_name(dest.name + ".part")
                try:
                    _gunzip(raw / f, tmp)
                except OSError as exc:
                    tmp.unlink(missing_ok=True)
                    if isinstance(exc, _WriteError):
                        raise download.disk_error(exc.cause, raw, _gunzipped_size(raw / f),
                                                  f"unpacking {f}") from None
                    raise self._bad_archive(root, raw / f, "a valid gzip file", exc) from None
                except (EOFError, zlib.error) as exc:
                    tmp.unlink(missing_ok=True)
                    raise self._bad_archive(root, raw / f, "a valid gzip file", exc) from None
                try:
                    os.replace(tmp, dest)
                except OSError as exc:
                    tmp.unlink(missing_ok=True)
                    raise download.disk_error(exc, raw, None, f"unpacking {f}") from None
        elif self.kind == "cifar" and not self._unpacked(root):
            cls = self.cls
            archive = root / cls.filename
            try:
                tmp = Path(tempfile.mkdtemp(prefix=f".{cls.base_folder}.", dir=root))
            except OSError as exc:
                raise download.disk_error(exc, root, None, f"unpacking {cls.filename}") from None
            needed = None
            try:
                try:
                    with tarfile.open(archive, "r:gz") as tar:
                        needed = sum(m.size for m in tar.getmembers())
                        if hasattr(tarfile, "data_filter"):  # refuse links and paths out of the folder
                            tar.extractall(tmp, filter="data")
                        else:  # pragma: no cover - Python < 3.10.12
                            tar.extractall(tmp)
                except OSError as exc:
                    if exc.errno in download.DISK_ERRNOS:
                        raise download.disk_error(exc, root, needed,
                                                  f"unpacking {cls.filename}") from None
                    raise self._bad_archive(root, archive, "a valid CIFAR archive", exc) from None
                except (EOFError, tarfile.TarError) as exc:
                    raise self._bad_archive(root, archive, "a valid CIFAR archive", exc) from None
                if not (tmp / cls.base_folder).is_dir():
                    raise self._bad_archive(root, archive, f"the CIFAR archive (it holds no {cls.base_folder}/ folder)")
                dest = root / cls.base_folder
                if dest.exists():  # an incomplete folder from elsewhere: the archive's copy wins
                    shutil.rmtree(dest)
                os.replace(tmp / cls.base_folder, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def _bad_archive(self, root: Path, path: Path, what: str, exc: Optional[BaseException] = None) -> DataError:
        """An archive that could not be unpacked. Deleting it is advised only when its MD5 is not the
        one expected: a verified archive is never the culprit, and is never to be thrown away."""
        why = f" ({exc})" if exc else ""
        remote = next((r for r in self.remotes() if root / r.path == path), None)
        if remote is not None and _md5_of(path) == remote.md5:
            return DataError(f"{str(path)!r} matches its MD5 (it is intact, keep it) but could not be unpacked as "
                             f"{what}{why}; check the disk and the folder {str(path.parent)!r}, then run again")
        return DataError(f"{str(path)!r} is not {what}{why} and its MD5 is not the expected one; delete it and "
                         f"run again to download it, or replace it")

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
        raw = self.where(root)
        splits = []
        for train in (True, False):
            prefix = "train" if train else "t10k"
            validate.mnist_split(raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte",
                                 len(cls.classes))
            try:
                ds = cls(str(root), train=train, download=False)
            except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
                raise DataError(f"dataset {self.name!r} under {str(self.where(root))!r} could not be read "
                                f"as IDX files: {exc}") from None
            splits.append((ds.data.to(torch.uint8).unsqueeze(1).contiguous(), ds.targets.to(torch.int64)))
        return splits, list(cls.classes)

    def _read_cifar(self, root: Path):
        cls = self.cls
        folder = root / cls.base_folder
        classes = validate.cifar_meta(folder / cls.meta["filename"], cls.meta["key"])
        label_key = "fine_labels" if self.name == "cifar100" else "labels"
        for f, _ in cls.train_list + cls.test_list:  # every batch checked before torchvision unpickles it
            validate.cifar_batch(folder / f, len(classes), label_key)
        splits = []
        for train in (True, False):
            try:
                ds = _cifar_class(self.cls)(str(root), train=train, download=False)
            except (RuntimeError, ValueError, KeyError, pickle.UnpicklingError, EOFError) as exc:
                raise DataError(f"dataset {self.name!r} under {str(folder)!r} could not "
                                f"be read as CIFAR batches: {exc}") from None
            x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
            splits.append((x, torch.as_tensor(ds.targets, dtype=torch.int64)))
        return splits, list(ds.classes)

    def _read_svhn(self, root: Path):
        """torchvision's reading (scipy's loadmat, digit 0 stored as 10), with the arrays checked."""
        SVHN = self.cls
        splits = []
        for split in ("train", "test"):
            path = root / SVHN.split_list[split][1]
            try:
                x, y = validate.svhn_mat(path)
            except DataError as exc:  # the .mat is the download itself: never advise deleting a verified one
                remote = next((r for r in self.remotes() if root / r.path == path), None)
                if remote is not None and _md5_of(path) == remote.md5:
                    raise DataError(str(exc).rsplit("; ", 1)[0] + "; it matches its MD5, so keep it and check the "
                                    "scipy installation that reads it") from None
                raise
            splits.append((torch.from_numpy(x), torch.from_numpy(y)))
        return splits, [str(i) for i in range(10)]


class _WriteError(OSError):
    """Writing the unpacked file failed (the disk's fault), as opposed to reading the archive."""

    def __init__(self, cause: OSError):
        super().__init__(cause.errno, cause.strerror)
        self.cause = cause


def _write_block(out, block: bytes) -> None:
    """One write of unpacked bytes (a seam where tests make the disk fill)."""
    out.write(block)


def _gunzip(src: Path, dest: Path) -> None:
    with gzip.open(src, "rb") as inp:
        try:
            out = open(dest, "wb")
        except OSError as exc:
            raise _WriteError(exc) from None
        with out:
            for block in iter(lambda: inp.read(1 << 20), b""):
                try:
                    _write_block(out, block)
                except OSError as exc:
                    raise _WriteError(exc) from None
            try:
                out.flush()
            except OSError as exc:
                raise _WriteError(exc) from None


def _gunzipped_size(path: Path) -> Optional[int]:
    """The size gzip records in its last 4 bytes (mod 4 GiB): what unpacking needs."""
    try:
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            return int.from_bytes(f.read(4), "little") or None
    except OSError:
        return None


def _md5_of(path: Path) -> Optional[str]:
    import hashlib

    h = hashlib.md5()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


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
