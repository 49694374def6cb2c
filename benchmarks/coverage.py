"""Coverage of the paired t interval (analysis/paired.py) by simulation, for the noise shapes the
reports' per-seed differences may have, at the seed counts the reports use.

    python benchmarks/coverage.py             # 20,000 simulated studies per cell
    python benchmarks/coverage.py --reps 2000 # a smoke test

For each noise shape (centred, so the true mean difference is known) and each n, draws `reps`
samples of n differences, builds the 95% paired t interval of each and counts how often it holds
the true mean. Prints a table and writes benchmarks/results/coverage.json; the docstring of
analysis/paired.py and docs/experiments.md quote these numbers, and nothing wider.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from normlab.analysis import paired

SHAPES = {
    # name: (draw centred noise of a shape, skewness)
    "normal": (lambda rng, s: rng.standard_normal(s), 0.0),
    "gamma(8)": (lambda rng, s: rng.gamma(8.0, 1.0, s) - 8.0, 2 / math.sqrt(8)),
    "lognormal sigma 0.5": (lambda rng, s: rng.lognormal(0.0, 0.5, s) - math.exp(0.125),
                            (math.exp(0.25) + 2) * math.sqrt(math.exp(0.25) - 1)),
    "exponential": (lambda rng, s: rng.exponential(1.0, s) - 1.0, 2.0),
    "lognormal sigma 1": (lambda rng, s: rng.lognormal(0.0, 1.0, s) - math.exp(0.5),
                          (math.exp(1) + 2) * math.sqrt(math.exp(1) - 1)),
}
NS = (3, 5, 10, 30)


def coverage(draw, n: int, reps: int, rng) -> float:
    d = draw(rng, (reps, n))
    _, lo, hi = paired.t_interval(d)
    return float(np.mean((lo <= 0.0) & (0.0 <= hi)))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20_000, help="simulated studies per shape and n (default 20000)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "coverage.json"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    print(f"{'noise':<22}{'skewness':>9}" + "".join(f"{'n=' + str(n):>9}" for n in NS))
    for name, (draw, skew) in SHAPES.items():
        cov = {n: coverage(draw, n, args.reps, rng) for n in NS}
        rows.append({"noise": name, "skewness": skew, "coverage": {str(n): c for n, c in cov.items()}})
        print(f"{name:<22}{skew:>9.2f}" + "".join(f"{100 * c:>8.1f}%" for c in cov.values()))
    se = math.sqrt(0.95 * 0.05 / args.reps)
    print(f"{args.reps:,} simulated studies per cell; standard error about {100 * se:.2f} points at 95%")
    doc = {"method": f"{paired.LEVEL:.0%} paired t interval (analysis/paired.py t_interval)", "reps": args.reps,
           "seed": args.seed, "n": list(NS), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


if __name__ == "__main__":
    main()
