"""GPU check, part 3: `--cuda-graphs` against the tutorials' loop and normlab's eager step.

Side by side in one run, per tutorial model at the batch size of benchmarks/train.py:
- tutorial: the tutorials' loop (PIL images, ToTensor + Normalize per sample, a DataLoader with
  2 workers, Adam 1e-3, each batch moved to the GPU), as in benchmarks/train.py;
- eager: normlab's own epoch loop (`train_epoch`: device-resident uint8 batches, normalized on
  the GPU, fused Adam, the loss and accuracy kept on the device) with its `Step`, fp32;
- graphs: the same with `--cuda-graphs` (the forward and backward replayed from a CUDA graph);
- graphs+bf16+cl: with `--precision bf16 --channels-last` as well.
Images/s over a whole timed epoch of `--steps` batches, after one untimed epoch (worker
start-up, cuDNN's first calls, the graph's capture). Utilization: FLOPs of a training step
(torch's FlopCounterMode: convolutions and matmuls, 2 per multiply-add) x images/s over the
bf16 dense matmul peak measured in this run.

Then `--recipe fast-gpu` with and without `--cuda-graphs` (3 seeds): training time to the end
(the trainer's elapsed_seconds) and the final test accuracy.

Prints tables; writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import normlab
from normlab.config import make_config
from normlab.data.loader import DeviceLoader, Normalize, channel_stats
from normlab.data.sources import load_dataset
from normlab.train import graphs, schedule
from normlab.train.optim import make_optimizer
from normlab.train.step import Step
from normlab.train.trainer import train_epoch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_check import peaks, step_flops  # noqa: E402
from train import tutorial_loader  # noqa: E402

MODELS = [("lenet-bn", 28, 64, {}), ("resnet18-d2l", 28, 64, {}), ("resnet18-d2l", 96, 16, {}),
          ("densenet-d2l", 96, 16, {}), ("googlenet-mini", 28, 64, {}), ("resnet20", 32, 64, {}),
          ("digitnet", 28, 64, {"width": 32})]
WAYS = {"eager": {}, "graphs": {"cuda_graphs": True},
        "graphs+bf16+cl": {"cuda_graphs": True, "precision": "bf16", "channels_last": True}}


def sync():
    torch.cuda.synchronize()


def images(size, n):
    d = load_dataset("synthetic", size=int(n / 0.8) + 64)
    x, y = d.train_x[:n], d.train_y[:n]
    if size != x.shape[-1]:
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True).round().byte()
    return x, y, channel_stats(d.train_x)


def tutorial_rate(name, size, batch, steps, options):
    x, y, (mean, std) = images(28, batch * (steps + 1))
    torch.manual_seed(0)
    model = normlab.create_model(name, num_classes=10, in_channels=1, input_size=(size, size), **options).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    it = iter(tutorial_loader(x, y, batch, size, mean, std, True))

    def one():
        xb, yb = next(it)
        xb, yb = xb.cuda(), yb.cuda()
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    one()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    sync()
    return batch * steps / (time.perf_counter() - t0)


def normlab_epoch(name, size, batch, steps, options, way):
    """normlab's step and epoch loop for one model, after one untimed epoch; returns run_epoch()."""
    x, y, (mean, std) = images(size, batch * steps)
    cfg = make_config({"optimizer": "adam", "lr": 1e-3, "schedule": "constant", "model": name, **WAYS[way]})
    torch.manual_seed(0)
    model = normlab.create_model(name, num_classes=10, in_channels=1, input_size=(size, size), **options).cuda()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg.section("optim"))
    step = Step(model, opt, schedule.make_scheduler(opt, cfg.section("optim"), steps), cfg.section("regularization"),
                precision=cfg.precision, channels_last=cfg.channels_last)
    if cfg.cuda_graphs:
        step = graphs.GraphedStep(step)
    loader = DeviceLoader(x.cuda(), y.cuda(), batch, Normalize(mean, std), shuffle=True,
                          generator=torch.Generator().manual_seed(0), drop_single=True)
    stop = threading.Event()
    run_epoch = lambda: train_epoch(step, loader, 2, lambda: None, stop)  # noqa: E731
    run_epoch()  # untimed: warm-up and capture
    sync()
    return run_epoch


