"""Full-size datasets: load time, peak memory and training throughput, normlab vs the tutorials.

Writes full-size files in the real formats with synthetic content into a temporary data root:
  MNIST    the four gzip IDX files, 60,000 + 10,000 images 1x28x28 (as torchvision's MNIST layout)
  CIFAR-10 the python tarball, 50,000 + 10,000 images 3x32x32 (five data batches + test batch)
Images are class templates plus noise, so the content is learnable and not a constant.

Each measurement runs in a fresh Python process (so peak RSS is its own):
  load     `normlab.data.load_dataset` into the device-resident form (uint8 tensors): wall time and
           peak RSS above the process's RSS before loading, for the first load (unpacks the archive
           once) and a later one (reads the unpacked files), against the raw size (N x C x H x W bytes)
  deliver  one epoch of shuffled, normalized batches of 256, images/s: normlab's DeviceLoader (one
           thread) vs the tutorials' torchvision dataset + ToTensor + Normalize in a DataLoader with
           2 worker processes
  train    one epoch of Adam (lr 0.001, batch 256) with each pipeline, 2 threads, images/s: lenet-bn
           on MNIST, resnet20 on CIFAR-10
Rates are given per wall-clock second and per CPU-second (user + system time of the process and of
the DataLoader's worker processes): on a machine shared with other jobs only the second means much.

    python benchmarks/data_fullsize.py            # everything at full size (minutes on a CPU)
    python benchmarks/data_fullsize.py --quick    # the training rows on the first 20 batches only
Writes a table to stdout and benchmarks/results/data_fullsize.json (with the machine).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import pickle
import platform
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH = 256
SETS = {"mnist": {"shape": (1, 28, 28), "sizes": (60000, 10000), "model": "lenet-bn"},
        "cifar10": {"shape": (3, 32, 32), "sizes": (50000, 10000), "model": "resnet20"}}


# ---------------------------------------------------------------- writing the files
def _images(n: int, shape, seed: int):
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10,) + tuple(shape), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    x = np.empty((n,) + tuple(shape), dtype=np.uint8)
    for i in range(0, n, 5000):  # in slices: a float copy of all 50,000 CIFAR images is 1.2 GB
        noise = rng.integers(0, 256, (min(5000, n - i),) + tuple(shape), dtype=np.uint16)
        x[i:i + 5000] = ((templates[y[i:i + 5000]].astype(np.uint16) * 3 + noise) // 4).astype(np.uint8)
    return x, y


def _idx_gz(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header)
        f.write(arr.tobytes())


def write_mnist(root: Path, sizes=(60000, 10000)) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", sizes[0], 0), ("t10k", sizes[1], 1)):
        x, y = _images(n, (28, 28), seed)
        _idx_gz(raw / f"{prefix}-images-idx3-ubyte.gz", x)
        _idx_gz(raw / f"{prefix}-labels-idx1-ubyte.gz", y)


def write_cifar10(root: Path, sizes=(50000, 10000)) -> None:
    n, k = sum(sizes), sizes[0] // 5  # five training batches, as the real archive has
    x, y = _images(n, (3, 32, 32), 2)
    flat = x.reshape(n, 3072)
    members = {f"data_batch_{i + 1}": (flat[i * k:(i + 1) * k], y[i * k:(i + 1) * k]) for i in range(5)}
    members["test_batch"] = (flat[sizes[0]:], y[sizes[0]:])
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz", compresslevel=1) as tar:
        for name, (data, labels) in members.items():
            blob = pickle.dumps({"data": data, "labels": [int(v) for v in labels]}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        meta = pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}, protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))


# ---------------------------------------------------------------- measurements (child processes)
def _cpu_seconds() -> float:
    """User + system CPU time of this process's threads and of its finished (waited) children: the
    DataLoader's workers count once they have been shut down. Unlike wall time, it does not grow
    when other jobs share the cores."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def child_load(name: str, root: str) -> dict:
    import torch  # noqa: F401  (imported before the baseline, as in any run)
    import torchvision  # noqa: F401
    from normlab.data import load_dataset

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss0 = _rss_kb()
    t, c = time.perf_counter(), _cpu_seconds()
    ds = load_dataset(name, data_dir=root, log=lambda s: None)
    secs, cpu = time.perf_counter() - t, _cpu_seconds() - c
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    raw = ds.train_x.numel() + ds.test_x.numel()
    return {"seconds": secs, "cpu_seconds": cpu, "raw_bytes": raw, "peak_extra_bytes": (max(peak, before) - rss0) * 1024,
            "resident_extra_bytes": (_rss_kb() - rss0) * 1024, "images": len(ds.train_y) + len(ds.test_y)}


def _tutorial_dataset(name: str, root: str):
    from torchvision import transforms
    from torchvision.datasets import MNIST

    from normlab.data.vision import SETS, _cifar_class

    if name == "mnist":
        t = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.25,))])
        return MNIST(root, train=True, transform=t)
    t = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.25,) * 3)])
    return _cifar_class(SETS["cifar10"].cls)(root, train=True, transform=t)  # same reader, no MD5 check


def _loaders(name: str, root: str, pipeline: str):
    import torch

    from normlab.data import load_dataset
    from normlab.data.loader import DeviceLoader, Normalize

    g = torch.Generator().manual_seed(0)
    if pipeline == "tutorial":
        return torch.utils.data.DataLoader(_tutorial_dataset(name, root), batch_size=BATCH, shuffle=True,
                                           num_workers=2, generator=g)
    ds = load_dataset(name, data_dir=root, log=lambda s: None)
    c = ds.train_x.shape[1]
    return DeviceLoader(ds.train_x, ds.train_y, BATCH, Normalize([0.5] * c, [0.25] * c), shuffle=True, generator=g)


