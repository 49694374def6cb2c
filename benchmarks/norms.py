"""Forward+backward time of normlab's reference norm layers against torch.nn's native ones.

    python benchmarks/norms.py            # full run: 3 shapes x NCHW/channels_last x 5 layers
    python benchmarks/norms.py --quick    # one small shape, few repeats (a smoke test)
    python benchmarks/norms.py --threads 2

Times are the fastest of the repeats, single-threaded unless --threads says otherwise.

Prints a table (ratio = reference / native; below 2 meets the target) and writes
benchmarks/results/norms.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from normlab.nn.factory import make_norm

KINDS = ("bn", "gn", "ln", "in", "dropout")
FULL_SHAPES = ((32, 64, 32, 32), (64, 128, 16, 16), (128, 256, 8, 8))
QUICK_SHAPES = ((8, 32, 16, 16),)


def build(kind: str, channels: int, impl: str) -> torch.nn.Module:
    if kind == "dropout":
        if impl == "native":
            return torch.nn.Dropout(0.5)
        from normlab.nn.norm import Dropout

        return Dropout(0.5)
    return make_norm(kind, channels, 2, impl)


def time_fwd_bwd(layer: torch.nn.Module, x: torch.Tensor, repeats: int, warmup: int) -> float:
    """Fastest seconds of one forward + backward pass.

    The minimum, not the median: on a shared machine the slow runs measure the neighbours.
    """
    grad = torch.randn_like(x)
    times = []
    for i in range(warmup + repeats):
        xi = x.detach().requires_grad_()
        start = time.perf_counter()
        layer(xi).backward(grad)
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
    return min(times)


def run(shapes, repeats: int, warmup: int) -> list[dict]:
    rows = []
    for shape in shapes:
        for fmt in ("nchw", "channels_last"):
            x = torch.randn(shape)
            if fmt == "channels_last":
                x = x.to(memory_format=torch.channels_last)
            for kind in KINDS:
                row = {"kind": kind, "shape": list(shape), "format": fmt}
                for impl in ("native", "reference"):
                    torch.manual_seed(0)
                    layer = build(kind, shape[1], impl).train()
                    row[f"{impl}_ms"] = 1000 * time_fwd_bwd(layer, x, repeats, warmup)
                row["ratio"] = row["reference_ms"] / row["native_ms"]
                rows.append(row)
                print(f"{kind:8s} {'x'.join(map(str, shape)):14s} {fmt:13s} "
                      f"{row['native_ms']:9.3f} {row['reference_ms']:9.3f} {row['ratio']:6.2f}", flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small shape, few repeats")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "norms.json"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: stable timings on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shapes, repeats, warmup = (QUICK_SHAPES, 10, 3) if args.quick else (FULL_SHAPES, 15, 3)
    print(f"{'kind':8s} {'shape':14s} {'format':13s} {'native ms':>9s} {'ref ms':>9s} {'ratio':>6s}")
    rows = run(shapes, repeats, warmup)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "processor": platform.processor(), "quick": args.quick, "repeats": repeats}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    slow = [r for r in rows if r["ratio"] > 2]
    print(f"\n{len(rows) - len(slow)}/{len(rows)} within 2x of native; wrote {out}")


if __name__ == "__main__":
    main()
