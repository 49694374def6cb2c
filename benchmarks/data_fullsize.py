"""Full-size datasets: load time, peak memory and training throughput, normlab vs the tutorials.

Writes full-size files in the real formats with synthetic content into a temporary data root:
  MNIST    the four gzip IDX files, 60,000 + 10,000 images 1x28x28 (as torchvision's MNIST layout)
  CIFAR-10 the python tarball, 50,000 + 10,000 images 3x32x32 (five data batches + test batch)
Images are class templates plus noise, so the content is learnable and not a constant.

Each pipeline is the tutorial's own, at the tutorial's batch size, against normlab's device-resident
one delivering the same images:
  MNIST format, lenet-bn   seed 000 (d2l): torchvision dataset with ToTensor() in a DataLoader,
                           shuffle, 2 worker processes, batch 16 (and its commented-out 256)
  CIFAR format, resnet20   seed 001: Pad(4), RandomHorizontalFlip, RandomCrop(32), ToTensor in a
                           DataLoader, shuffle, batch 32, no workers (its default)
  device                   normlab's load_dataset (uint8 tensors in memory) and DeviceLoader: one
                           permutation per epoch, each batch gathered, augmented ("pad:4,flip,
                           randcrop:32" for CIFAR) and scaled to 0..1 at once
Each measurement runs in a fresh Python process (so peak RSS is its own):
  load     the whole set (train + test) into memory: normlab's uint8 tensors, and the tutorial's
           torchvision dataset objects. Wall time and peak RSS above the process's RSS before
           loading (the peak is reset first), for normlab's first load (unpacks the gzip/tar files
           once) and a later one, against the raw size (N x C x H x W bytes)
  deliver  one epoch of batches, images/s (1 torch thread in the main process for both)
  train    one epoch with Adam (lr 0.001, the tutorials') fed by each pipeline at the tutorial's
           own batch size (16, 32), images/s, with --train-threads torch threads (default 1: on a
           shared machine a second intra-op thread spins at barriers; resnet20 trained at 8 images/s
           with 2 threads against 78 with 1, load average 8.5 on 2 cores)
Rates are per wall-clock second and per CPU-second (user + system time of the process and of the
DataLoader's workers); the load average before and after is in the JSON, as is the machine.

    flock /tmp/normlab-bench.lock python benchmarks/data_fullsize.py   # full size, one epoch each
    python benchmarks/data_fullsize.py --quick    # the training rows on the first 20 batches only
Writes a table to stdout and benchmarks/results/data_fullsize.json.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # run as `python benchmarks/X.py`: the shared helper beside it
from bench_record import machine_info, write_results  # noqa: E402

TARGETS = {"load_seconds": 2.0, "peak_over_raw": 2.0, "deliver_ratio": 5.0}  # issue 16: MNIST format, 2 cores
SETS = {
    "mnist": {"shape": (1, 28, 28), "sizes": (60000, 10000), "model": "lenet-bn", "batches": (16, 256),
              "workers": 2, "augment": None,
              "tutorial": "seed 000: torchvision MNIST-format dataset, ToTensor(), DataLoader(shuffle=True, num_workers=2)"},
    "cifar10": {"shape": (3, 32, 32), "sizes": (50000, 10000), "model": "resnet20", "batches": (32,),
                "workers": 0, "augment": "pad:4,flip,randcrop:32",
                "tutorial": "seed 001: Pad(4), RandomHorizontalFlip(), RandomCrop(32), ToTensor(); "
                            "DataLoader(shuffle=True), no workers"},
}


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
    DataLoader's workers count once they have been shut down."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the kernel's peak RSS (VmHWM) to the current RSS (Linux >= 4.0), so the peak read
    later is the load's, not the imports'. False where it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _tutorial_dataset(name: str, root: str, train: bool = True):
    from torchvision import transforms
    from torchvision.datasets import MNIST

    from normlab.data.vision import SETS as VISION, _cifar_class

    if name == "mnist":
        return MNIST(root, train=train, transform=transforms.ToTensor())
    t = transforms.Compose([transforms.Pad(4), transforms.RandomHorizontalFlip(), transforms.RandomCrop(32),
                            transforms.ToTensor()])
    return _cifar_class(VISION["cifar10"].cls)(root, train=train, transform=t)  # same reader, no MD5 check


def child_load(name: str, root: str, pipeline: str = "device") -> dict:
    import torch  # noqa: F401  (imported before the baseline, as in any run)
    import torchvision  # noqa: F401
    from normlab.data import load_dataset

    reset = _reset_peak()
    rss0 = _status_kb("VmRSS")
    t, c = time.perf_counter(), _cpu_seconds()
    if pipeline == "device":
        ds = load_dataset(name, data_dir=root, log=lambda s: None)
        images = len(ds.train_y) + len(ds.test_y)
    else:
        ds = [_tutorial_dataset(name, root, train) for train in (True, False)]
        images = sum(len(d) for d in ds)
    secs, cpu = time.perf_counter() - t, _cpu_seconds() - c
    peak = _status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    raw = images * int(np.prod(SETS[name]["shape"]))
    return {"seconds": secs, "cpu_seconds": cpu, "raw_bytes": raw, "images": images,
            "peak_extra_bytes": (peak - rss0) * 1024, "resident_extra_bytes": (_status_kb("VmRSS") - rss0) * 1024,
            "peak_reset": reset}


def _loader(name: str, root: str, pipeline: str, batch: int):
    import torch

    from normlab.data import augment, load_dataset
    from normlab.data.loader import DeviceLoader, Normalize

    g = torch.Generator().manual_seed(0)
    spec = SETS[name]
    if pipeline == "tutorial":
        return torch.utils.data.DataLoader(_tutorial_dataset(name, root), batch_size=batch, shuffle=True,
                                           num_workers=spec["workers"], generator=g)
    ds = load_dataset(name, data_dir=root, log=lambda s: None)
    c = ds.train_x.shape[1]
    # mean 0, std 1: the same 0..1 floats as ToTensor (the tutorials normalize no further)
    return DeviceLoader(ds.train_x, ds.train_y, batch, Normalize([0.0] * c, [1.0] * c), shuffle=True, generator=g,
                        augment=augment.make_augment(spec["augment"]))


def _rates(images: int, secs: float, cpu: float) -> dict:
    return {"images": images, "seconds": secs, "images_per_s": images / secs, "cpu_seconds": cpu,
            "images_per_cpu_s": images / cpu}


def child_deliver(name: str, root: str, pipeline: str, batch: int) -> dict:
    import torch

    # One thread in the main process for both (the tutorial's workers, where it has them, do its
    # work): per-batch gathers of a few hundred KB are too small to split between threads.
    torch.set_num_threads(1)
    loader = _loader(name, root, pipeline, batch)
    seen, t, c = 0, time.perf_counter(), _cpu_seconds()
    it = iter(loader)
    for xb, yb in it:
        seen += len(yb)
    del it  # joins the workers, so their CPU time is counted
    return _rates(seen, time.perf_counter() - t, _cpu_seconds() - c)


def child_train(name: str, root: str, pipeline: str, batch: int, max_batches: int, threads: int = 1) -> dict:
    import torch

    from normlab import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    loader = _loader(name, root, pipeline, batch)
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
    env = dict(os.environ, NORMLAB_OFFLINE="1")
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- main
def measure(name: str, root: Path, max_batches: int, threads: int = 1, log=print) -> dict:
    """Every measurement of one set whose files are under root: load, then deliver and train per batch size."""
    r = {"first_load": _run_child("load", name, root, "device"), "load": _run_child("load", name, root, "device"),
         "tutorial_load": _run_child("load", name, root, "tutorial"), "batches": {}}
    for batch in SETS[name]["batches"]:
        b = r["batches"][str(batch)] = {}
        train = batch == SETS[name]["batches"][0]  # an epoch of training at the tutorial's own batch only
        for pipeline in ("tutorial", "device"):
            b[f"deliver_{pipeline}"] = _run_child("deliver", name, root, pipeline, batch)
            if train:
                b[f"train_{pipeline}"] = _run_child("train", name, root, pipeline, batch, max_batches, threads)
            log(f"{name} batch {batch} {pipeline}: {b[f'deliver_{pipeline}']['images_per_s']:,.0f} images/s "
                f"delivered" + (f", {b[f'train_{pipeline}']['images_per_s']:,.0f} trained" if train else ""))
        for kind in ("deliver", "train") if train else ("deliver",):
            for unit in ("images_per_s", "images_per_cpu_s"):
                b[f"{kind}_ratio" + ("" if unit == "images_per_s" else "_cpu")] = \
                    b[f"{kind}_device"][unit] / b[f"{kind}_tutorial"][unit]
    return r


def table(rows: dict) -> str:
    mb = 1e6
    lines = [f"{'data':<8} {'images':>7} {'raw MB':>6} {'load s':>6} {'1st load s':>10} {'peak/raw':>8} "
             f"{'tut load s':>10} {'tut peak/raw':>12}"]
    for name, r in rows.items():
        ld, tl = r["load"], r["tutorial_load"]
        lines.append(f"{name:<8} {ld['images']:>7,} {ld['raw_bytes'] / mb:>6.1f} {ld['seconds']:>6.2f} "
                     f"{r['first_load']['seconds']:>10.2f} {ld['peak_extra_bytes'] / ld['raw_bytes']:>8.2f} "
                     f"{tl['seconds']:>10.2f} {tl['peak_extra_bytes'] / tl['raw_bytes']:>12.2f}")
    lines.append(f"{'data':<8} {'model':<9} {'batch':>5}   images/s delivered: {'tutorial':>9} {'device':>10} {'x':>6}"
                 f"   trained: {'tutorial':>8} {'device':>7} {'x':>5}   (per CPU-second: delivered x, trained x)")
    for name, r in rows.items():
        for batch, b in r["batches"].items():
            if "train_ratio" in b:
                trained = (f"{b['train_tutorial']['images_per_s']:>8,.0f} {b['train_device']['images_per_s']:>7,.0f} "
                           f"{b['train_ratio']:>5.2f}   ({b['deliver_ratio_cpu']:.1f}, {b['train_ratio_cpu']:.2f})")
            else:
                trained = f"{'-':>8} {'-':>7} {'-':>5}   ({b['deliver_ratio_cpu']:.1f}, -)"
            lines.append(f"{name:<8} {SETS[name]['model']:<9} {batch:>5}   {'':>19} "
                         f"{b['deliver_tutorial']['images_per_s']:>9,.0f} {b['deliver_device']['images_per_s']:>10,.0f} "
                         f"{b['deliver_ratio']:>6.1f}   {'':>9}{trained}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="train on the first 20 batches instead of an epoch")
    ap.add_argument("--root", help="data root to write the files in (default: a temporary folder)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "data_fullsize.json"))
    ap.add_argument("--sets", default="mnist,cifar10", help="which of mnist,cifar10 to measure (default: both)")
    ap.add_argument("--train-threads", type=int, default=1, help="torch threads while training (default 1)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        fn = {"load": child_load, "deliver": child_deliver, "train": child_train}[kind]
        rest = [int(r) if r.isdigit() else r for r in rest]
        print(json.dumps(fn(*rest)))
        return
    import torch

    info = machine_info(torch.device("cpu"))  # before the run: its load average is the starting one
    root = Path(args.root or tempfile.mkdtemp(prefix="normlab-fullsize-"))
    rows = {}
    try:
        for name, writer in (("mnist", write_mnist), ("cifar10", write_cifar10)):
            if name not in args.sets.split(","):
                continue
            t = time.perf_counter()
            writer(root)
            print(f"{name}: wrote the files in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            rows[name] = measure(name, root, 20 if args.quick else 0, args.train_threads,
                                 log=lambda line: print(line, file=sys.stderr, flush=True))
    finally:
        if not args.root:  # the temporary root holds 700 MB of written and unpacked files
            shutil.rmtree(root, ignore_errors=True)
    print(table(rows))
    write_results(args.out, rows, info, quick=args.quick, targets=TARGETS,
                  threads=f"deliver 1, train {args.train_threads}", sets={n: SETS[n] for n in rows},
                  device="normlab DeviceLoader on the CPU (uint8 in memory, batch gather + augment + scale)")


if __name__ == "__main__":
    main()
