"""Where a training step's time goes, per model: torch.profiler over a few steps, by kind of op.

    python benchmarks/profile_train.py                      # the six models, their default layout
    python benchmarks/profile_train.py --models digitnet --bf16 --steps 5

Each model trains on random inputs with normlab's step (fused Adam, the registry's default
layout: channels_last where `normlab train` uses it) at the batch size of benchmarks/train.py.
The self CPU time of every op is summed into kinds: convolution (forward and backward, incl.
oneDNN's reorders), matmul (linear layers), norm (batch norm, incl. its backward), pointwise
(activations, adds, copies, layout changes), pooling, optimizer (Adam), other (loss, autograd
bookkeeping). The share outside convolution and matmul is what a higher fraction of peak would
have to remove. Writes benchmarks/results/profile_train.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import normlab
from normlab.config import make_config
from normlab.models import get_spec
from normlab.train.optim import make_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

MODELS = [("lenet-bn", 28, 64, {}), ("digitnet", 28, 64, {"width": 32}), ("googlenet-mini", 28, 64, {}),
          ("resnet20", 32, 64, {}), ("resnet18-d2l", 96, 16, {}), ("densenet-d2l", 96, 16, {})]

KINDS = [  # first match wins; names are aten op names as the profiler reports them
    ("convolution", ("conv", "mkldnn", "onednn", "reorder")),
    ("matmul", ("addmm", "mm", "matmul", "linear", "bmm")),
    ("norm", ("batch_norm", "native_batch_norm", "layer_norm", "group_norm")),
    ("pooling", ("pool",)),
    ("optimizer", ("adam", "foreach", "fused")),
    ("pointwise", ("relu", "sigmoid", "threshold", "add", "mul", "div", "sub", "copy", "clone", "contiguous",
                   "empty", "fill", "zero", "to", "cat", "sum", "mean", "where", "sqrt", "rsqrt")),
]


def kind_of(name: str) -> str:
    n = name.lower()
    for kind, keys in KINDS:
        if any(k in n for k in keys):
            return kind
    return "other"


def profile_model(name, size, batch, options, steps, bf16):
    torch.manual_seed(0)
    model = normlab.create_model(name, num_classes=10, in_channels=1, input_size=(size, size), **options)
    cl = get_spec(name).default_channels_last
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, make_config({"optimizer": "adam", "lr": 1e-3}))
    x = torch.randn(batch, 1, size, size)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    by_kind, ops = defaultdict(float), defaultdict(float)
    for e in prof.key_averages():
        if e.key.startswith("aten::") or "mkldnn" in e.key or "Optimizer" in e.key or "fused" in e.key.lower():
            by_kind[kind_of(e.key)] += e.self_cpu_time_total
            ops[e.key] += e.self_cpu_time_total
    total = sum(by_kind.values()) or 1.0
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:8]
    return {"model": name, "size": size, "batch": batch, "channels_last": cl, "bf16": bf16, "steps": steps,
            "ms_per_step": total / 1000 / steps,
            "share": {k: v / total for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
            "top_ops": [(k, v / total) for k, v in top]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", help="only these model names")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "profile_train.json"))
    args = ap.parse_args(argv)
    rows = []
    for name, size, batch, options in MODELS:
        if args.models and name not in args.models:
            continue
        r = profile_model(name, size, batch, options, args.steps, args.bf16)
        rows.append(r)
        shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["share"].items())
        print(f"{name:<15}{size:>3}px b{batch:<3} {'NHWC' if r['channels_last'] else 'NCHW'} "
              f"{r['ms_per_step']:7.1f} ms/step (op self time): {shares}", flush=True)
        print("    top ops: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["top_ops"][:5]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_info(torch.device("cpu")), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
