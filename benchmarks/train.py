"""normlab's training loop against the tutorials' loop, side by side in one run.

The tutorials' way: a Dataset of PIL images converted per sample with ToTensor() + Normalize in
a DataLoader with 2 workers, a Python loop with Adam(lr=1e-3), evaluation after every epoch
(d2l's train_ch5). normlab's way: `normlab.train` (uint8 data resident on the device, batched
normalization); for time to 96% the `fast` recipe, for throughput the same model and optimizer
as the tutorial with normlab's input pipeline and optimizer construction (fused Adam), in NCHW, in channels_last, and in channels_last with
bf16 autocast (`--precision bf16`).

  1. time to 96% test accuracy on mnist5k with lenet-bn (and the final accuracy);
  2. training throughput (images/s) per tutorial model, same model, same batch size.
Alone, on request: `--time-to-99 SEEDS` (fast against fast-v1; `--recipe-time NAME` adds NAME
against fast) and `--compile-vs-eager MODELS` (images/s eager and under torch.compile, with the
compile time).

Utilization: the machine's matmul peak is measured in the same run (fp32 and bf16 on a CPU;
fp32, tf32, fp16 and bf16 on CUDA; at the start, between models and at the end; the highest
sample is the reference, so a fraction of peak is a lower bound), and each
way's images/s is turned into achieved FLOP/s = images/s x 3 x forward FLOPs per image (FLOPs =
2 x the mult-adds `normlab inspect` counts; a training step counted as 3 forward passes:
forward, input gradients, weight gradients) and a fraction of the fp32 peak (bf16 ways: of the
bf16 peak). The JSON carries the machine (CPU model, AVX-512/AMX/BF16 flags, cores), torch
version, date and load average.

Prints a table and writes benchmarks/results/train.json. `--quick` shortens both parts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

import normlab
from normlab.data.loader import DeviceLoader, Normalize, channel_stats
from normlab.config import make_config
from normlab.recipes import RECIPES
from normlab.data.sources import load_dataset
from normlab.train.optim import make_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import TRAIN_FORWARDS, format_peaks, forward_flops, load_average, machine_info, peaks  # noqa: E402


class PILDigits(Dataset):
    """The tutorials' input path: one PIL image per sample, transformed per sample."""

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor, size: int, mean, std):
        self.images = [Image.fromarray(img[0].numpy(), "L") for img in x_uint8]
        self.y = y.tolist()
        steps = [transforms.Resize(size)] if size != x_uint8.shape[-1] else []
        self.tf = transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(mean, std)])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.tf(self.images[i]), self.y[i]


def tutorial_loader(x, y, batch, size, mean, std, shuffle):
    return DataLoader(PILDigits(x, y, size, mean, std), batch_size=batch, shuffle=shuffle, num_workers=2,
                      persistent_workers=True)


def tutorial_evaluate(model, loader, device):
    model.eval()
    correct = n = 0
    with torch.no_grad():
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            correct += (model(xb).argmax(1) == yb).sum().item()
            n += len(yb)
    model.train()
    return correct / n


