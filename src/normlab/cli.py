"""The `normlab` command line: argument parsing only; every verb calls the library.

Each verb is a pair (add_arguments, run) registered in COMMANDS. The options of `train` are
generated from TrainConfig's fields, so a new config field is a new option with no edit here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from typing import Callable, Optional

from .errors import ConfigError, NormlabError

COMMANDS: dict[str, tuple[str, Callable, Callable]] = {}


def command(name: str, help: str):
    """Register a verb: decorate its `run(args)`; its `add(parser)` is attached with `.arguments`."""

    def wrap(run):
        def arguments(add):
            COMMANDS[name] = (help, add, run)
            return add

        run.arguments = arguments
        COMMANDS[name] = (help, lambda p: None, run)
        return run

    return wrap


# What an option left unset (None) does, in words: "(default: None)" tells a reader nothing.
UNSET_MEANS = {
    "recipe": "no recipe", "data_mirror": "the publishers' URLs only", "classes": "all classes",
    "resize": "the images' own size", "depth": "the model's own", "width": "the model's own",
    "hidden_dropout": "off", "block_order": "the model's own", "shortcut_op": "the model's own", "patience": "off",
    "ema": "off",
    "max_norm": "off", "clip_grad": "off", "log_every": "off", "widths": "--depth layers of --width",
}


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One --option per TrainConfig field; defaults are SUPPRESSed so only what was typed
    overrides the config file."""
    from .config import TrainConfig, field_default, field_type

    g = p.add_argument_group("training options (also the keys of a --config file)")
    for f in fields(TrainConfig):
        if not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = field_default(f)
        help_text = f.metadata.get("help", "")
        if "(default" not in help_text:  # some helps say their default in words ("the model's own")
            said = UNSET_MEANS[f.name] if default is None else "none" if default == "" else default
            help_text = f"{help_text} (default: {said})"
        t = field_type(f.name)
        if t is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            # Values stay strings here; make_config coerces and checks them with one set of rules.
            metavar = {int: "N", float: "X"}.get(t, f.name.upper())
            g.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def config_from_args(args: argparse.Namespace, extra: Optional[dict] = None):
    from .config import FIELDS, load_config_file, make_config

    file_values = load_config_file(args.config) if getattr(args, "config", None) else {}
    cli_values = {k: v for k, v in vars(args).items() if k in FIELDS}
    return make_config(file_values, extra or {}, cli_values)


# ---------------------------------------------------------------- train
@command("train", "train a model and write a run directory")
def run_train(args) -> int:
    from .config import FIELDS, RESUME_OPTIONS
    from .train.trainer import train

    if args.seeds is not None:
        return _train_seeds(args)
    if args.seed_batch is not None or args.no_seed_batch:
        raise ConfigError("--seed-batch and --no-seed-batch say how the seeds of --seeds are trained; "
                          "add --seeds (e.g. --seeds 0-9) or drop them")
    if args.resume:
        if args.config:
            raise ConfigError(f"--resume continues a run with its own config; only "
                              f"{', '.join('--' + k for k in sorted(RESUME_OPTIONS))} may be given (got --config)")
        # train() refuses any other option, for the command line and the Python API alike
        train({k: getattr(args, k) for k in vars(args) if k in FIELDS}, resume=args.resume)
    else:
        train(config_from_args(args))
    return 0


def _train_seeds(args) -> int:
    from .train.seed_batch import parse_seeds, seed_batch_option, train_many

    if args.resume:
        raise ConfigError("--seeds trains new runs; to continue an interrupted `train --seeds`, run the same "
                          "command again (same --out), or --resume one seed's folder alone")
    seeds = parse_seeds(args.seeds)
    results = train_many(config_from_args(args), seeds, seed_batch_option(args.no_seed_batch, args.seed_batch))
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"normlab: seed {r.seed}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def _seed_batch_options(p, what: str) -> None:
    p.add_argument("--no-seed-batch", action="store_true",
                   help=f"train {what} one by one instead of as one seed batch (docs/training.md)")
    p.add_argument("--seed-batch", type=int, metavar="S",
                   help=f"train at most S of {what} together (memory); default: all of them")


