"""Seed-batched training against seeds one by one: seed-steps per second and fraction of peak.

    python benchmarks/seed_batch.py                 # the four families at S = 1, 5, 10, 20
    python benchmarks/seed_batch.py --quick         # fewer steps, S = 1, 5, 10
    python benchmarks/seed_batch.py --claims-quick  # also `normlab claims --quick` both ways
    python benchmarks/seed_batch.py --families none --claims-full --jobs 2  # the full claims both ways
    python benchmarks/seed_batch.py --families none --claims-full --jobs 2 --claims-way one_by_one \
        --out benchmarks/results/seed_batch_claims_full.json   # one way now, the other later
    python benchmarks/seed_batch.py --device cuda   # on a GPU

For each family, in the setting the claims train it (dataset, batch, optimizer, lr, norm):
  one by one   S separate runs (build.build_run, the trainer's Step), each timed over the same
               training steps; seed-steps/s = S x steps / the summed time
  batched      one seed batch of S (train/seed_batch.py, Group.step over the stacked model)
A seed-run of E epochs is E x steps-per-epoch seed-steps, so the ratio of seed-steps/s is the
ratio of seed-runs/s of the training itself; fixed per-run costs (start-up, data, evaluation,
writing), which the batch shares, come on top and are in the `claims --quick` wall times.

Fraction of peak: training FLOPs (3 forward passes' convs and matmuls, machine.py) per second
over the fp32 matmul peak measured in the same run (the best of its samples). Timings are the
best of 3 rounds (a neighbour only slows a round). The JSON (benchmarks/results/seed_batch.json)
names the CPU, torch, date and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_record import machine_info, write_results  # noqa: E402
from machine import TRAIN_FORWARDS, format_peaks, forward_flops, peaks  # noqa: E402

import normlab  # noqa: E402
from normlab.config import make_config  # noqa: E402
from normlab.train.build import build_run  # noqa: E402
from normlab.train.resolve import resolve_config  # noqa: E402
from normlab.train.seed_batch import Group  # noqa: E402

# The claims' settings (analysis/claims/trained.py): lenet-bn as lenet-b32/lenet-early (mnist5k,
# Adam 1e-3; batch 64 here), the mlp of the l1/l2/lr claims (digits, depth 2 width 64), digitnet
# (the fast recipe's net on mnist5k), resnet20 and preact-resnet20 as the resnets claims (digits, momentum 0.05).
FAMILIES = {
    "lenet-bn": {"dataset": "mnist5k", "model": "lenet-bn", "optimizer": "adam", "lr": 1e-3, "batch_size": 64},
    "mlp": {"dataset": "digits", "model": "mlp", "depth": 2, "width": 64, "norm": "none", "batch_size": 64},
    "digitnet": {"dataset": "mnist5k", "model": "digitnet", "batch_size": 64},
    "resnet20": {"dataset": "digits", "model": "resnet20", "optimizer": "momentum", "lr": 0.05, "batch_size": 64,
                 "weight_decay": 1e-4, "schedule": "cosine"},
    "preact-resnet20": {"dataset": "digits", "model": "preact-resnet20", "optimizer": "momentum", "lr": 0.05,
                        "batch_size": 64, "weight_decay": 1e-4, "schedule": "cosine"},
    # the ln-recurrent claim's GRU (width 64, adam 1e-3) at its largest batch
    "gru-rows": {"dataset": "mnist5k", "model": "gru-rows", "width": 64, "norm": "ln", "optimizer": "adam",
                 "lr": 1e-3, "batch_size": 32},
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_by_one(options: dict, seeds: list, steps: int, device) -> float:
    """Seconds for `steps` training steps of each seed, run after run (build not counted)."""
    total = 0.0
    for s in seeds:
        run = build_run(make_config(options, {"seed": s, "device": str(device), "progress": False}))
        batches = _batches(run.pipe.train, steps + 2)
        for xb, yb in batches[:2]:  # warm-up
            run.step(xb, yb)
        sync(device)
        t0 = time.perf_counter()
        for xb, yb in batches[2:]:
            run.step(xb, yb)
        sync(device)
        total += time.perf_counter() - t0
    return total


def batched(options: dict, seeds: list, steps: int, device) -> float:
    cfgs = [resolve_config(make_config(options, {"seed": s, "device": str(device), "progress": False})) for s in seeds]
    with ExitStack() as held:
        g = Group(cfgs, [None] * len(seeds), None, lambda *a: None, held)
        batches = _batches(g.loader, steps + 2)
        for b in batches[:2]:
            g.step(*b)
        sync(device)
        t0 = time.perf_counter()
        for b in batches[2:]:
            g.step(*b)
        sync(device)
        return time.perf_counter() - t0


def _batches(loader, n):
    out = []
    while len(out) < n:
        for b in loader:
            out.append(b)
            if len(out) == n:
                break
    return out


def flops_per_image(options: dict) -> int:
    cfg = resolve_config(make_config(options))
    shape = (1, 8, 8) if cfg.dataset == "digits" else (1, 28, 28)
    kw = {k: getattr(cfg, k) for k in ("depth", "width") if getattr(cfg, k) is not None}
    model = normlab.create_model(cfg.model, num_classes=10, in_channels=1, input_size=shape[1:], norm=cfg.norm, **kw)
    return TRAIN_FORWARDS * (forward_flops(model, shape) + recurrent_flops(model, shape))


def recurrent_flops(model, shape) -> int:
    """The recurrent cells' products W_ih x and W_hh h at each of the image's rows, which
    `normlab inspect` (layers, not the cells' own matmuls) does not count."""
    from normlab.models.rnn import NormGRUCell

    cells = [m for m in model.modules() if isinstance(m, NormGRUCell)]  # the LSTM cell is one too
    return sum(2 * shape[1] * c.weight_ih.shape[0] * (c.weight_ih.shape[1] + c.hidden) for c in cells)


def measure(name: str, options: dict, sizes, steps: int, device, rounds: int = 3) -> list[dict]:
    rows, f = [], flops_per_image(options)
    batch = options["batch_size"]
    for S in sizes:
        seeds = list(range(S))
        one = min(one_by_one(options, seeds, steps, device) for _ in range(rounds))
        bat = min(batched(options, seeds, steps, device) for _ in range(rounds))
        row = {"family": name, "seeds": S, "steps": steps, "batch": batch, "train_flops_per_image": f,
               "one_by_one_seed_steps_s": S * steps / one, "batched_seed_steps_s": S * steps / bat,
               "ratio": one / bat}
        rows.append(row)
        print(f"{name:<10}{S:>4}  one by one {row['one_by_one_seed_steps_s']:>9,.1f}  batched "
              f"{row['batched_seed_steps_s']:>9,.1f} seed-steps/s  ratio {row['ratio']:.2f}x", flush=True)
    return rows


WAYS = {"batched": [], "one_by_one": ["--no-seed-batch"]}


def _claims_command(quick: bool, folder: Path, jobs: int, only, way: str) -> list:
    return [sys.executable, "-m", "normlab", "claims", *(["--quick"] if quick else []), "--out", str(folder),
            "--jobs", str(jobs), *(["--only", only] if only else []), *WAYS[way]]


def _record_way(out: dict, way: str, folder: Path, seconds: float, load0: list) -> None:
    out[way] = seconds
    out[f"{way}_load_average"] = [load0, list(os.getloadavg())]
    doc = json.loads((folder / "claims.json").read_text())
    out[f"{way}_train_seconds"] = doc.get("train_seconds_total")
    out[f"{way}_verdicts"] = {c["name"]: c.get("verdict") for c in doc["claims"]}
    out[f"{way}_summaries"] = {c["name"]: c.get("summary") for c in doc["claims"]}


def _folders(keep, tmp: str, ways) -> dict:
    folders = {way: Path(keep) / way if keep else Path(tmp) / way for way in ways}
    for folder in folders.values():
        if folder.exists() and any(folder.iterdir()):
            raise SystemExit(f"{folder} is not empty: the claims are timed from scratch; give another --keep")
    return folders


def claims_both_ways(jobs: int, only=None, quick: bool = True, ways=tuple(WAYS), keep=None,
                     earlier: Optional[dict] = None, at_once: bool = False) -> dict:
    """Wall seconds of `normlab claims [--quick]` (or of its claims `only`) from scratch,
    seed-batched and one by one, and whether every verdict and number agrees. `ways` may name
    one way (the full claims take most of an hour a way): its figures join those of the other
    way in `earlier`, a previous run's record of the same command on the same machine. `at_once`:
    both ways started together, side by side (each with `jobs` workers), so that whatever else
    the machine does in that hour it does to both; the way that ends first leaves the other the
    machine to itself for its last stretch, which favours the slower way."""
    import tempfile

    what = "claims --quick" if quick else "claims"
    out = dict(earlier or {})
    with tempfile.TemporaryDirectory() as tmp:
        folders = _folders(keep, tmp, ways)
        if at_once:
            out["at_once"] = True
            load0, t0 = list(os.getloadavg()), time.perf_counter()
            started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            pending = {way: subprocess.Popen(_claims_command(quick, folders[way], jobs, only, way),
                                             stdout=subprocess.DEVNULL) for way in ways}
            while pending:
                for way, proc in list(pending.items()):
                    if proc.poll() is not None:
                        if proc.returncode != 0:
                            raise SystemExit(f"{what} {way} failed (exit {proc.returncode})")
                        out[f"{way}_started_utc"] = started
                        _record_way(out, way, folders[way], time.perf_counter() - t0, load0)
                        print(f"{what} {way}: {out[way]:.0f} s (both started together)", flush=True)
                        del pending[way]
                time.sleep(1.0)
        else:
            for way in ways:
                load0, t0 = list(os.getloadavg()), time.perf_counter()
                out[f"{way}_started_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                subprocess.run(_claims_command(quick, folders[way], jobs, only, way), check=True,
                               stdout=subprocess.DEVNULL)
                _record_way(out, way, folders[way], time.perf_counter() - t0, load0)
                print(f"{what} {way}: {out[way]:.0f} s", flush=True)
    if not all(w in out for w in WAYS):
        print(f"{what}: the other way is still to time (--claims-way)", flush=True)
        return out
    out["ratio"] = out["one_by_one"] / out["batched"]
    out["same_verdicts"] = out["batched_verdicts"] == out["one_by_one_verdicts"]
    out["moved"] = {k: [v, out["batched_summaries"][k]] for k, v in out["one_by_one_summaries"].items()
                    if out["batched_summaries"].get(k) != v}
    print(f"{what}{' --only ' + only if only else ''}: one by one {out['one_by_one']:.0f} s, batched "
          f"{out['batched']:.0f} s ({out['ratio']:.2f}x); verdicts {'the same' if out['same_verdicts'] else 'DIFFER'}; "
          f"{len(out['moved'])} printed summaries moved", flush=True)
    return out


def _earlier(path: str, key: str, info: dict) -> dict:
    """The claims timing `key` an earlier run wrote to `path`, if it was taken on this machine kind."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    meta = doc.get("meta", {})
    same = all(meta.get(k) == info.get(k) for k in ("cpu_model", "cpu_flags", "cpu_count", "torch"))
    return meta.get(key, {}) if same else {}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer steps, S = 1, 5, 10")
    ap.add_argument("--families", default=",".join(FAMILIES),
                    help="comma-separated, of " + ", ".join(FAMILIES) + "; none for the claims timing alone")
    ap.add_argument("--sizes", default=None, help="seed counts, default 1,5,10,20 (quick: 1,5,10)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--claims-quick", action="store_true", help="also time `normlab claims --quick` both ways")
    ap.add_argument("--claims-full", action="store_true",
                    help="also time the full `normlab claims` both ways (about an hour each on two cores)")
    ap.add_argument("--claims-way", choices=["both", *WAYS], default="both",
                    help="time one way only; the other way's figures are read from --out (same machine)")
    ap.add_argument("--at-once", action="store_true",
                    help="start both ways together, side by side (each with --jobs workers; --jobs 1 on two cores)")
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep each way's claims report in DIR/<way>")
    ap.add_argument("--jobs", type=int, default=1, help="claims --jobs")
    ap.add_argument("--claims-only", default=None, metavar="NAME,...", help="time only these claims (claims --only)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "seed_batch.json"))
    args = ap.parse_args(argv)
    if args.at_once and args.claims_way != "both":
        ap.error("--at-once times both ways together; drop --claims-way")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine_info(device)
    sizes = [int(s) for s in (args.sizes or ("1,5,10" if args.quick else "1,5,10,20")).split(",")]
    steps = 10 if args.quick else 30
    families = [f for f in args.families.split(",") if f and f != "none"]
    # the fractions of peak are the families' (the claims' wall times need none)
    peak_before = peaks(device, quick=True) if families else {"fp32": math.nan}
    print(f"{info['cpu_model'] if device.type == 'cpu' else info.get('gpu')}, torch {info['torch']}, "
          f"{torch.get_num_threads()} threads, load average {info['load_average_before']}\n"
          f"matmul peak now: {format_peaks(peak_before)}")
    rows = []
    for name in families:
        rows += measure(name, FAMILIES[name], sizes, steps, device)
    peak_after = peaks(device, quick=True) if families else peak_before
    peak = {k: max(peak_before[k], peak_after[k]) for k in peak_before}
    print(f"\nfraction of the fp32 matmul peak ({peak['fp32'] / 1e9:,.0f} GFLOP/s, the best sample):")
    for r in rows:
        imgs = r["batch"]
        for way in ("one_by_one", "batched"):
            r[f"{way}_frac_peak"] = r[f"{way}_seed_steps_s"] * imgs * r["train_flops_per_image"] / peak["fp32"]
        print(f"  {r['family']:<10}{r['seeds']:>4}  one by one {100 * r['one_by_one_frac_peak']:5.2f}%  "
              f"batched {100 * r['batched_frac_peak']:5.2f}%")
    extra: dict = {}
    ways = tuple(WAYS) if args.claims_way == "both" else (args.claims_way,)
    for key, quick, wanted in (("claims_quick", True, args.claims_quick), ("claims_full", False, args.claims_full)):
        if wanted:
            earlier = _earlier(args.out, key, info) if len(ways) == 1 else {}
            extra[key] = claims_both_ways(args.jobs, args.claims_only, quick, ways, args.keep, earlier, args.at_once)
    if extra:
        extra["load_average_after_claims"] = list(os.getloadavg())
    write_results(args.out, rows, info, quick=args.quick, peak_flops=peak, steps=steps, threads=torch.get_num_threads(),
                  **extra)


if __name__ == "__main__":
    main()