def tutorial_time_to(target: float, epochs: int, batch: int, device: torch.device):
    """d2l's train_ch5 on mnist5k: seconds until test accuracy first reaches `target`."""
    d = load_dataset("mnist5k")
    mean, std = channel_stats(d.train_x)
    torch.manual_seed(0)
    model = normlab.create_model("lenet-bn", num_classes=10, in_channels=1, input_size=(28, 28)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = tutorial_loader(d.train_x, d.train_y, batch, 28, mean, std, True)
    test = tutorial_loader(d.test_x, d.test_y, batch, 28, mean, std, False)
    start, reached, acc = time.perf_counter(), None, 0.0
    for _ in range(epochs):
        for xb, yb in train:
            xb, yb = xb.to(device), yb.to(device)  # d2l moves each batch to the GPU
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        acc = tutorial_evaluate(model, test, device)
        if reached is None and acc >= target:
            reached = time.perf_counter() - start
            break
    return reached, acc


# normlab's ways to 96%. The first two keep the tutorial's model (lenet-bn): with its optimizer
# and batch (only the loop and the input pipeline differ), then with the fast recipe's training
# settings for two epochs. The last two change the model too: the `fast` recipe as it is (tuned
# for 99%, so its first epochs run at a high lr with heavy augmentation), and the same recipe
# cut down for the lower target (half the width, one epoch, no augmentation).
NORMLAB_WAYS = {
    "lenet-bn, tutorial's Adam 1e-3, batch 256": {"dataset": "mnist5k", "model": "lenet-bn", "optimizer": "adam",
                                                  "lr": 1e-3, "batch_size": 256, "epochs": 10, "schedule": "constant"},
    "lenet-bn, fast recipe's training, 2 epochs": {"recipe": "fast", "model": "lenet-bn", "width": None, "epochs": 2,
                                                   "augment": "", "warmup": 0.0},
    "fast recipe (digitnet)": {"recipe": "fast"},
    "fast recipe, cut for 96%": {"recipe": "fast", "width": 16, "epochs": 1, "augment": "", "warmup": 0.0},
}


def normlab_time_to(target: float, options: dict, device: torch.device, compile_: bool):
    extra = {"device": str(device), "compile": compile_}
    with tempfile.TemporaryDirectory() as tmp:
        r = normlab.train({**options, **extra, "out": str(Path(tmp) / "run"), "progress": False}, log=lambda *a: None)
    hit = next((row["elapsed_seconds"] for row in r.metrics if row["test_acc"] >= target), None)
    return hit, r.summary["final_test_acc"]


def recipe_time_to(target: float, recipes, seeds, device: torch.device) -> dict:
    """Each recipe once per seed, recipes alternating within a seed (so a busy minute slows both):
    training seconds (the last epoch's elapsed_seconds: start-up and plotting excluded), wall
    seconds of normlab.train, the first epoch at `target` and the final test accuracy."""
    import statistics

    out = {r: {"runs": []} for r in recipes}
    for seed in seeds:
        for recipe in (recipes if seed % 2 == 0 else recipes[::-1]):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                r = normlab.train({"recipe": recipe, "seed": seed, "device": str(device), "progress": False,
                                   "out": str(Path(tmp) / "run")}, log=lambda *a: None)
                wall = time.perf_counter() - t0
            first = next((m["epoch"] for m in r.metrics if m["test_acc"] >= target), None)
            run = {"seed": seed, "acc": r.summary["final_test_acc"], "train_s": r.metrics[-1]["elapsed_seconds"],
                   "wall_s": wall, "first_epoch_at_target": first, "epochs": len(r.metrics)}
            out[recipe]["runs"].append(run)
            print(f"  {recipe:<10} seed {seed}: acc {run['acc']:.4f}, training {run['train_s']:.1f} s, "
                  f"wall {wall:.1f} s", flush=True)
    for recipe, d in out.items():
        runs = d["runs"]
        d["median_acc"] = statistics.median(x["acc"] for x in runs)
        d["median_train_s"] = statistics.median(x["train_s"] for x in runs)
        d["median_wall_s"] = statistics.median(x["wall_s"] for x in runs)
        d["met_target"] = d["median_acc"] >= target
    return out


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


WAYS = ("tutorial", "normlab", "normlab_cl", "normlab_cl_bf16")


def synthetic_size(batch: int, steps: int) -> int:
    """Images to ask `synthetic` for so that the warm-up (3 steps when compiling) and the timed
    steps are all full batches of its training split (80%): a short last batch would make
    torch.compile recompile inside the timed loop."""
    return int(batch * (steps + 4) / 0.8) + 2 * batch


def throughput(model_name: str, size: int, batch: int, steps: int, options: dict,
               device: torch.device, compile_: bool, ways=WAYS) -> dict:
    """Training images/s for the same model on synthetic digits: tutorial loop vs device loop."""
    d = load_dataset("synthetic", size=synthetic_size(batch, steps))
    mean, std = channel_stats(d.train_x)
    out = {}
    for way in ways:
        torch.manual_seed(0)
        model = normlab.create_model(model_name, num_classes=10, in_channels=1, input_size=(size, size),
                                     **options).to(device)
        cl = way.startswith("normlab_cl")  # --channels-last: NHWC model and batches
        # --precision bf16: autocast, as the trainer does (bf16 matmuls/convs, fp32 weights)
        bf16 = torch.autocast(device.type, dtype=torch.bfloat16, enabled=way.endswith("bf16"))
        if cl:
            model = model.to(memory_format=torch.channels_last)
        # same optimizer and lr; normlab's make_optimizer picks torch's fused Adam kernel
        opt = (torch.optim.Adam(model.parameters(), lr=1e-3) if way == "tutorial"
               else make_optimizer(model, make_config({"optimizer": "adam", "lr": 1e-3})))
        if compile_ and way != "tutorial":
            model = torch.compile(model)
        if way == "tutorial":
            batches = tutorial_loader(d.train_x, d.train_y, batch, size, mean, std, True)
        else:
            x = d.train_x
            if size != x.shape[-1]:
                x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True).round().byte()
            batches = DeviceLoader(x.to(device), d.train_y.to(device), batch, Normalize(mean, std), shuffle=True,
                                   generator=torch.Generator().manual_seed(0), drop_single=True)
        it = iter(batches)
        # warm-up (worker start-up, first-call allocations, compilation) is not timed
        for _ in range(3 if compile_ else 1):
            xb, yb = next(it)
            xb, yb = xb.to(device), yb.to(device)
            with bf16:
                loss = F.cross_entropy(model(xb.contiguous(memory_format=torch.channels_last) if cl else xb), yb)
            loss.backward()
        opt.zero_grad()
        sync(device)
        t0, n = time.perf_counter(), 0
        for _ in range(steps):
            xb, yb = next(it)
            xb, yb = xb.to(device), yb.to(device)  # a no-op for normlab's batches, already there
            if cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with bf16:
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(yb)
        sync(device)
        out[way] = n / (time.perf_counter() - t0)
    if "tutorial" in out:
        out["ratio"] = out["normlab"] / out["tutorial"]
        out["ratio_cl"] = out["normlab_cl"] / out["tutorial"]
        out["ratio_cl_bf16"] = out["normlab_cl_bf16"] / out["tutorial"]
    return out