@run_train.arguments
def _(p):
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of options; the command line overrides it")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last complete epoch")
    p.add_argument("--seeds", metavar="SEEDS", help="train one run per seed, e.g. 0-9 or 1,5,7, as one seed batch "
                   "(one stacked model) where that applies, into OUT/seed-<s> (docs/training.md)")
    _seed_batch_options(p, "the seeds of --seeds")
    add_config_options(p)


def _backend_option(p) -> None:
    # Checked in serving.check_backend (one message for the CLI and the API), not by argparse.
    p.add_argument("--backend", default="torch", metavar="{torch,onnxruntime}",
                   help="what runs the model: torch, or onnxruntime (the exported graph in ONNX Runtime, "
                        "CPU only, needs the onnxruntime package; fastest on CPUs) (default: torch)")


# ---------------------------------------------------------------- eval
@command("eval", "recompute test (or clean train) accuracy of a run from its saved weights")
def run_eval(args) -> int:
    from .api import evaluate_run

    res = evaluate_run(args.run_dir, device=args.device, fuse_bn=args.fuse_bn, split=args.split,
                       backend=args.backend)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        sp = args.split
        line = f"{res['run_dir']}: {sp} acc {res[sp + '_acc']:.4f}  {sp} loss {res[sp + '_loss']:.4f}  " \
               f"({res[sp + '_size']:,} images{', eval mode, no augmentation' if sp == 'train' else ''})"
        if res.get("summary_test_acc") is not None:
            same = "matches" if res["test_acc"] == res["summary_test_acc"] else "DIFFERS FROM"
            line += f"; {same} the run's summary ({res['summary_test_acc']:.4f})"
        print(line)
    return 0


@run_eval.arguments
def _(p):
    p.add_argument("run_dir", help="a run directory written by `normlab train`")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps (default: cpu)")
    p.add_argument("--fuse-bn", action="store_true",
                   help="fold BatchNorm into the layer before it: faster, equal to rounding (default: off, so the "
                        "score reproduces the run's exactly)")
    _backend_option(p)
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="score the test split (default) or the run's own training split, in eval mode without "
                        "augmentation (the clean train accuracy)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


# ---------------------------------------------------------------- predict
@command("predict", "classify image files with a trained run")
def run_predict(args) -> int:
    from .api import predict

    preds = predict(args.run_dir, args.images, device=args.device, fuse_bn=args.fuse_bn, invert=args.invert,
                    backend=args.backend, hint=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps(preds, indent=2))
    else:
        width = max(len(p["file"]) for p in preds)
        for p in preds:
            print(f"{p['file']:<{width}}  class {p['class']}  probability {p['probability']:.3f}")
    return 0


@run_predict.arguments
def _(p):
    p.add_argument("run_dir", help="a run directory written by `normlab train`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files, any size, grayscale or colour")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps (default: cpu)")
    p.add_argument("--fuse-bn", action=argparse.BooleanOptionalAction, default=True,
                   help="fold BatchNorm into the layer before it, the same function to rounding (default: on)")
    _backend_option(p)
    p.add_argument("--json", action="store_true", help='print a JSON list of {"file", "class", "probability"}')
    p.add_argument("--invert", action="store_true",
                   help="invert the images first (black-on-white scans for a model trained on MNIST's white on black)")


# ---------------------------------------------------------------- stats
@command("stats", "per-layer activation and gradient statistics of a model or a trained run")
def run_stats_cmd(args) -> int:
    from pathlib import Path

    from .analysis import activations

    if Path(args.target).is_dir():
        reports = {args.target: activations.run_stats(args.target, batch=args.batch, seed=args.seed,
                                                      mode=args.mode or "eval")}
    else:
        shape = activations.parse_shape(args.input) if args.input else None
        reports = {}
        for init in args.init or ["default"]:
            label = f"init={init}" + (f", norm={args.norm}" if args.norm else "")
            reports[label] = activations.model_stats(args.target, init=init, norm=args.norm, act=args.act,
                                                     depth=args.depth, width=args.width, input_shape=shape,
                                                     data=args.data, batch=args.batch, seed=args.seed,
                                                     mode=args.mode or "train", bias=args.bias, head=args.head)
    if args.json:
        print(json.dumps({k: r.to_dict() for k, r in reports.items()}, indent=2))
    else:
        for label, rep in reports.items():
            print(f"== {label}")
            print(activations.format_table(rep))
    if args.plot:
        activations.plot_stats(reports, args.plot)
        print(f"plot -> {args.plot}", file=sys.stderr)
    return 0


