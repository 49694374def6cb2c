"""Checks of the dataset files normlab reads, before anything trains on them.

A file placed by hand, unpacked from a foreign archive or cut short is read by torchvision's code
without a check: labels past the class count end in an IndexError deep in the loss, and 200 images
with 100 labels train without a word. Here every file is checked first (IDX magic, type, dimensions
and byte count; images and labels of equal count; labels in range; CIFAR batches' record sizes;
SVHN's arrays), and any problem is one line naming the file. CIFAR's pickles are read by an
unpickler that builds numpy arrays and plain containers only, so a hostile file cannot run code.
"""

from __future__ import annotations

import os
import pickle
from typing import Optional

import numpy as np

from ..errors import DataError

FIX = "delete it and run again (it is unpacked or downloaded again), or replace it"


def _bad(kind: str, path, problem: str, fix: str = FIX) -> DataError:
    problem = " ".join(problem.split())  # a library's multi-line message, kept to the one line
    return DataError(f"{kind} file {str(path)!r} {problem}; {fix}")


def regular(path, kind: str) -> None:
    """Refuse a path that is not a regular file before it is opened (a FIFO or a device would hang
    or never end)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{kind} {str(path)!r} does not exist") from None
    except OSError as exc:
        raise DataError(f"{kind} {str(path)!r} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        what = ("a directory" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "not a regular file")
        raise DataError(f"{kind} {str(path)!r} is {what}, not a regular file; give a file")


# ---------------------------------------------------------------- IDX (the MNIST family)
def idx_dims(path, ndim: int, tail: tuple = ()) -> tuple[int, ...]:
    """The dimensions of an unsigned-byte IDX file with `ndim` dimensions, checked against the
    file's size (and the trailing dimensions against `tail`)."""
    regular(path, "IDX file")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    if len(head) < 4 or head[:2] != b"\x00\x00":
        raise _bad("IDX", path, f"does not start with the IDX magic number (got {head[:4].hex() or 'nothing'})")
    if head[2] != 0x08:
        raise _bad("IDX", path, f"holds type 0x{head[2]:02x}; normlab reads unsigned bytes (0x08)")
    if head[3] != ndim:
        raise _bad("IDX", path, f"has {head[3]} dimensions, expected {ndim}")
    if len(head) < 4 + 4 * ndim:
        raise _bad("IDX", path, "is cut short inside its header")
    dims = tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if tail and dims[1:] != tuple(tail):
        raise _bad("IDX", path, f"holds items of {'x'.join(map(str, dims[1:]))}, expected "
                                f"{'x'.join(map(str, tail))}")
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if size != expected:
        raise _bad("IDX", path, f"is {size:,} bytes, but its header ({'x'.join(map(str, dims))}) promises "
                                f"{expected:,}")
    return dims


def mnist_split(images, labels, num_classes: int, shape=(28, 28)) -> int:
    """Check one split's image and label files together; return its size."""
    n_img = idx_dims(images, 3, shape)[0]
    n_lab = idx_dims(labels, 1)[0]
    if n_img != n_lab:
        raise _bad("IDX", labels, f"holds {n_lab:,} labels for the {n_img:,} images of {str(images)!r}")
    if n_lab:
        y = np.fromfile(labels, dtype=np.uint8, offset=8)
        check_labels(labels, y, num_classes, "IDX")
    return n_img


def check_labels(path, y: np.ndarray, num_classes: int, kind: str) -> None:
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)]
        raise _bad(kind, path, f"holds label {int(bad[0])} ({bad.size:,} labels out of range); the labels must "
                               f"be 0..{num_classes - 1}")


# ---------------------------------------------------------------- CIFAR's pickled batches
_NUMPY = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
          ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
          ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _NUMPY:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR batch never holds")


def load_pickle(path, kind: str = "CIFAR") -> object:
    regular(path, f"{kind} file")
    try:
        with open(path, "rb") as f:
            return _ArraysOnly(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, ImportError, MemoryError, OverflowError) as exc:
        raise _bad(kind, path, f"is not a CIFAR batch pickle ({type(exc).__name__}: {exc})") from None


def cifar_batch(path, num_classes: int, label_key: Optional[str] = None) -> int:
    """Check one CIFAR batch file (data: N x 3072 bytes, N labels in range); return N."""
    entry = load_pickle(path)
    if not isinstance(entry, dict) or "data" not in entry:
        raise _bad("CIFAR", path, "is not a CIFAR batch (no 'data' entry)")
    keys = [label_key] if label_key else ["labels", "fine_labels"]
    key = next((k for k in keys if k in entry), None)
    if key is None:
        raise _bad("CIFAR", path, f"has no {' or '.join(repr(k) for k in keys)} entry")
    data = entry["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise _bad("CIFAR", path, f"holds records of {got}; CIFAR records are 3,072 unsigned bytes (3x32x32)")
    try:
        y = np.asarray(entry[key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise _bad("CIFAR", path, f"holds labels that are not integers ({key!r})") from None
    if len(y) != len(data):
        raise _bad("CIFAR", path, f"holds {len(y):,} labels for {len(data):,} images")
    check_labels(path, y, num_classes, "CIFAR")
    return len(data)


def cifar_meta(path, key: str) -> list:
    meta = load_pickle(path)
    names = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names:
        raise _bad("CIFAR", path, f"has no list of class names ({key!r})")
    return [str(n) for n in names]


# ---------------------------------------------------------------- SVHN's .mat files
def svhn_mat(path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels (N,) 0..9) of an SVHN .mat file, checked; as
    torchvision reads it (the digit 0 is stored as 10)."""
    from scipy.io import loadmat

    regular(path, "SVHN file")
    try:
        mat = loadmat(path)
    except (ValueError, TypeError, OSError, EOFError, NotImplementedError, MemoryError) as exc:
        raise _bad("SVHN", path, f"is not a MATLAB .mat file ({exc})") from None
    X, y = mat.get("X"), mat.get("y")
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 4 or X.shape[:3] != (32, 32, 3):
        got = f"{X.dtype} {X.shape}" if isinstance(X, np.ndarray) else "nothing"
        raise _bad("SVHN", path, f"holds images X of {got}; SVHN's are unsigned bytes 32x32x3xN")
    if not isinstance(y, np.ndarray) or y.size != X.shape[3] or not np.issubdtype(y.dtype, np.number):
        got = f"{y.size:,} labels" if isinstance(y, np.ndarray) else "no labels y"
        raise _bad("SVHN", path, f"holds {got} for {X.shape[3]:,} images")
    y = y.astype(np.int64).reshape(-1)
    if y.size and (y.min() < 1 or y.max() > 10):
        bad = y[(y < 1) | (y > 10)]
        raise _bad("SVHN", path, f"holds label {int(bad[0])}; SVHN's labels are 1..10 (10 for the digit 0)")
    y = np.where(y == 10, 0, y)
    return np.ascontiguousarray(X.transpose(3, 2, 0, 1)), y
