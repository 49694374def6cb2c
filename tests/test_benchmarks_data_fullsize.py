"""benchmarks/data_fullsize.py writes the real formats (small sizes here) and measures what it says."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

from normlab.data import load_dataset

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "data_fullsize.py"
_spec = importlib.util.spec_from_file_location("normlab_bench_data_fullsize", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_written_files_load_as_the_sets_they_imitate(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_OFFLINE", "1")  # the files are in place; nothing may be fetched
    bench.write_mnist(tmp_path, sizes=(50, 10))
    bench.write_cifar10(tmp_path, sizes=(25, 5))
    mn = load_dataset("mnist", data_dir=str(tmp_path), log=lambda s: None)
    x, y = bench._images(50, (28, 28), 0)  # the generator is seeded: the same images again
    assert torch.equal(mn.train_x[:, 0], torch.from_numpy(x)) and mn.train_y.tolist() == y.tolist()
    assert mn.test_x.shape == (10, 1, 28, 28)
    cf = load_dataset("cifar10", data_dir=str(tmp_path), log=lambda s: None)
    x, y = bench._images(30, (3, 32, 32), 2)
    assert torch.equal(cf.train_x, torch.from_numpy(x[:25])) and cf.test_y.tolist() == y[25:].tolist()
    assert len(np.unique(cf.train_x.numpy())) > 2  # not a constant image


def test_child_measurements_report_their_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_OFFLINE", "1")
    bench.write_mnist(tmp_path, sizes=(512, 10))
    ld = bench.child_load("mnist", str(tmp_path))
    assert ld["images"] == 522 and ld["raw_bytes"] == 522 * 784 and ld["seconds"] > 0
    tl = bench.child_load("mnist", str(tmp_path), "tutorial")
    assert tl["images"] == 522 and tl["raw_bytes"] == ld["raw_bytes"]
    dv = bench.child_deliver("mnist", str(tmp_path), "device", 16)
    tr = bench.child_train("mnist", str(tmp_path), "device", 256, 1)
    assert dv["images"] == 512 and tr["images"] == 256 and 0 <= tr["train_acc"] <= 1
    torch.set_num_threads(1)  # the children set their own thread counts; conftest's is 1


def test_device_pipeline_delivers_the_tutorials_tensors(tmp_path, monkeypatch):
    """Like with like: the device loader's batch holds the images seed 000's ToTensor() gives
    (the same 0..1 floats up to rounding), and the CIFAR one seed 001's shapes after Pad(4) + RandomCrop(32)."""
    monkeypatch.setenv("NORMLAB_OFFLINE", "1")
    bench.write_mnist(tmp_path, sizes=(40, 10))
    bench.write_cifar10(tmp_path, sizes=(20, 5))
    dev = bench._loader("mnist", str(tmp_path), "device", 16)  # unpacks the .gz files torchvision reads
    tut = bench._tutorial_dataset("mnist", str(tmp_path))
    xb, yb = next(iter(dev))
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(40, generator=g)[:16]  # the loader's first permutation, same seed
    # x * (1/255) against ToTensor's x / 255: equal to the last bit or one rounding step apart
    torch.testing.assert_close(xb, torch.stack([tut[int(i)][0] for i in order]), rtol=0, atol=1e-7)
    assert yb.tolist() == [tut[int(i)][1] for i in order]
    cx, _ = next(iter(bench._loader("cifar10", str(tmp_path), "device", 8)))
    tx = bench._tutorial_dataset("cifar10", str(tmp_path))[0][0]
    assert cx.shape[1:] == tx.shape == (3, 32, 32) and cx.dtype == tx.dtype and 0 <= float(cx.min()) <= float(cx.max()) <= 1


def test_results_carry_the_machine(tmp_path):
    import json

    import bench_record  # on sys.path: the benchmark put its folder there to import it

    info = bench_record.machine_info(torch.device("cpu"))
    bench_record.write_results(tmp_path / "r.json", [{"a": 1}], info, quick=True)
    doc = json.loads((tmp_path / "r.json").read_text())
    meta = doc["meta"]
    assert meta["torch"] == torch.__version__ and meta["quick"] is True and meta["cpu_model"] and doc["rows"] == [{"a": 1}]
    assert len(meta["load_average_before"]) == len(meta["load_average_after"]) == 3 and meta["date_utc"].endswith("UTC")