@run_stats_cmd.arguments
def _(p):
    p.add_argument("target", metavar="MODEL_OR_RUN_DIR", help="a model name (see `normlab models`) or a run directory")
    p.add_argument("--init", action="append", metavar="SCHEME",
                   help="weight init, e.g. default, normal:std=1, kaiming-normal; repeat to compare (default: default)")
    p.add_argument("--norm", help="bn, gn, ln, in, none (default: the model's own)")
    p.add_argument("--act", help="activation (default: the model's own)")
    p.add_argument("--depth", type=int, metavar="N", help="hidden layers (mlp)")
    p.add_argument("--width", type=int, metavar="N", help="hidden width (mlp)")
    p.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None,
                   help="the hidden layers' biases (mlp; --no-bias as seed 004's 100-layer net) (default: the "
                        "model's own, on)")
    p.add_argument("--head", action=argparse.BooleanOptionalAction, default=None,
                   help="the classifier after the hidden layers (mlp; --no-head measures the hidden layers alone, "
                        "as seed 004's net has no classifier) (default: on)")
    p.add_argument("--input", metavar="CxHxW", help="input shape, e.g. 1x28x28 (default: the model's)")
    p.add_argument("--data", default="auto",
                   help="input batch: a dataset name, 'normal' (standard normal), or auto: mnist5k for "
                        "1x28x28 inputs, standard normal otherwise (default: auto)")
    p.add_argument("--batch", type=int, default=256, metavar="N", help="batch size of the pass (default: 256)")
    p.add_argument("--seed", type=int, default=0, help="seed for the weights and the batch (default: 0)")
    p.add_argument("--mode", choices=("train", "eval"),
                   help="mode of the pass (default: train for a fresh model, eval for a run directory)")
    p.add_argument("--plot", metavar="FILE", help="write a PNG of activation std and gradient norm against depth")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")


# ---------------------------------------------------------------- datasets
@command("datasets", "list the datasets (size, present or not, where), show one's files, or download them")
def run_datasets(args) -> int:
    from .data import catalog

    return catalog.run(args.names, fetch=args.download, data_dir=args.data_dir, mirror=args.data_mirror,
                       as_json=args.json)


@run_datasets.arguments
def _(p):
    p.add_argument("names", nargs="*", metavar="NAME", help="datasets to show file by file (or to download)")
    p.add_argument("--download", action="store_true", help="download the NAMEd datasets that are missing, "
                   "checking each file's MD5")
    p.add_argument("--data-dir", default=None, help="data root (default: $NORMLAB_DATA, else the user cache folder)")
    p.add_argument("--data-mirror", default=None, metavar="URL", help="mirror base URL(s) tried before the "
                   "publishers' (also $NORMLAB_DATA_MIRROR)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")


# ---------------------------------------------------------------- lr-find
@command("lr-find", "learning-rate range test: loss against an exponentially growing lr, and a suggestion")
def run_lr_find(args) -> int:
    from .train.lr_find import lr_find, plot_lr_find

    res = lr_find(config_from_args(args), start=args.start, end=args.end, steps=args.steps)
    plot_lr_find(res, args.plot)
    print(f"suggested lr {res['suggested_lr']:.3g} ({len(res['lrs'])} steps from {args.start:g}); plot: {args.plot}")
    return 0


@run_lr_find.arguments
def _(p):
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of options; the command line overrides it")
    p.add_argument("--start", type=float, default=1e-6, help="first lr (default 1e-6)")
    p.add_argument("--end", type=float, default=10.0, help="last lr (default 10)")
    p.add_argument("--steps", type=int, default=100, help="number of batches (default 100)")
    p.add_argument("--plot", default="runs/lr_find.png", help="where to write the plot (default runs/lr_find.png)")
    add_config_options(p)


# ---------------------------------------------------------------- export
@command("export", "export a trained run to ONNX or TorchScript, checked against PyTorch")
def run_export(args) -> int:
    from .export import export_run

    res = export_run(args.run_dir, args.format, args.out, fuse_bn=args.fuse_bn, check=args.check)
    diff = "" if res["max_abs_diff"] is None else f" (max |diff| vs PyTorch {res['max_abs_diff']:.2e})"
    print(f"wrote {res['path']}{diff}")
    return 0