def compile_vs_eager(name: str, size: int, batch: int, steps: int, options: dict, device: torch.device,
                     repeats: int = 2) -> dict:
    """Training images/s of one model eager and under torch.compile (default inductor), in its
    default layout, fp32, alternating `repeats` times (the higher of each is kept: a busy neighbour
    only slows a measurement down); `compile_s` is how much longer a compiled call took than an
    eager one (model build, data and warm-up steps are in both: the difference is compilation,
    with inductor's on-disk caches off, as on a first run)."""
    from normlab.models.registry import get_spec

    import torch._functorch.config
    import torch._inductor.config

    # no on-disk caches: every compiled measurement compiles from scratch, as a first run does
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    way = "normlab_cl" if get_spec(name).default_channels_last else "normlab"
    best = {"eager": 0.0, "compiled": 0.0}
    call_s = {"eager": [], "compiled": []}
    for _ in range(repeats):
        for mode in ("eager", "compiled"):
            torch._dynamo.reset()  # each compiled measurement pays its own compilation
            t0 = time.perf_counter()
            r = throughput(name, size, batch, steps, options, device, mode == "compiled", (way,))
            call_s[mode].append(time.perf_counter() - t0)
            best[mode] = max(best[mode], r[way])
    compile_s = min(call_s["compiled"]) - min(call_s["eager"])
    return {"model": name, "size": size, "batch": batch, "layout": "NHWC" if way == "normlab_cl" else "NCHW",
            "eager": best["eager"], "compiled": best["compiled"], "ratio": best["compiled"] / best["eager"],
            "compile_s": compile_s, "steps": steps, "repeats": repeats}


def train_flops_per_image(model_name: str, size: int, options: dict) -> int:
    """TRAIN_FORWARDS (3) x the forward FLOPs of one image (2 x inspect's mult-adds)."""
    model = normlab.create_model(model_name, num_classes=10, in_channels=1, input_size=(size, size), **options)
    return TRAIN_FORWARDS * forward_flops(model, (1, size, size))


def utilization(row: dict, peak: dict) -> None:
    """Achieved FLOP/s and fraction of peak of every way in `row` (bf16 ways: of the bf16 peak)."""
    f = row["train_flops_per_image"]
    row["gflop_s"], row["frac_peak"] = {}, {}
    for way in WAYS:
        if way in row:
            ref = peak["bf16"] if way.endswith("bf16") else peak["fp32"]
            row["gflop_s"][way] = row[way] * f / 1e9
            row["frac_peak"][way] = row[way] * f / ref


def print_row(row: dict) -> None:
    cells = []
    for way in WAYS:
        if way in row:
            cells.append(f"{row[way]:>9,.0f} {100 * row['frac_peak'][way]:>5.1f}%")
        else:
            cells.append(f"{'':>16}")
    print(f"{row['model']:<16}{row['size']:>4}{row['batch']:>6}  " + "  ".join(cells), flush=True)


# The batch of the tutorials' runs, and a large batch for the utilization a bigger batch buys.
LARGE_BATCH = {28: 256, 32: 256, 96: 64}


