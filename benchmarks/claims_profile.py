"""Where `normlab claims --quick` spends its wall time, by phase, and how seed batching changes it.

    python benchmarks/claims_profile.py            # one seed of every planned cell, one by one
    python benchmarks/claims_profile.py --batched  # also each cell's seeds as one seed batch

The claims' plan (experiments/claims) lists every cell it trains with its seeds. For each cell
this trains its first seed as `normlab compare` would (normlab.train, one thread) and times the
phases of the run by wrapping the functions that do them: building (data loading and fitting
the input transform, model, optimizer), training steps, evaluation after each epoch, checkpoint
commits, and the end-of-run files (weights, curves.png, summary). The seconds of a cell are then
multiplied by its seeds, which gives an estimate of the whole command's training time, by phase,
without running all of it; process start-up (python + torch import) is timed once. With
--batched every cell that seed batching takes is also trained as one batch of all its seeds, and
its wall time set beside the one-by-one estimate. JSON to benchmarks/results/claims_profile.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_record import machine_info, write_results  # noqa: E402

PHASES = {  # (module, function) -> phase
    ("normlab.data.pipeline", "load"): "data",
    ("normlab.train.build", "build_model"): "model",
    ("normlab.train.trainer", "train_epoch"): "train steps",
    ("normlab.train.trainer", "evaluate"): "evaluation",
    ("normlab.train.checkpoint", "commit_epoch"): "checkpoints",
    ("normlab.train.hooks", "plot_curves"): "curves.png",
}


class Timers:
    def __init__(self):
        self.t = defaultdict(float)

    def wrap(self, module, name, phase):
        import importlib

        mod = importlib.import_module(module)
        fn = getattr(mod, name)

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[phase] += time.perf_counter() - t0
        setattr(mod, name, timed)


def startup_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import normlab.cli, torch"], check=True)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batched", action="store_true", help="also time each batchable cell as one seed batch")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "claims_profile.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    info = machine_info(torch.device("cpu"))
    import normlab
    from normlab.experiments.claims.index import select
    from normlab.experiments.claims.runner import plan
    from normlab.experiments.seed_groups import OFF_CPU, why_not
    from normlab.grid import cell_config
    from normlab.models.registry import get_spec
    from normlab.train.seed_batch import train_seeds

    timers = Timers()
    for (m, f), phase in PHASES.items():
        timers.wrap(m, f, phase)
    exps, _ = plan(select(None), quick=True)
    rows, total = [], defaultdict(float)
    with tempfile.TemporaryDirectory() as tmp:
        for ename, (exp, cells) in exps.items():
            for cell in cells:
                cfg = cell_config(exp, cell, exp.seeds[0], str(Path(tmp) / ename / cell.id))
                cfg["threads"] = 1
                before = dict(timers.t)
                t0 = time.perf_counter()
                try:
                    normlab.train(cfg, log=lambda *a: None)
                    status = "ok"
                except Exception as exc:  # a diverging arm is a result of the claims, not of this script
                    status = type(exc).__name__
                wall = time.perf_counter() - t0
                phases = {p: timers.t[p] - before.get(p, 0.0) for p in set(PHASES.values())}
                n = len(exp.seeds)
                row = {"experiment": ename, "cell": cell.id, "seeds": n, "run_seconds": wall, "phases": phases,
                       "status": status}
                reason = why_not({k: v for k, v in cfg.items() if k != "out"})
                row["seed_batch"] = reason or "on"
                row["family"] = get_spec(cfg["model"]).family
                # --batched times every cell that stacks, also in families off by default (to decide them)
                stacks = reason is None or reason in OFF_CPU.values()
                if args.batched and stacks and n > 1:
                    t0 = time.perf_counter()
                    base = {k: v for k, v in cfg.items() if k not in ("seed", "out")}
                    outs = [Path(tmp) / ename / f"{cell.id}-b{s}" for s in exp.seeds]
                    train_seeds(base, exp.seeds, outs, Path(tmp) / ename / f".b-{cell.id}", log=lambda *a: None)
                    row["batched_seconds"] = time.perf_counter() - t0
                rows.append(row)
                for p, v in phases.items():
                    total[p] += v * n
                total["run (all phases)"] += wall * n
                print(f"{ename:<18}{cell.id:<34}{n:>3} x {wall:6.2f} s  " +
                      "  ".join(f"{p} {v:.2f}" for p, v in sorted(phases.items())) +
                      (f"  batched {row['batched_seconds']:.2f} s" if "batched_seconds" in row else ""), flush=True)
    start = startup_seconds()
    print(f"\nestimated training of `claims --quick` one by one (each cell's first seed x its seeds): "
          f"{total['run (all phases)']:.0f} s; process start-up (python + torch + normlab) {start:.1f} s once")
    for p in sorted(total, key=lambda k: -total[k]):
        print(f"  {p:<18}{total[p]:8.0f} s  {100 * total[p] / total['run (all phases)']:5.1f}%")
    if args.batched:
        fams = sorted({r["family"] for r in rows if "batched_seconds" in r})
        for fam in fams:
            rs = [r for r in rows if "batched_seconds" in r and r["family"] == fam]
            one = sum(r["run_seconds"] * r["seeds"] for r in rs)
            bat = sum(r["batched_seconds"] for r in rs)
            print(f"  {fam:<14} {len(rs):>3} cells: one by one {one:6.0f} s (estimated), batched {bat:6.0f} s "
                  f"(measured): {one / bat:.2f}x")
    write_results(args.out, rows, info, totals=dict(total), startup_seconds=start)


if __name__ == "__main__":
    main()