def normlab_rate(name, size, batch, steps, options, way):
    run_epoch = normlab_epoch(name, size, batch, steps, options, way)
    t0 = time.perf_counter()
    run_epoch()
    sync()
    return batch * steps / (time.perf_counter() - t0)


def profile_graphed(name="lenet-bn", size=28, batch=64, steps=40):
    """Where a graphed epoch's time goes, for the model with the lowest utilization."""
    from torch.profiler import ProfilerActivity, profile

    run_epoch = normlab_epoch(name, size, batch, steps, {}, "graphs")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        run_epoch()
        sync()
    table = p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    print(f"profile: {name} @ {size} px, batch {batch}, one epoch of {steps} graphed steps")
    print(table)
    return table


def throughput(peak_bf16, steps):
    rows = []
    print(f"{'model':<15}{'px':>4}{'batch':>6}{'tutorial':>10}{'eager':>9}{'graphs':>9}{'x tut':>7}"
          f"{'+bf16+cl':>10}{'x tut':>7}{'best % bf16 peak':>18}")
    for name, size, batch, options in MODELS:
        row = {"model": name, "size": size, "batch": batch, "steps": steps,
               "tutorial": tutorial_rate(name, size, batch, steps, options)}
        for way in WAYS:
            row[way] = normlab_rate(name, size, batch, steps, options, way)
        row["flops_per_image"] = step_flops(name, size, options)
        best = max(row[w] for w in WAYS)
        row["ratio_graphs"] = row["graphs"] / row["tutorial"]
        row["ratio_best"] = best / row["tutorial"]
        row["fraction_of_bf16_peak"] = row["flops_per_image"] * best / peak_bf16
        rows.append(row)
        print(f"{name:<15}{size:>4}{batch:>6}{row['tutorial']:>10,.0f}{row['eager']:>9,.0f}{row['graphs']:>9,.0f}"
              f"{row['ratio_graphs']:>7.2f}{row['graphs+bf16+cl']:>10,.0f}{row['graphs+bf16+cl'] / row['tutorial']:>7.2f}"
              f"{100 * row['fraction_of_bf16_peak']:>17.2f}%", flush=True)
    return rows


def fast_gpu(seeds):
    out = {}
    for label, extra in (("fast-gpu eager", {"cuda_graphs": False}), ("fast-gpu + cuda graphs", {"cuda_graphs": True})):
        runs = []
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                r = normlab.train({"recipe": "fast-gpu", "device": "cuda", "seed": seed, "progress": False,
                                   "out": str(Path(tmp) / "r"), **extra}, log=lambda *a: None)
            runs.append({"seed": seed, "acc": r.summary["final_test_acc"], "train_s": r.metrics[-1]["elapsed_seconds"]})
        med_t = statistics.median(x["train_s"] for x in runs)
        med_a = statistics.median(x["acc"] for x in runs)
        out[label] = {"runs": runs, "median_train_s": med_t, "median_acc": med_a}
        accs = " ".join(f"{x['acc']:.4f}" for x in runs)
        secs = " ".join(f"{x['train_s']:.2f}" for x in runs)
        print(f"{label:<26} acc {accs} (median {med_a:.4f})  train s {secs} (median {med_t:.2f})", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/gpu_graphs.json")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_graphs: no CUDA device here; nothing to measure")
        return
    res = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "date": time.strftime("%Y-%m-%d")}
    res["peak"] = peaks()
    res["throughput"] = throughput(res["peak"]["bf16"], args.steps)
    res["fast_gpu"] = fast_gpu(range(args.seeds))
    worst = min(res["throughput"], key=lambda r: r["fraction_of_bf16_peak"])
    res["profile"] = profile_graphed(worst["model"], worst["size"], worst["batch"], args.steps)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
