"""Images per second: normlab's device-resident pipeline vs the tutorials' DataLoader pipeline.

Both produce the same thing from the same uint8 images: shuffled batches, random crop with
4-pixel zero padding, horizontal flip with probability 1/2, per-channel normalization.

  tutorial  per-sample PIL image -> RandomCrop(padding) -> RandomHorizontalFlip -> ToTensor ->
            Normalize, in a torch DataLoader with 2 worker processes (workers started per epoch,
            as in the tutorials)
  device    normlab.data.DeviceLoader: the whole uint8 set on the device, one permutation per
            epoch, crop/flip/normalize on each batch at once

    python benchmarks/data.py            # mnist5k (4,000 x 1x28x28) and 3x32x32 synthetic, 3 epochs
    python benchmarks/data.py --quick    # 1 epoch each, for a smoke check
Writes a table to stdout and benchmarks/results/data.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from normlab.data import augment, load_dataset
from normlab.data.loader import DeviceLoader, Normalize, channel_stats

sys.path.insert(0, str(Path(__file__).parent))  # run as `python benchmarks/data.py`: the shared helper beside it
from bench_record import machine_info, write_results  # noqa: E402

PAD, BATCH = 4, 256


class PILSet(torch.utils.data.Dataset):
    """The tutorials' dataset: PIL images in a list, transformed one sample at a time."""

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor, transform):
        from PIL import Image

        mode = "L" if x_uint8.shape[1] == 1 else "RGB"
        arr = x_uint8.permute(0, 2, 3, 1).numpy()
        self.images = [Image.fromarray(a[..., 0] if mode == "L" else a, mode=mode) for a in arr]
        self.y = y.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.y[i]


def tutorial_loader(x, y, mean, std, seed):
    from torchvision import transforms

    t = transforms.Compose([transforms.RandomCrop(x.shape[-1], padding=PAD), transforms.RandomHorizontalFlip(),
                            transforms.ToTensor(), transforms.Normalize(mean, std)])
    return torch.utils.data.DataLoader(PILSet(x, y, t), batch_size=BATCH, shuffle=True, num_workers=2,
                                       generator=torch.Generator().manual_seed(seed))


def device_loader(x, y, mean, std, seed, device):
    return DeviceLoader(x.to(device), y.to(device), BATCH, Normalize(mean, std), shuffle=True,
                        generator=torch.Generator().manual_seed(seed),
                        augment=augment.make_augment(f"crop:{PAD},flip"))


def images_per_second(loader, epochs: int, device) -> float:
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            xb = xb.to(device)
            seen += len(yb)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def datasets(quick: bool):
    mn = load_dataset("mnist5k")
    yield "mnist5k 1x28x28", mn.train_x, mn.train_y
    syn = load_dataset("synthetic", shape=(3, 32, 32), size=2000 if quick else 5000)
    yield "synthetic 3x32x32", syn.train_x, syn.train_y


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one epoch per measurement")
    ap.add_argument("--device", default="cpu", help="device for the device-resident pipeline")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads of the main process (default 1: the device pipeline gets one "
                         "core while the tutorial gets its 2 worker processes)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "data.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine_info(device)
    epochs = 1 if args.quick else 3
    rows = []
    for name, x, y in datasets(args.quick):
        mean, std = channel_stats(x)
        tut = images_per_second(tutorial_loader(x, y, mean, std, 0), epochs, device)
        dev_loader = device_loader(x, y, mean, std, 0, device)
        images_per_second(dev_loader, 1, device)  # warm-up (first-touch allocations, CUDA context)
        dev = images_per_second(dev_loader, epochs, device)
        rows.append({"data": name, "images": len(y), "epochs": epochs, "batch_size": BATCH,
                     "tutorial_images_per_s": tut, "device_images_per_s": dev, "speedup": dev / tut})
    print(f"{'data':<20} {'images':>7} {'tutorial img/s':>15} {'device img/s':>13} {'speedup':>8}")
    for r in rows:
        print(f"{r['data']:<20} {r['images']:>7,} {r['tutorial_images_per_s']:>15,.0f} "
              f"{r['device_images_per_s']:>13,.0f} {r['speedup']:>7.1f}x")
    write_results(args.out, rows, info, threads=torch.get_num_threads(),
                  augmentation=f"crop:{PAD},flip + per-channel normalize", quick=args.quick)


if __name__ == "__main__":
    main()