def child_deliver(name: str, root: str, pipeline: str) -> dict:
    import torch

    # One thread in the main process for both (the tutorial's 2 workers do its work): per-batch
    # gathers and a normalize of 200,000 values are too small to split, and a second intra-op
    # thread on a busy machine mostly waits at barriers (25x slower wall time, measured).
    torch.set_num_threads(1)
    loader = _loaders(name, root, pipeline)
    seen, t, c = 0, time.perf_counter(), _cpu_seconds()
    it = iter(loader)
    for xb, yb in it:
        seen += len(yb)
    del it  # joins the workers, so their CPU time is counted
    return _rates(seen, time.perf_counter() - t, _cpu_seconds() - c)


def _rates(images: int, secs: float, cpu: float) -> dict:
    return {"images": images, "seconds": secs, "images_per_s": images / secs, "cpu_seconds": cpu,
            "images_per_cpu_s": images / cpu}


def child_train(name: str, root: str, pipeline: str, max_batches: int) -> dict:
    import torch

    from normlab import create_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    loader = _loaders(name, root, pipeline)
    shape = SETS[name]["shape"]
    model = create_model(SETS[name]["model"], num_classes=10, in_channels=shape[0], input_size=shape[1:])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    seen, correct, t, c = 0, 0, time.perf_counter(), _cpu_seconds()
    it = iter(loader)
    for i, (xb, yb) in enumerate(it):
        if max_batches and i == max_batches:
            break
        out = model(xb)
        loss = loss_fn(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(yb)
        correct += int((out.argmax(1) == yb).sum())
    del it
    return dict(_rates(seen, time.perf_counter() - t, _cpu_seconds() - c), train_acc=correct / seen)


def _run_child(*args) -> dict:
    env = dict(os.environ, NORMLAB_OFFLINE="1", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="train on the first 20 batches instead of an epoch")
    ap.add_argument("--root", help="data root to write the files in (default: a temporary folder)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "data_fullsize.json"))
    ap.add_argument("--sets", default="mnist,cifar10", help="which of mnist,cifar10 to measure (default: both)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        fn = {"load": child_load, "deliver": child_deliver, "train": child_train}[kind]
        rest = [int(r) if r.isdigit() else r for r in rest]
        print(json.dumps(fn(*rest)))
        return
    root = Path(args.root or tempfile.mkdtemp(prefix="normlab-fullsize-"))
    max_batches = 20 if args.quick else 0
    rows = {}
    for name, writer in (("mnist", write_mnist), ("cifar10", write_cifar10)):
        if name not in args.sets.split(","):
            continue
        t = time.perf_counter()
        writer(root)
        print(f"{name}: wrote the files in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        r = {"first_load": _run_child("load", name, root), "load": _run_child("load", name, root)}
        for pipeline in ("tutorial", "device"):
            r[f"deliver_{pipeline}"] = _run_child("deliver", name, root, pipeline)
            r[f"train_{pipeline}"] = _run_child("train", name, root, pipeline, max_batches)
            print(f"{name} {pipeline}: {r[f'deliver_{pipeline}']['images_per_cpu_s']:,.0f} images per CPU-second "
                  f"delivered, {r[f'train_{pipeline}']['images_per_cpu_s']:,.0f} trained", file=sys.stderr)
        rows[name] = r
    mb = 1e6
    print(f"{'data':<8} {'images':>7} {'raw MB':>6} {'peak/raw':>8} {'load s':>6} {'load cpu s':>10} "
          f"{'1st load s':>10}   per CPU-second: {'deliver tut':>11} {'dev':>9} {'x':>5} {'train tut':>9} {'dev':>6} {'x':>5}")
    for name, r in rows.items():
        ld = r["load"]
        dt, dd = r["deliver_tutorial"]["images_per_cpu_s"], r["deliver_device"]["images_per_cpu_s"]
        tt, td = r["train_tutorial"]["images_per_cpu_s"], r["train_device"]["images_per_cpu_s"]
        print(f"{name:<8} {ld['images']:>7,} {ld['raw_bytes'] / mb:>6.1f} {ld['peak_extra_bytes'] / ld['raw_bytes']:>8.2f} "
              f"{ld['seconds']:>6.2f} {ld['cpu_seconds']:>10.2f} {r['first_load']['seconds']:>10.2f}   "
              f"{'':>15} {dt:>11,.0f} {dd:>9,.0f} {dd / dt:>5.1f} {tt:>9,.0f} {td:>6,.0f} {td / tt:>5.1f}")
        print(f"{'':<8} wall images/s: deliver tutorial {r['deliver_tutorial']['images_per_s']:,.0f}, device "
              f"{r['deliver_device']['images_per_s']:,.0f}; train tutorial {r['train_tutorial']['images_per_s']:,.0f}, "
              f"device {r['train_device']['images_per_s']:,.0f}")
    import torch

    meta = {"torch": torch.__version__, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor(), "quick": args.quick, "batch_size": BATCH, "threads": "deliver 1, train 2",
            "tutorial": "torchvision dataset + ToTensor + Normalize, DataLoader(num_workers=2, shuffle=True)",
            "device": "normlab DeviceLoader on the CPU (uint8 in memory, batch gather + normalize)"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
