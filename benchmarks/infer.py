"""Inference speed of the tutorials' models: eager eval vs BN-folded vs ONNX Runtime, side by side.

    python benchmarks/infer.py               # every model, batch 1 and 256 (64 at 96px)
    python benchmarks/infer.py --quick       # fewer repeats, shorter cells
    python benchmarks/infer.py --threads 1   # default: all cores
    python benchmarks/infer.py --compile     # also torch.compile (slow to compile on CPU)
    python benchmarks/infer.py --device cuda # the torch variants on a GPU (onnx stays CPU-only: skipped)

Variants, all in float32 (on the CPU unless --device says otherwise):
  eager      model.eval() under torch.inference_mode()
  eager_cl   eager with the model and the input in channels_last: separates what folding gains
             from what the layout gains
  folded     normlab.nn.surgery.fuse_bn on a copy (BatchNorm folded into the conv/linear before it)
  folded_cl  folded, with the model and the input in channels_last
  onnx       normlab's ONNX exporter (unfolded model; ORT folds on its own), onnxruntime CPU
             provider, intra-op threads = torch threads
  jit        torch.jit.trace + torch.jit.freeze of the folded model (freezing lets TorchScript fuse
             conv+add+relu, which eager cannot)
  compiled   torch.compile of the folded model (only with --compile; compile time is reported)
  normlab    normlab's own serving path, `normlab.load(run)` / `predict` / `eval` with the default
             backend torch (serving.prepare: BatchNorm folded, channels_last), under inference_mode
  normlab_ort  the same path with `--backend onnxruntime` (serving.prepare: ONNX Runtime on the
             folded model, tensors in and out)

Targets: folded at least 1.3x eager at the large batch (issue 9); normlab's serving path at least
0.8x ONNX Runtime's images/s at batch 1 and at the large batch (issue 19), reported for both
backends.

Before timing, each cell checks that every variant's output matches eager's within 1e-4 x the
output scale and raises NormlabError otherwise. BatchNorm statistics and affine are randomized
first (as after training), so folding is really exercised rather than dividing by sqrt(1 + eps).

Timing: warm-up calls, then rounds; in each round every variant runs a chunk of calls sized to
about 1/rounds of --seconds, in rotating order, so a noisy neighbour slows all variants alike.
A variant's time is the median over rounds of the per-call time. Prints a table and writes
benchmarks/results/infer.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import normlab
from normlab.errors import NormlabError
from normlab.nn.surgery import fuse_bn
from normlab.export import _onnx_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import format_peaks, forward_flops, load_average, machine_info, peaks  # noqa: E402

# (model, input size): the tutorials' models at the sizes the tutorials train them
MODELS = [("lenet-bn", 28), ("resnet18-d2l", 28), ("resnet18-d2l", 96), ("densenet-d2l", 96),
          ("googlenet-mini", 28), ("resnet20", 32)]
LARGE_BATCH = 256
# One call of resnet18-d2l / densenet-d2l at 96px and batch 256 takes 3-5 s on 2 cores: use 64 there.
LARGE_BATCH_96 = 64
VARIANTS = ("eager", "eager_cl", "folded", "folded_cl", "onnx", "jit", "normlab", "normlab_ort")
TARGET = 1.3  # issue 9: folded at least 1.3x eager at batch 256
ORT_TARGET = 0.8  # issue 19: normlab's serving path at least 0.8x ONNX Runtime
REL_TOL = 1e-4


@dataclass
class Variant:
    name: str
    fn: Callable
    x: object  # the input in the form fn takes (tensor, channels_last tensor or numpy array)
    build_s: float = 0.0
    times: list = field(default_factory=list)

    def __call__(self):
        return self.fn(self.x)


def build_model(name: str, size: int, seed: int = 0) -> nn.Module:
    """The model in eval mode, with BatchNorm statistics and affine as a trained model has them."""
    torch.manual_seed(seed)
    model = normlab.create_model(name, num_classes=10, in_channels=1, input_size=(size, size))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                c = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
                if m.weight is not None:
                    m.weight.copy_(0.5 + torch.rand(c, generator=g))
                    m.bias.copy_(0.1 * torch.randn(c, generator=g))
    return model.eval()


def count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def _torch_fn(model):
    def run(x):
        with torch.inference_mode():
            return model(x)

    return run


def make_variants(model: nn.Module, x: torch.Tensor, names=VARIANTS, threads: int | None = None) -> dict:
    """Every requested variant of `model`, ready to run on its own copy of input `x`."""
    threads = threads or torch.get_num_threads()
    out = {}
    folded = fuse_bn(model) if any(n.startswith(("folded", "jit", "compiled")) for n in names) else None
    for name in names:
        t0 = time.perf_counter()
        if name == "eager":
            v = Variant(name, _torch_fn(model), x)
        elif name == "eager_cl":
            cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
            v = Variant(name, _torch_fn(cl), x.contiguous(memory_format=torch.channels_last))
        elif name == "folded":
            v = Variant(name, _torch_fn(folded), x)
        elif name == "folded_cl":
            cl = copy.deepcopy(folded).to(memory_format=torch.channels_last)
            v = Variant(name, _torch_fn(cl), x.contiguous(memory_format=torch.channels_last))
        elif name == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            # ORT's pool spins after each run by default; interleaved with torch on few cores the
            # spinning threads steal torch's cores (measured: eager lenet-bn 100x slower).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            with torch.no_grad():
                data = _onnx_bytes(model, x[:2] if len(x) > 1 else x)
            sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
            v = Variant(name, lambda a, s=sess: s.run(None, {"input": a})[0], x.numpy())
        elif name == "jit":
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript announces its deprecation
                frozen = torch.jit.freeze(torch.jit.trace(folded, x))
            v = Variant(name, _torch_fn(frozen), x)
        elif name in ("normlab", "normlab_ort"):
            from normlab import serving

            backend = "torch" if name == "normlab" else "onnxruntime"
            served = serving.prepare(copy.deepcopy(model), backend, x[:1], fuse=True,
                                     channels_last=backend == "torch" and x.dim() == 4, threads=threads)
            # ONNX Runtime never touches autograd: called as it is, like the onnx variant
            v = Variant(name, _torch_fn(served) if backend == "torch" else served, x)
        elif name == "compiled":
            compiled = torch.compile(folded)
            compiled_fn = _torch_fn(compiled)
            compiled_fn(x)  # compilation happens on the first call: count it as build time
            v = Variant(name, compiled_fn, x)
        else:
            raise NormlabError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS + ('compiled',))}")
        v.build_s = time.perf_counter() - t0
        out[name] = v
    return out


def _as_tensor(y) -> torch.Tensor:
    return torch.from_numpy(y) if isinstance(y, np.ndarray) else y


def check(variants: dict, rel_tol: float = REL_TOL) -> dict:
    """Max |variant - eager| for every variant; NormlabError if any exceeds rel_tol x output scale."""
    ref = variants["eager"]().float()
    scale = max(float(ref.abs().max()), 1e-6)  # tolerance follows the logits, however small
    diffs, bad = {}, []
    for name, v in variants.items():
        if name == "eager":
            continue
        got = _as_tensor(v()).float()
        if got.shape != ref.shape:
            raise NormlabError(f"{name} gives shape {tuple(got.shape)}, eager {tuple(ref.shape)}")
        diffs[name] = float((got - ref).abs().max())
        if not diffs[name] <= rel_tol * scale:  # `not <=` so that NaN fails too
            bad.append(f"{name}: max |diff| {diffs[name]:.2e}")
    if bad:
        raise NormlabError(f"variants disagree with eager eval (tolerance {rel_tol * scale:.2e} = {rel_tol} x "
                           f"output scale {scale:.3g}): " + "; ".join(bad))
    return diffs


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # CUDA calls return before the work is done


def time_variants(variants: dict, rounds: int, seconds: float, warmup: int = 2,
                  device: torch.device = torch.device("cpu")) -> dict:
    """Median seconds per call of each variant, interleaved round by round."""
    chunk = {}
    for name, v in variants.items():
        for _ in range(max(0, warmup - 1)):
            v()
        _sync(device)
        t0 = time.perf_counter()
        v()
        _sync(device)
        one = time.perf_counter() - t0
        chunk[name] = max(1, round(seconds / rounds / max(one, 1e-6)))
    names = list(variants)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: nobody always goes first
        for name in order:
            v, n = variants[name], chunk[name]
            t0 = time.perf_counter()
            for _ in range(n):
                v()
            _sync(device)
            v.times.append((time.perf_counter() - t0) / n)
    return {name: statistics.median(v.times) for name, v in variants.items()}


def run_cell(name: str, size: int, batch: int, names, rounds: int, seconds: float, threads: int,
             device: torch.device = torch.device("cpu")) -> dict:
    model = build_model(name, size).to(device)
    x = torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    variants = make_variants(model, x, names, threads)
    diffs = check(variants)
    per_call = time_variants(variants, rounds, seconds, device=device)
    row = {"model": name, "size": size, "batch": batch, "rounds": rounds,
           "forward_flops_per_image": forward_flops(model, (1, size, size)),
           "bn_layers": count_bn(model), "bn_left_after_fuse": count_bn(fuse_bn(model)),
           "img_s": {k: batch / t for k, t in per_call.items()},
           "ms_per_call": {k: 1000 * t for k, t in per_call.items()},
           "max_abs_diff": diffs, "build_s": {k: v.build_s for k, v in variants.items() if k != "eager"}}
    eager = row["img_s"]["eager"]
    row["vs_eager"] = {k: s / eager for k, s in row["img_s"].items() if k != "eager"}
    folds = [k for k in ("folded", "folded_cl") if k in row["img_s"]]
    if folds:
        best = max(folds, key=lambda k: row["img_s"][k])
        row["best_fold"] = best
        row["best_fold_vs_eager"] = row["vs_eager"][best]
    # folding alone, layout held fixed
    if "folded" in row["img_s"]:
        row["fold_gain_nchw"] = row["img_s"]["folded"] / eager
    if "folded_cl" in row["img_s"] and "eager_cl" in row["img_s"]:
        row["fold_gain_cl"] = row["img_s"]["folded_cl"] / row["img_s"]["eager_cl"]
    return row


def utilization(rows: list, peak_fp32: float, conv_fp32: float | None = None) -> None:
    """Achieved FLOP/s and fraction of the fp32 matmul peak (and of the large convolution's
    FLOP/s, when measured), per variant, into each row."""
    print(f"\nachieved GFLOP/s and % of the fp32 matmul peak ({peak_fp32 / 1e9:,.0f} GFLOP/s); FLOPs = 2 x mult-adds:")
    for row in rows:
        f = row["forward_flops_per_image"]
        row["gflop_s"] = {k: s * f / 1e9 for k, s in row["img_s"].items()}
        row["frac_fp32_peak"] = {k: s * f / peak_fp32 for k, s in row["img_s"].items()}
        if conv_fp32:
            row["frac_fp32_conv_peak"] = {k: s * f / conv_fp32 for k, s in row["img_s"].items()}
        best = max(row["img_s"], key=row["img_s"].get)
        print(f"  {row['model']:<15}{row['size']:>3}px b{row['batch']:<4} eager {row['gflop_s']['eager']:6.1f} "
              f"({100 * row['frac_fp32_peak']['eager']:4.1f}%)  best {best} {row['gflop_s'][best]:6.1f} "
              f"({100 * row['frac_fp32_peak'][best]:4.1f}%)")


def ort_ratios(rows: list) -> None:
    """normlab's serving path (both backends) over ONNX Runtime, against ORT_TARGET."""
    print(f"\nnormlab's serving path / ONNX Runtime (target {ORT_TARGET}x at batch 1 and the large batch):")
    for row in rows:
        s = row["img_s"]
        if "onnx" not in s:
            continue
        row["vs_onnx"] = {k: s[k] / s["onnx"] for k in ("normlab", "normlab_ort") if k in s}
        row["ort_target_met"] = {k: r >= ORT_TARGET for k, r in row["vs_onnx"].items()}
        print(f"  {row['model']:<15}{row['size']:>3}px b{row['batch']:<4} "
              + "  ".join(f"{k} {r:.2f}x {'met' if r >= ORT_TARGET else 'NOT met'}" for k, r in row["vs_onnx"].items()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of ~0.3 s per cell instead of 5 of ~1 s")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch and ORT intra-op threads (default: all cores)")
    parser.add_argument("--compile", action="store_true", help="add torch.compile (minutes of compiling on CPU)")
    parser.add_argument("--models", nargs="*", help="only these model names")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (onnx runs on the CPU only: "
                        "it is left out on other devices)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "infer.json"))
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = VARIANTS + (("compiled",) if args.compile else ())
    if device.type != "cpu":
        names = tuple(n for n in names if n not in ("onnx", "normlab_ort"))
    rounds, seconds = (3, 0.3) if args.quick else (5, 1.0)
    info = machine_info(device)
    peak_before = peaks(device, args.quick)
    print(f"{info['cpu_model']}, {info['cpu_count']} cores, torch {info['torch']}, threads {args.threads}, "
          f"load average {info['load_average_before']}\nmatmul peak now: {format_peaks(peak_before)}")
    cols = [n for n in names if n != "eager"]
    w = {n: max(10, len(n) + 2) for n in cols}
    head = f"{'model':<15}{'px':>4}{'batch':>6}{'eager':>9}" + "".join(f"{n:>{w[n]}}" for n in cols)
    print("images/s (ratio vs eager in brackets)\n" + head)
    rows, samples = [], [peak_before]
    for name, size in MODELS:
        if args.models and name not in args.models:
            continue
        if rows:  # a short peak sample between models: a busy neighbour rarely slows them all
            samples.append(peaks(device, quick=True))
        for batch in (1, LARGE_BATCH_96 if size >= 96 else LARGE_BATCH):
            # a 96px large-batch call is ~1 s: fewer rounds, one call per chunk
            r_rounds = 3 if size >= 96 and batch > 1 else rounds
            row = run_cell(name, size, batch, names, r_rounds, seconds, args.threads, device)
            rows.append(row)
            s = row["img_s"]
            print(f"{name:<15}{size:>4}{batch:>6}{s['eager']:>9,.0f}"
                  + "".join(f"{s[n]:>{w[n]},.0f}" for n in cols), flush=True)
            ratios = "".join(f"{'(' + format(row['vs_eager'][n], '.2f') + ')':>{w[n]}}" for n in cols)
            print(" " * 34 + ratios, flush=True)
    print(f"\nBN-folded vs eager (NCHW) at the large batch (target {TARGET}x; best of NCHW and channels_last);"
          "\nfold alone = folded/eager in NCHW and folded_cl/eager_cl in channels_last:")
    for row in rows:
        if row["batch"] == 1:
            continue
        met = row["best_fold_vs_eager"] >= TARGET
        row["target_met"] = met
        print(f"  {row['model']:<15}{row['size']:>3}px b{row['batch']:<4} {row['best_fold']:<10} "
              f"{row['best_fold_vs_eager']:.2f}x  {'met' if met else 'NOT met'}  fold alone "
              f"{row.get('fold_gain_nchw', float('nan')):.2f}/{row.get('fold_gain_cl', float('nan')):.2f}  "
              f"(BatchNorms {row['bn_layers']}, left after fuse_bn {row['bn_left_after_fuse']})")
    # the peak measured again at the end; the highest sample is the reference (a lower bound
    # of the fraction of peak a variant reaches)
    peak_after = peaks(device, args.quick)
    samples.append(peak_after)
    peak = {k: max(x[k] for x in samples) for k in peak_before}
    print(f"\nmatmul peak at the end: {format_peaks(peak_after)}; used (highest of {len(samples)} samples): "
          f"{format_peaks(peak)}")
    utilization(rows, peak["fp32"], peak.get("fp32_conv"))
    if device.type == "cpu":
        ort_ratios(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import onnxruntime

    meta = {**info, "onnxruntime": onnxruntime.__version__, "threads": args.threads,
            "machine": platform.machine(), "quick": args.quick, "target": TARGET, "ort_target": ORT_TARGET,
            "rel_tol": REL_TOL, "peak_flops_before": peak_before, "peak_flops_after": peak_after,
            "peak_flops": peak, "peak_samples": samples, "load_average_after": load_average(),
            "flops_rule": "2 x the mult-adds of `normlab inspect` (convs and linears) per image forward"}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