MODELS = [("lenet-bn", 28, 64, {}), ("resnet18-d2l", 28, 64, {}), ("resnet18-d2l", 96, 16, {}),
          ("densenet-d2l", 96, 16, {}), ("googlenet-mini", 28, 64, {}), ("resnet20", 32, 64, {}),
          ("digitnet", 28, 64, {"width": 32})]  # not a tutorial model: the fast recipe's, for its layout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and epochs")
    ap.add_argument("--out", default="benchmarks/results/train.json")
    ap.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu, cuda, cuda:N")
    ap.add_argument("--compile", action="store_true", help="torch.compile normlab's models (compilation untimed "
                    "in the throughput part, timed in time to 96%%)")
    ap.add_argument("--time-to-99", type=int, default=0, metavar="SEEDS",
                    help="also run the fast recipe and the one it replaced (fast-v1) side by side for seeds "
                         "0..SEEDS-1: median accuracy and training time (default: 0, skipped; 5 takes ~3 min)")
    ap.add_argument("--recipe-time", metavar="NAME", default=None,
                    help="with --time-to-99: also run recipe NAME (e.g. best) beside fast for the same seeds, "
                         "the two alternating: median accuracy, training and wall time (best: ~3 min a seed)")
    ap.add_argument("--only-time-to-99", action="store_true", help="skip the other parts")
    ap.add_argument("--compile-vs-eager", metavar="MODELS", default=None,
                    help="only this: training images/s of MODELS (comma-separated, from the throughput table, at "
                         "the tutorials' batch, default layout, fp32) eager and under torch.compile, side by side, "
                         "with the compile time and the fraction of the fp32 peak")
    args = ap.parse_args(argv)
    if args.recipe_time and not args.time_to_99:
        ap.error("--recipe-time needs --time-to-99 SEEDS (how many seeds to run it for)")
    known = {m[0] for m in MODELS}
    for n in (args.compile_vs_eager or "").split(","):
        if n.strip() and n.strip() not in known:
            ap.error(f"--compile-vs-eager: {n.strip()!r} is not in the throughput table; valid: "
                     f"{', '.join(sorted(known))}")
    if args.recipe_time and args.recipe_time not in RECIPES:
        ap.error(f"--recipe-time: unknown recipe {args.recipe_time!r}; valid: {', '.join(sorted(RECIPES))}")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    info = machine_info(device)
    peak_before = peaks(device, args.quick)
    print(f"{info['cpu_model']}, {info['cpu_count']} cores ({info['torch_threads']} torch threads), torch "
          f"{info['torch']}, load average {info['load_average_before']}\nmatmul peak now: {format_peaks(peak_before)}")
    res = {"machine": {**info, "compile": args.compile}}
    if args.compile_vs_eager:
        run_compile_vs_eager(args, device, res, peak_before)
        return
    if args.time_to_99:
        print(f"\ntime to 99% on mnist5k: fast vs fast-v1, seeds 0..{args.time_to_99 - 1}, alternating order")
        t99 = recipe_time_to(0.99, ("fast", "fast-v1"), range(args.time_to_99), device)
        new, old = t99["fast"], t99["fast-v1"]
        t99["train_time_ratio"] = new["median_train_s"] / old["median_train_s"]
        t99["wall_time_ratio"] = new["median_wall_s"] / old["median_wall_s"]
        res["time_to_99"] = t99
        for name in ("fast", "fast-v1"):
            d = t99[name]
            print(f"  {name:<8} median acc {d['median_acc']:.4f} ({'>=' if d['met_target'] else '<'} 99%), "
                  f"median training {d['median_train_s']:.1f} s, wall {d['median_wall_s']:.1f} s")
        print(f"  fast / fast-v1: training time {t99['train_time_ratio']:.2f}x, wall {t99['wall_time_ratio']:.2f}x "
              f"(target: <= 0.5x with median >= 99%)")
    if args.time_to_99 and args.recipe_time:
        name = args.recipe_time
        print(f"\n{name} beside fast on mnist5k, seeds 0..{args.time_to_99 - 1}, alternating order")
        pair = recipe_time_to(0.99, (name, "fast"), range(args.time_to_99), device)
        for n in (name, "fast"):
            d = pair[n]
            accs = " / ".join(f"{100 * x['acc']:.1f}" for x in d["runs"])
            print(f"  {n:<8} accuracies {accs}, median "
                  f"{100 * d['median_acc']:.1f}%, median training {d['median_train_s']:.1f} s, wall {d['median_wall_s']:.1f} s")
        res["recipe_time"] = pair
    if args.only_time_to_99:
        res["machine"]["load_average_after"] = load_average()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
        print(f"wrote {args.out}")
        return
    epochs = 5 if args.quick else 10
    t_tut, acc_tut = tutorial_time_to(0.96, epochs, 256, device)
    res["time_to_96"] = {"tutorial_s": t_tut, "tutorial_acc": acc_tut, "normlab": {}}
    print(f"time to 96% on mnist5k: tutorial loop (lenet-bn, Adam 1e-3, batch 256) "
          f"{t_tut and f'{t_tut:.2f} s'} (acc {acc_tut:.3f})")
    for way, options in NORMLAB_WAYS.items():
        t_nl, acc_nl = normlab_time_to(0.96, options, device, args.compile)
        ratio = (t_nl / t_tut) if (t_nl and t_tut) else None
        res["time_to_96"]["normlab"][way] = {"options": options, "seconds": t_nl, "final_acc": acc_nl, "ratio": ratio}
        print(f"  normlab, {way}: {t_nl and f'{t_nl:.2f} s'} (final acc {acc_nl:.3f})"
              + (f", normlab/tutorial = {ratio:.2f}" if ratio else ""))
    steps = 5 if args.quick else 20
    rows = []
    print("\ntraining images/s and % of the matmul peak (fp32 ways: of the fp32 peak; bf16: of the bf16 peak);"
          f"\nFLOPs per image = {TRAIN_FORWARDS} x forward (2 x inspect's mult-adds)")
    print(f"{'model':<16}{'px':>4}{'batch':>6}  " + "  ".join(f"{w:>16}" for w in WAYS))
    samples = [peak_before]
    for name, size, batch, options in MODELS:
        if rows:  # a short peak sample between models: a busy neighbour rarely slows them all
            samples.append(peaks(device, quick=True))
        flops = train_flops_per_image(name, size, options)
        for b, ways in ((batch, WAYS), (LARGE_BATCH[size], WAYS[1:])):
            if b == batch and ways is not WAYS:
                continue
            r = throughput(name, size, b, steps, options, device, args.compile, ways)
            row = {"model": name, "size": size, "batch": b, "train_flops_per_image": flops, **r}
            utilization(row, peak_before)
            rows.append(row)
            print_row(row)
    peak_after = peaks(device, args.quick)
    samples.append(peak_after)
    peak = {k: max(x[k] for x in samples) for k in peak_before}
    for row in rows:  # against the highest sample (so the fraction is a lower bound)
        utilization(row, peak)
    print(f"matmul peak at the end: {format_peaks(peak_after)}; fractions above used the start's; "
          f"the JSON's use the highest of {len(samples)} samples: {format_peaks(peak)}")
    print(f"{'model':<16}{'px':>4}{'batch':>6}  " + "  ".join(f"{w:>16}" for w in WAYS))
    for row in rows:
        print_row(row)
    res["machine"].update(peak_flops_before=peak_before, peak_flops_after=peak_after, peak_flops=peak,
                          peak_samples=samples,
                          load_average_after=load_average(), train_forwards=TRAIN_FORWARDS,
                          flops_rule="2 x the mult-adds of `normlab inspect` per image forward; a training "
                                     f"step = {TRAIN_FORWARDS} forward passes")
    res["throughput"] = rows
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")