@run_export.arguments
def _(p):
    p.add_argument("run_dir", help="a run directory written by `normlab train`")
    p.add_argument("--format", default="onnx", help="onnx or torchscript (default: onnx)")
    p.add_argument("--out", help="output file (default: RUN_DIR/model.onnx or model.torchscript.pt)")
    p.add_argument("--fuse-bn", action="store_true", help="fold BatchNorm into the preceding conv/linear first")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="run the exported file (onnxruntime / torch.jit) and compare with PyTorch (default: on)")


# ---------------------------------------------------------------- compare / report
@command("compare", "run an ablation grid from an experiment file (paired seeds, resumable, shardable)")
def run_compare(args) -> int:
    from .analysis import report
    from .analysis.results import collect
    from .experiments import spec, sweep

    exp = spec.load_experiment(args.experiment)
    shard = sweep.parse_shard(args.shard)
    if args.dry_run:
        if args.no_seed_batch or args.seed_batch is not None:
            raise ConfigError("--seed-batch and --no-seed-batch say how runs are trained, and --dry-run trains "
                              "nothing; drop them or --dry-run")
        return _print_plan(exp, sweep.plan(exp, args.out, shard), args.out)
    from .train.seed_batch import seed_batch_option

    outcome = sweep.run_sweep(exp, args.out, jobs=args.jobs, shard=shard,
                              seed_batch=seed_batch_option(args.no_seed_batch, args.seed_batch))
    rows = collect(args.out)
    missing = sum(r["status"] == "missing" for r in rows)
    if outcome.interrupted:
        s = report.write_report(args.out)
        print(f"normlab compare: interrupted; {sum(r['status'] == 'ok' for r in rows)} of {len(rows)} runs are "
              f"finished and kept, report -> {s['paths']['markdown']}; run the same command again to train the "
              f"rest", file=sys.stderr)
        return 130
    if missing:
        print(f"{args.out}/results.csv written; {missing} runs of the grid are not finished yet "
              f"(other shards?); run `normlab report {args.out}` once they are")
    else:
        s = report.write_report(args.out)
        print(f"report -> {s['paths']['markdown']} and {s['paths']['html']}")
    # stopped by the machine now (outcome) or in an earlier run of the command (rows)
    machine = sorted({n for n, _ in outcome.machine} | {r["run_dir"].split("/")[-1] for r in rows
                                                        if r["status"] == "machine"})
    if machine:
        print(f"normlab compare: {len(machine)} runs were stopped by the machine (disk full, out of memory, killed), "
              f"not by the experiment: {', '.join(machine)}; they are not results; "
              f"run the same command again to train them", file=sys.stderr)
    return 1 if outcome.failed or machine else 0


def _print_plan(exp, jobs, out) -> int:
    """`compare --dry-run`: the experiment checked (every cell is a valid config) and its runs listed."""
    done = sum(finished for _, finished in jobs)
    cells = len({job.cell.id for job, _ in jobs})
    print(f"{exp.name}: {cells} cells x {len(exp.seeds)} seeds = {len(jobs)} runs under {out}/runs "
          f"({done} finished, {len(jobs) - done} to train); nothing trained (--dry-run)")
    print("base: " + ", ".join(f"{k}={v}" for k, v in exp.base.items()))
    width = max((len(job.name) for job, _ in jobs), default=0)
    for job, finished in jobs:
        print(f"  {job.name:<{width}}  {'finished' if finished else 'to train':<8}  seed={job.seed}, "
              + ", ".join(f"{k}={v}" for k, v in job.cell.levels))
    return 0


@run_compare.arguments
def _(p):
    p.add_argument("experiment", metavar="EXPERIMENT.yaml", help="base options, factors and seeds (see docs/experiments.md)")
    p.add_argument("--out", required=True, metavar="SWEEP_DIR", help="folder for the runs, results.csv and the report")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs trained in parallel worker processes (default: 1)")
    p.add_argument("--shard", metavar="I/N", help="run only the I-th of N slices of the cells (1-based), e.g. 2/4")
    p.add_argument("--dry-run", action="store_true", help="check the experiment and list its runs (finished or "
                   "to train) without training or downloading anything")
    _seed_batch_options(p, "a cell's seeds")


