"""The stacked InstanceNorm's layout, before and after: a seed batch of LeNet-IN (the claims'
lenet-conv in-affine cell, 5 seeds) when the stacked InstanceNorm hands on NCHW (as
F.instance_norm returns it, before the fix) and when it hands on channels_last (now), beside the
5 seeds one by one; 30 training steps, best of 3 alternating rounds, one thread.

    python benchmarks/seed_batch_layout.py   # JSON to benchmarks/results/seed_batch_layout.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_record import machine_info, write_results  # noqa: E402
from seed_batch import batched, one_by_one  # noqa: E402

from normlab.experiments.claims.index import select  # noqa: E402
from normlab.experiments.claims.runner import plan  # noqa: E402
from normlab.grid import cell_config  # noqa: E402
from normlab.models import stacked  # noqa: E402


def keep_nchw(x, y):
    """In place of stacked._layout_of: the output as instance_norm returns it (NCHW), as before the fix."""
    return y


def main() -> None:
    torch.set_num_threads(1)
    dev = torch.device("cpu")
    info = machine_info(dev)
    exps, _ = plan(select(None), quick=False)
    exp, cells = exps["lenet-conv"]
    cell = next(c for c in cells if c.id == "norm=in-affine")
    opts = {k: v for k, v in cell_config(exp, cell, 0, "unused").items() if k not in ("out", "seed")}
    seeds, steps, now = list(range(5)), 30, stacked._layout_of
    ways = {"one by one": [], "batched, NCHW after IN (before)": [], "batched, channels_last kept (now)": []}
    for _ in range(3):
        ways["one by one"].append(one_by_one(opts, seeds, steps, dev))
        stacked._layout_of = keep_nchw
        ways["batched, NCHW after IN (before)"].append(batched(opts, seeds, steps, dev))
        stacked._layout_of = now
        ways["batched, channels_last kept (now)"].append(batched(opts, seeds, steps, dev))
    one = min(ways["one by one"])
    rows = [{"way": k, "seconds": min(v), "ratio_to_one_by_one": one / min(v)} for k, v in ways.items()]
    for r in rows:
        print(f"{r['way']:<36}{r['seconds']:7.3f} s for {len(seeds)} seeds x {steps} steps  "
              f"({r['ratio_to_one_by_one']:.2f}x one by one)")
    write_results(Path(__file__).parent / "results" / "seed_batch_layout.json", rows, info, steps=steps,
                  seeds=len(seeds), cell="lenet-conv norm=in-affine")


if __name__ == "__main__":
    main()