def run_compile_vs_eager(args, device, res, peak_before):
    names = [n.strip() for n in args.compile_vs_eager.split(",") if n.strip()]
    steps = 10 if args.quick else 40
    print(f"\ntraining images/s, eager vs torch.compile (fp32, default layout, {steps} steps, best of 2 alternating)")
    rows, samples = [], [peak_before]
    for name, size, batch, options in MODELS:
        if name not in names or any(r["model"] == name for r in rows):
            continue  # the first (tutorial-batch) row of each model
        row = compile_vs_eager(name, size, batch, steps, options, device)
        row["train_flops_per_image"] = flops = train_flops_per_image(name, size, options)
        samples.append(peaks(device, quick=True))
        rows.append(row)
        print(f"  {name:<14}{size:>4} px b{batch:<4} eager {row['eager']:>8,.0f}  compiled {row['compiled']:>8,.0f}"
              f"  ratio {row['ratio']:.2f}  compile {row['compile_s']:.0f} s", flush=True)
    peak = {k: max(x[k] for x in samples) for k in peak_before}
    for row in rows:
        f = row["train_flops_per_image"]
        row["frac_fp32_peak"] = {m: row[m] * f / peak["fp32"] for m in ("eager", "compiled")}
        print(f"  {row['model']:<14} % of the fp32 matmul peak ({peak['fp32'] / 1e9:.0f} GFLOP/s): eager "
              f"{100 * row['frac_fp32_peak']['eager']:.1f}%, compiled {100 * row['frac_fp32_peak']['compiled']:.1f}%")
    res["machine"].update(peak_flops=peak, peak_samples=samples, load_average_after=load_average())
    res["compile_vs_eager"] = rows
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