@command("report", "write the report of a sweep folder, or of run folders side by side")
def run_report(args) -> int:
    from pathlib import Path

    from .analysis import report, runs

    paths = [Path(p) for p in args.folders]
    if len(paths) == 1 and not (paths[0] / "config.json").is_file():  # a sweep folder, or the error saying so
        if args.out:
            raise ConfigError("--out: a sweep's report is written into the sweep folder itself (drop --out)")
        s = report.write_report(paths[0])
        if s["missing"]:
            print(f"warning: {s['missing']} runs of the grid have not finished; the report says so", file=sys.stderr)
    elif all((p / "config.json").is_file() for p in paths):
        if not args.out:
            raise ConfigError("--out DIR is needed to compare run folders side by side (where the report goes)")
        s = runs.compare_runs(paths, args.out)
    else:
        bad = next(p for p in paths if not (p / "config.json").is_file())
        raise ConfigError(f"{str(bad)!r} is not a run folder (no config.json); give one sweep folder written by "
                          f"`normlab compare`, or run folders (`normlab runs DIR` lists them)")
    print(f"report -> {s['paths']['markdown']} and {s['paths']['html']}")
    return 0


@run_report.arguments
def _(p):
    p.add_argument("folders", nargs="+", metavar="FOLDER",
                   help="a sweep folder written by `normlab compare`, or run folders to compare side by side")
    p.add_argument("--out", metavar="DIR", help="where the side-by-side report of run folders goes")


# ---------------------------------------------------------------- runs
@command("runs", "list the run folders under a folder: model, data, accuracy, time, status")
def run_runs(args) -> int:
    from .analysis import runs

    rows = runs.list_runs(args.folder, sort=args.sort, reverse=args.reverse)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no run folders under {args.folder}")
    else:
        print(runs.text_table(rows))
    return 0


@run_runs.arguments
def _(p):
    p.add_argument("folder", nargs="?", default="runs", metavar="DIR", help="where to look, recursively (default: runs)")
    p.add_argument("--sort", default="path", metavar="COLUMN",
                   help="path, model, dataset, norm, epochs, final_test_acc, best_test_acc, seconds, date or status "
                        "(default: path)")
    p.add_argument("--reverse", action="store_true", help="sort in descending order")
    p.add_argument("--json", action="store_true", help="print a JSON list of the rows")


# ---------------------------------------------------------------- claims
@command("claims", "run the tutorials' and the normalization papers' claims as small experiments and write a "
                   "verdict report")
def run_claims_cmd(args) -> int:
    from .experiments import claims
    from .experiments.sweep import parse_shard
    from .train.seed_batch import seed_batch_option

    doc = claims.run_claims(args.out, quick=args.quick, only=args.only, jobs=args.jobs, shard=parse_shard(args.shard),
                            seed_batch=seed_batch_option(args.no_seed_batch, args.seed_batch))
    if "missing" in doc:
        return 0  # failed runs are results here (a diverged lr, BN at batch 1), named in the report
    print(f"{len(doc['claims'])} claims in {doc['total_seconds']:.0f} s ({doc['trained_now']} runs trained now, "
          f"{doc['resumed']} already finished) -> {args.out}/claims.md, claims.html, claims.json and differences.csv")
    return 0


@run_claims_cmd.arguments
def _(p):
    p.add_argument("--quick", action="store_true", help="fewer seeds and epochs (minutes on a laptop CPU)")
    p.add_argument("--out", default="claims", metavar="DIR",
                   help="folder for claims.md, claims.html and claims.json (default: claims)")
    p.add_argument("--only", metavar="NAME,...", help="run only these claims (names as in claims.md)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs trained in parallel worker processes (default: 1)")
    p.add_argument("--shard", metavar="I/N", help="train only the I-th of N slices of the claims' cells (1-based), "
                   "e.g. 2/4; the report is written once every cell has finished")
    _seed_batch_options(p, "a cell's seeds")


# ---------------------------------------------------------------- leaderboard
@command("leaderboard", "every norm against BN at four batch sizes in two models, each norm's lr tuned "
                        "(DeepOBS protocol), with paired intervals, seeds won, images/s and a figure")
def run_leaderboard_cmd(args) -> int:
    from .experiments.leaderboard import run_leaderboard

    doc = run_leaderboard(args.out, quick=args.quick, jobs=args.jobs)
    return 130 if doc.get("interrupted") else 0


