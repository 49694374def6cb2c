"""GPU check, part 2: the fast recipe's time to 99% and each model's share of the GPU's peak.

1. `--recipe fast` on CUDA, three seeds, as shipped (tuned on a 2-core CPU) and with larger
   batches (a GPU step costs about the same at batch 64 and 512, so fewer steps is faster).
   Training time is the trainer's own `elapsed_seconds` after the last epoch (the loop, with the
   per-epoch test evaluation; start-up and data loading excluded), wall time beside it.
2. Peak: a square matmul (8192^3) in bf16, fp16, tf32 and fp32, measured here, in this run.
3. Utilization per model: FLOPs of one training step (forward + backward) counted by
   torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-add, convolutions and matmuls
   only: what the tensor cores do), times images/s of normlab's step (device-resident batches,
   fused Adam, channels_last + bf16 autocast), over the bf16 peak.
4. A torch.profiler table of the model with the lowest utilization.
5. lenet-bn's step eager, under torch.compile and with CUDA graphs (mode reduce-overhead).

Prints tables; writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import normlab
from normlab.config import make_config
from normlab.train.optim import make_optimizer

# (recipe, options over it)
FAST_WAYS = {
    # fast-v1: the CPU recipe these GPU figures were first taken with (fast-gpu builds on it)
    "fast-v1 (CPU recipe, batch 64)": ("fast-v1", {}),
    "fast-gpu": ("fast-gpu", {}),
    "fast-gpu, 36 epochs": ("fast-gpu", {"epochs": 36}),
    "fast-gpu, batch 512, lr 0.03, 40 epochs": ("fast-gpu", {"batch_size": 512, "lr": 0.03, "epochs": 40}),
}

MODELS = [("lenet-bn", 28, {}), ("resnet18-d2l", 28, {}), ("resnet18-d2l", 96, {}), ("densenet-d2l", 96, {}),
          ("googlenet-mini", 28, {}), ("resnet20", 32, {}), ("digitnet", 28, {"width": 32})]


def sync():
    torch.cuda.synchronize()


def fast_recipe(seeds, ways):
    out = {}
    for way, (recipe, extra) in ways.items():
        runs = []
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                r = normlab.train({"recipe": recipe, "device": "cuda", "seed": seed, "progress": False,
                                   "out": str(Path(tmp) / "r"), **extra}, log=lambda *a: None)
                wall = time.perf_counter() - t0
            runs.append({"seed": seed, "acc": r.summary["final_test_acc"], "train_s": r.metrics[-1]["elapsed_seconds"],
                         "wall_s": wall})
        med_t = statistics.median(x["train_s"] for x in runs)
        med_a = statistics.median(x["acc"] for x in runs)
        out[way] = {"recipe": recipe, "options": extra, "runs": runs, "median_train_s": med_t, "median_acc": med_a}
        accs = " ".join(f"{x['acc']:.4f}" for x in runs)
        secs = " ".join(f"{x['train_s']:.2f}" for x in runs)
        print(f"{way:<40} acc {accs} (median {med_a:.4f})  train s {secs} (median {med_t:.2f})", flush=True)
    return out


def matmul_peak(dtype, n=8192, reps=10):
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def peaks():
    res = {}
    prev = torch.backends.cuda.matmul.allow_tf32
    for name, dtype, tf32 in (("bf16", torch.bfloat16, False), ("fp16", torch.float16, False),
                              ("tf32", torch.float32, True), ("fp32", torch.float32, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        res[name] = matmul_peak(dtype)
    torch.backends.cuda.matmul.allow_tf32 = prev
    print("matmul peak (8192^3, measured now): " + ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in res.items()))
    return res


def make_step(name, size, batch, options, bf16=True, cl=True):
    torch.manual_seed(0)
    model = normlab.create_model(name, num_classes=10, in_channels=1, input_size=(size, size), **options).cuda()
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, make_config({"optimizer": "adam", "lr": 1e-3}))
    x = torch.randn(batch, 1, size, size, device="cuda")
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model, x, y, step


def step_flops(name, size, options):
    model = normlab.create_model(name, num_classes=10, in_channels=1, input_size=(size, size), **options).cuda()
    x = torch.randn(4, 1, size, size, device="cuda")
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(x), torch.zeros(4, dtype=torch.long, device="cuda")).backward()
    return fc.get_total_flops() / 4


def utilization(peak_bf16, batches=(64, 256), steps=30):
    rows = []
    for name, size, options in MODELS:
        flops = step_flops(name, size, options)
        for batch in batches:
            *_, step = make_step(name, size, batch, options)
            for _ in range(3):
                step()
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            ips = batch * steps / (time.perf_counter() - t0)
            row = {"model": name, "size": size, "batch": batch, "flops_per_image": flops, "images_per_s": ips,
                   "tflops": flops * ips / 1e12, "fraction_of_bf16_peak": flops * ips / peak_bf16}
            rows.append(row)
            print(f"{name:<16}{size:>4}{batch:>6}{flops / 1e6:>12.1f}{ips:>14,.0f}{row['tflops']:>10.2f}"
                  f"{100 * row['fraction_of_bf16_peak']:>9.2f}%", flush=True)
    return rows


def profile(name, size, options, batch=256):
    from torch.profiler import ProfilerActivity, profile as prof

    *_, step = make_step(name, size, batch, options)
    for _ in range(3):
        step()
    sync()
    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        for _ in range(10):
            step()
        sync()
    table = p.key_averages().table(sort_by="cuda_time_total", row_limit=15)
    print(table)
    return table


def compile_modes(name="lenet-bn", size=28, batch=64, steps=50):
    """Where the time of a small model's step goes: eager vs torch.compile vs CUDA graphs."""
    res = {}
    for mode in ("eager", "default", "reduce-overhead"):
        torch.compiler.reset()
        model, x, y, _ = make_step(name, size, batch, {}, bf16=False, cl=False)
        opt = make_optimizer(model, make_config({"optimizer": "adam", "lr": 1e-3}))
        fwd = model if mode == "eager" else torch.compile(model, mode=mode)

        def step():
            loss = F.cross_entropy(fwd(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        t0 = time.perf_counter()
        for _ in range(5):
            step()
        sync()
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        res[mode] = {"images_per_s": batch * steps / (time.perf_counter() - t0), "warmup_s": warm}
        print(f"{name} batch {batch} fp32, {mode:<16} {res[mode]['images_per_s']:>10,.0f} img/s "
              f"(first 5 steps incl. compilation {warm:.1f} s)", flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/gpu_check.json")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--skip-fast", action="store_true")
    args = ap.parse_args(argv)
    res = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "date": time.strftime("%Y-%m-%d")}
    if not args.skip_fast:
        res["fast"] = fast_recipe(range(args.seeds), FAST_WAYS)
    res["peak"] = peaks()
    print(f"{'model':<16}{'px':>4}{'batch':>6}{'MFLOP/img':>12}{'img/s':>14}{'TFLOP/s':>10}{'of bf16':>10}")
    res["utilization"] = utilization(res["peak"]["bf16"])
    worst = min((r for r in res["utilization"] if r["batch"] == 256), key=lambda r: r["fraction_of_bf16_peak"])
    print(f"profile of the lowest utilization at batch 256: {worst['model']} @ {worst['size']} px")
    opts = next(o for n, s, o in MODELS if n == worst["model"] and s == worst["size"])
    res["profile"] = {"model": worst["model"], "size": worst["size"], "table": profile(worst["model"], worst["size"], opts)}
    res["compile_modes"] = compile_modes()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