@run_leaderboard_cmd.arguments
def _(p):
    p.add_argument("--quick", action="store_true", help="a 2-rate grid, 1 tuning and 3 confirmation seeds, 1-3 epochs on a "
                   "fifth of the training images (minutes; the full board is about an hour on two cores)")
    p.add_argument("--out", default="leaderboard", metavar="DIR",
                   help="folder for leaderboard.md, .html, .csv and .json, and the runs (default: leaderboard)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs trained in parallel worker processes "
                   "(default: 1)")


# ---------------------------------------------------------------- models
@command("models", "list the registered models with their parameter counts")
def run_models(args) -> int:
    from .models import catalog

    rows = catalog(args.family)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    w = max(len(r["name"]) for r in rows)
    f = max(len(r["family"]) for r in rows)
    for r in rows:
        shape = "x".join(map(str, r["input"]))
        print(f"{r['name']:<{w}}  {r['family']:<{f}}  {r['params']:>12,}  {shape:>9}  {r['description']}")
    return 0


@run_models.arguments
def _(p):
    p.add_argument("--family", help="only this family (e.g. resnet, densenet)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, family, params, input, description}")


# ---------------------------------------------------------------- inspect
@command("inspect", "per-layer output shapes, parameters and mult-adds of a model or a trained run")
def run_inspect(args) -> int:
    from pathlib import Path

    from .analysis import layer_table

    if Path(args.target).is_dir():
        given = [f"--{k}" for k in ("input", "norm", "act") if getattr(args, k)]
        if given:
            from .errors import ConfigError

            raise ConfigError(f"{', '.join(given)}: only for a model name; a run directory is "
                              f"inspected as it was trained (drop {' '.join(given)})")
        s = layer_table.inspect_run(args.target, batch=args.batch)
    else:
        shape = layer_table.parse_shape(args.input) if args.input else None
        s = layer_table.inspect_model(args.target, shape, num_classes=args.num_classes, batch=args.batch,
                                      norm=args.norm, act=args.act)
    print(json.dumps(s.to_dict(), indent=2) if args.json else layer_table.format_table(s, args.depth))
    return 0


@run_inspect.arguments
def _(p):
    p.add_argument("target", metavar="MODEL_OR_RUN_DIR", help="a model name (see `normlab models`) or a run directory")
    p.add_argument("--input", metavar="CxHxW", help="input shape, e.g. 1x28x28 (default: the model's)")
    p.add_argument("--num-classes", type=int, default=10, metavar="N", help="output classes (default: 10)")
    p.add_argument("--norm", help="bn, gn, ln, in, none (default: the model's own)")
    p.add_argument("--act", help="activation (default: the model's own)")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="batch size of the pass (default: 1)")
    p.add_argument("--depth", type=int, default=3, metavar="N", help="nesting depth of the rows shown (default: 3)")
    p.add_argument("--json", action="store_true", help="print every row and the totals as JSON")


# ---------------------------------------------------------------- main
# The verbs that may load a dataset, and so may download one.
DATA_COMMANDS = ("train", "eval", "compare", "claims", "datasets", "lr-find", "stats")


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="normlab",
        description="Build, train, inspect and compare classic image classifiers.")
    parser.add_argument("--version", action="version", version=f"normlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        if name in DATA_COMMANDS:
            p.add_argument("--offline", action="store_true",
                           help="never download a missing dataset; list the files to place (also NORMLAB_OFFLINE=1)")
        p.set_defaults(func=run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    offline_before = os.environ.get("NORMLAB_OFFLINE")
    if getattr(args, "offline", False):
        os.environ["NORMLAB_OFFLINE"] = "1"  # an environment variable reaches a sweep's worker processes too
    try:
        return args.func(args)
    except NormlabError as exc:
        print(f"normlab {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except ModuleNotFoundError as exc:  # a package of normlab's (or an extra's) missing from this environment
        if not exc.name or exc.name.split(".")[0] == "normlab":
            raise
        from .deps import missing_message

        print(f"normlab {args.command}: error: {missing_message(exc.name, f'normlab {args.command}')}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"normlab {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if getattr(args, "offline", False):  # main() called in-process leaves the environment as it was
            if offline_before is None:
                os.environ.pop("NORMLAB_OFFLINE", None)
            else:
                os.environ["NORMLAB_OFFLINE"] = offline_before


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
