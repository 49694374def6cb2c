"""`normlab leaderboard`: every norm against batch norm, at four batch sizes, on two zoo models.

The protocol is DeepOBS's (Schneider, Balles & Hennig 2019) for comparing optimizers, applied to
norms: each arm (a norm, in one model, at one batch size) gets its own learning rate, tuned on a
fixed grid with the same budget as every other arm (every rate of the grid, on the same tuning
seeds), chosen on a validation split held out from the training images; then the chosen rate is
trained again on fresh confirmation seeds, disjoint from the tuning seeds, and only those runs'
test accuracies are reported. So a norm is not ranked by how well the lr of BN suits it, and the
test split picks nothing.

  arms        NORMS x MODELS x BATCHES; a norm that cannot be built in a model (instance-style
              norms on 1x1 feature maps, ...) is listed with the refusal's reason, never dropped
  tuning      LR grid x tuning seeds per arm (Adam, linear decay to 0), scored by the final
              validation accuracy (val_split VAL of the training split, stratified, seeded); the
              best mean wins, a tie goes to the lower rate, a failed run scores 0
  confirming  the chosen rate on the confirmation seeds; the measure is the final test accuracy
              (a run that failed, e.g. a diverged loss, counts at chance and is named)
  statistics  each norm against BN in the same model and batch size, paired by confirmation seed:
              the mean difference with its 95% paired t interval, p and Holm's p over every
              comparison of the leaderboard (analysis/paired.py), the share of seeds the norm won
  speed       training images/s of each arm at its chosen rate, measured after the runs, arm
              beside arm in one process on one thread (norm_speed.py), with the load average;
              not the runs' own examples/s (trained hours apart, several at once, some
              seed-batched)

Runs live in OUT/runs/<quick|full>/{tune,confirm}/MODEL/bB/...; a finished run is never trained
again, so rerunning the command resumes (OUT/runs/<quick|full>/setting.json keeps a resumed board
from mixing in runs of another setting), and `--jobs N` trains N runs at a time.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..analysis import leaderboard_page as page
from ..analysis import paired, render
from ..analysis.results import is_finished
from ..config import make_config
from ..errors import ConfigError, NormlabError
from ..fileio import atomic_write_json
from ..models import create_model
from ..models.from_config import MODEL_OPTIONS
from ..nn.factory import GHOST_BATCH
from ..train.resolve import resolve
from . import norm_speed
from .claims.runner import load_text, trained_text
from .sweep import SweepOutcome, run_pending

if TYPE_CHECKING:
    from .sweep import SweepOutcome

NORMS = ("bn", "gn", "ln", "ln-chw", "in", "in-affine", "none",
         "rms", "ln2d", "frn", "evob0", "evos0", "brn", "gbn", "lrn", "ws", "gn+ws", "wn")
TUTORIALS = ("bn", "gn", "ln", "ln-chw", "in", "in-affine", "none")
# Norm kinds of the factory that are not on the board, and why.
LEFT_OUT = {"noisy-bn": "an experiment's layer (batch norm with noise added in training, for the noisy-bn claim), "
                        "not a method anyone would train with"}
BASELINE = "bn"
BATCHES = (2, 8, 32, 128)
VAL = 0.2
CHANCE = 0.1
# The CIFAR-style ResNet and an MLP-free conv net, on the 8x8 digits that ship with scikit-learn:
# small enough that every norm, batch size and tuning run fits in about an hour on two cores.
MODELS = {"digitnet": {"dataset": "digits", "model": "digitnet"},
          "resnet20": {"dataset": "digits", "model": "resnet20"}}
SHAPES = {"digits": (1, 8, 8)}


@dataclass(frozen=True)
class Setting:
    lrs: tuple
    tune_seeds: tuple
    confirm_seeds: tuple
    epochs: dict                         # model -> epochs
    models: tuple = tuple(MODELS)
    norms: tuple = NORMS
    batches: tuple = BATCHES
    val: float = VAL                     # share of the training split held out for tuning

    def to_dict(self) -> dict:
        return {"lrs": list(self.lrs), "tune_seeds": list(self.tune_seeds), "confirm_seeds": list(self.confirm_seeds),
                "epochs": dict(self.epochs), "models": list(self.models), "norms": list(self.norms),
                "batches": list(self.batches), "val_split": self.val}


# --quick trains on a fifth of digits' 1,438 training images (val_split 0.8 holds out the rest for
# tuning): batch 2 is most of the cost, 575 steps an epoch on the full board's 80%.
QUICK = Setting(lrs=(1e-3, 1e-2), tune_seeds=(100,), confirm_seeds=(0, 1, 2), epochs={"digitnet": 3, "resnet20": 1},
                val=0.8)
FULL = Setting(lrs=(1e-3, 3e-3, 1e-2), tune_seeds=(100, 101), confirm_seeds=(0, 1, 2, 3, 4),
               epochs={"digitnet": 4, "resnet20": 2})


def check_setting(s: Setting) -> None:
    if set(s.tune_seeds) & set(s.confirm_seeds):
        raise ConfigError(f"leaderboard: tuning seeds {sorted(s.tune_seeds)} and confirmation seeds "
                          f"{sorted(s.confirm_seeds)} must be disjoint")
    if BASELINE not in s.norms:
        raise ConfigError(f"leaderboard: the norms must include the baseline {BASELINE!r}")
    unknown = [m for m in s.models if m not in MODELS]
    if unknown:
        raise ConfigError(f"leaderboard: unknown model {unknown[0]!r}; the board's models: {', '.join(MODELS)}")


def check_same_setting(work: Path, s: Setting) -> None:
    """The runs under `work` are resumed only by the setting that trained them (a finished run is
    never trained again, so runs of another grid or epochs would be silently mixed in); the first
    command to use `work` records its setting there."""
    record = work / "setting.json"
    mine = json.loads(json.dumps(s.to_dict()))
    if record.is_file():
        try:
            theirs = json.loads(record.read_text(encoding="utf-8"))
        except ValueError:
            theirs = None
        if theirs != mine:
            changed = sorted(k for k in mine if not isinstance(theirs, dict) or theirs.get(k) != mine[k])
            raise ConfigError(f"leaderboard: the runs in {str(work)!r} were trained with another setting "
                              f"({', '.join(changed) or 'unreadable'} differ); give another --out, or delete that "
                              f"folder to train them again")
        return
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, mine)


def slug(norm: str) -> str:
    return norm.replace(":", "-")


def base_config(model: str, norm: str, batch: int, lr: float, seed: int, s: Setting, out: Path) -> dict:
    return {**MODELS[model], "norm": norm, "batch_size": batch, "lr": lr, "seed": seed, "epochs": s.epochs[model],
            "optimizer": "adam", "schedule": "linear", "val_split": s.val, "out": str(out), "threads": 1,
            "progress": False, "curves": False}


# ---------------------------------------------------------------- which arms exist
_APPLIES: dict = {}


def applies(model: str, norm: str) -> Optional[str]:
    """None when `norm` builds in `model` and trains a step on the model's input at batch 2;
    otherwise the one-line reason (the refusal's own message)."""
    key = (model, norm)
    if key not in _APPLIES:
        _APPLIES[key] = _try(model, norm)
    return _APPLIES[key]


def _try(model: str, norm: str) -> Optional[str]:
    import torch


    try:
        cfg = resolve(make_config({**MODELS[model], "norm": norm}))
        kw = {k: getattr(cfg, k) for k in MODEL_OPTIONS if getattr(cfg, k) is not None}
        c, h, w = SHAPES[cfg.dataset]
        net = create_model(cfg.model, in_channels=c, input_size=(h, w), norm=cfg.norm, act=cfg.act,
                           dropout=cfg.dropout, norm_impl=cfg.norm_impl, bn_eps=cfg.bn_eps,
                           bn_momentum=cfg.bn_momentum, dropout_mode=cfg.dropout_mode, **kw)
        net.train()
        net(torch.randn(2, c, h, w)).sum().backward()  # what a first training step does
    except (NormlabError, ValueError, RuntimeError) as exc:
        return str(exc).strip().splitlines()[0]
    return None


def same_as_baseline(norm: str, batch: int) -> Optional[str]:
    """Arms that compute exactly what another arm computes: gbn at a batch no larger than its
    virtual batch is batch norm over the whole batch."""
    if norm.split(":")[0] == "gbn":

        v = int(norm.split(":")[1]) if ":" in norm else GHOST_BATCH
        if batch <= v:
            return f"the same computation as bn at batch {batch} (its virtual batch of {v} is the whole batch)"
    return None


@dataclass
class Arm:
    model: str
    norm: str
    batch: int
    skip: Optional[str] = None           # why this arm is not trained
    lr: float = math.nan                 # the tuned rate (NaN until tuned)
    tuning: dict = field(default_factory=dict)  # lr -> [val acc per tuning seed]

    @property
    def key(self) -> str:
        return f"{self.model}/b{self.batch}/{self.norm}"


def arms(s: Setting) -> list[Arm]:
    out = []
    for model in s.models:
        for batch in s.batches:
            for norm in s.norms:
                out.append(Arm(model, norm, batch, applies(model, norm) or same_as_baseline(norm, batch)))
    return out


# ---------------------------------------------------------------- runs
def tune_dir(work: Path, a: Arm, lr: float, seed: int) -> Path:
    return work / "tune" / a.model / f"b{a.batch}" / f"{slug(a.norm)}-lr{lr:g}-s{seed}"


def confirm_dir(work: Path, a: Arm, seed: int) -> Path:
    # the rate in the name: tuning runs trained again (a failure mended) may choose another rate,
    # and a finished run at the old one must then not stand in for it
    return work / "confirm" / a.model / f"b{a.batch}" / f"{slug(a.norm)}-lr{a.lr:g}-s{seed}"


def _pending(runs: list, log: Callable, jobs: int) -> "SweepOutcome":

    outcome = SweepOutcome()
    todo = []
    for name, cfg in runs:
        if is_finished(Path(cfg["out"])):
            outcome.skipped.append(name)
        else:
            Path(cfg["out"]).parent.mkdir(parents=True, exist_ok=True)
            todo.append((name, cfg))
    if runs:
        log(f"normlab leaderboard: {len(todo)} runs to train, {len(outcome.skipped)} already finished")
    run_pending(todo, jobs, outcome, log)
    return outcome


def _metrics(run: Path) -> list[dict]:
    p = Path(run) / "metrics.csv"
    if not p.is_file():
        return []
    with open(p, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _failed(run: Path) -> str:
    p = Path(run) / "failed.json"
    if not p.is_file():
        return ""
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("error", "failed")
    except ValueError:
        return "failed"


def val_acc(run: Path) -> float:
    rows = _metrics(run)
    if _failed(run) or not rows or "val_acc" not in rows[-1]:
        return 0.0
    v = float(rows[-1]["val_acc"])
    return v if math.isfinite(v) else 0.0


def test_acc(run: Path) -> float:
    if _failed(run):
        return CHANCE
    p = Path(run) / "summary.json"
    return float(json.loads(p.read_text(encoding="utf-8"))["final_test_acc"]) if p.is_file() else math.nan


def choose_lr(tuning: dict) -> float:
    """The rate of the best mean validation accuracy; a tie goes to the lower rate."""
    return max(sorted(tuning), key=lambda lr: (sum(tuning[lr]) / len(tuning[lr]), -lr))


# ---------------------------------------------------------------- the board
def compare_to_baseline(board: list[Arm], results: dict, s: Setting) -> list[dict]:
    """One row per trained arm with its numbers; each non-baseline arm compared with BN in the same
    model and batch, paired by confirmation seed, all comparisons one Holm family."""
    rows: list[dict] = []
    comps: list = []
    where: list[int] = []
    base = {(a.model, a.batch): results.get(a.key) for a in board if a.norm == BASELINE and not a.skip}
    for a in board:
        row = {"model": a.model, "norm": a.norm, "batch": a.batch, "status": "not applicable" if a.skip else "trained",
               "why": a.skip or "", "lr": None if a.skip else a.lr}
        if not a.skip:
            r = results[a.key]
            acc = r["test_acc"]
            row.update(n=len(acc), mean_acc=100 * _mean(acc), sd_acc=100 * _sd(acc), failed=r["failed"],
                       images_per_s=_mean([x for x in r["images_per_s"] if math.isfinite(x)]) if any(
                           math.isfinite(x) for x in r["images_per_s"]) else math.nan,
                       per_seed=[100 * x for x in acc])
            b = base.get((a.model, a.batch))
            if a.norm != BASELINE and b is not None:
                c = paired.compare([100 * x for x in b["test_acc"]], [100 * x for x in acc], better=+1)
                comps.append(c)
                where.append(len(rows))
        rows.append(row)
    for i, c in zip(where, paired.decide(comps)):
        rows[i].update(diff=c.mean, low=c.low, high=c.high, p=c.p, p_holm=c.p_holm, verdict=c.verdict,
                       share_won=c.prob_better, seeds_needed=c.seeds_needed, family=c.family)
    return rows


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else math.nan


def _sd(xs) -> float:
    xs = list(xs)
    if len(xs) < 2:
        return math.nan
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def run_leaderboard(out, quick: bool = False, jobs: int = 1, setting: Optional[Setting] = None,
                    log: Callable = print, speed: Callable = norm_speed.measure) -> dict:
    """Tune, confirm, time, compare and write the report into `out` (see the module docstring);
    `speed` measures the arms' training images/s (norm_speed.measure)."""

    s = setting or (QUICK if quick else FULL)
    check_setting(s)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "runs" / ("quick" if quick else "full")
    check_same_setting(work, s)
    t0, load0 = time.perf_counter(), os.getloadavg()
    board = arms(s)
    live = [a for a in board if not a.skip]
    tune = [(f"tune/{a.key}/lr{lr:g}-s{seed}", base_config(a.model, a.norm, a.batch, lr, seed, s,
                                                           tune_dir(work, a, lr, seed)))
            for a in live for lr in s.lrs for seed in s.tune_seeds]
    o1 = _pending(tune, log, jobs)
    if o1.interrupted or _unfinished(tune, "tuning", log):
        return _stopped(log)
    for a in live:
        a.tuning = {lr: [val_acc(tune_dir(work, a, lr, seed)) for seed in s.tune_seeds] for lr in s.lrs}
        a.lr = choose_lr(a.tuning)
    confirm = [(f"confirm/{a.key}-s{seed}", base_config(a.model, a.norm, a.batch, a.lr, seed, s,
                                                         confirm_dir(work, a, seed)))
               for a in live for seed in s.confirm_seeds]
    o2 = _pending(confirm, log, jobs)
    if o2.interrupted or _unfinished(confirm, "confirmation", log):
        return _stopped(log)
    log(f"normlab leaderboard: timing {len(live)} arms side by side, one thread")
    speeds = speed({a.key: base_config(a.model, a.norm, a.batch, a.lr, s.confirm_seeds[0], s,
                                       work / "speed" / a.key) for a in live}, log=log)
    results = {}
    for a in live:
        dirs = [confirm_dir(work, a, seed) for seed in s.confirm_seeds]
        results[a.key] = {"test_acc": [test_acc(d) for d in dirs], "images_per_s": [speeds.images_per_s[a.key]],
                          "failed": [f"seed {seed}: {_failed(d)}" for seed, d in zip(s.confirm_seeds, dirs)
                                     if _failed(d)]}
    rows = compare_to_baseline(board, results, s)
    for row, a in zip(rows, board):
        row["tuning"] = {f"{lr:g}": [100 * v for v in a.tuning.get(lr, [])] for lr in s.lrs} if not a.skip else {}
    ran = len(o1.ran) + len(o2.ran)
    doc: dict = {"quick": quick, "setting": s.to_dict(), "rows": rows, "left_out": dict(LEFT_OUT),
                 "models": {m: MODELS[m] for m in s.models}, "val_split": s.val, "baseline": BASELINE,
                 "trained_now": ran, "resumed": len(o1.skipped) + len(o2.skipped),
                 "failed": o1.failed + o2.failed, "total_seconds": time.perf_counter() - t0,
                 "speed": {"rounds": speeds.rounds, "load": list(speeds.load), "min_steps": norm_speed.MIN_STEPS,
                           "min_seconds": norm_speed.MIN_SECONDS},
                 "train_seconds_total": sum(_seconds(Path(c["out"])) for _, c in tune + confirm)}
    doc["provenance_info"] = render.provenance_info()
    doc["provenance"] = render.provenance(f"{trained_text_of(work, trained_text)} "
                                          f"{load_text(load0, os.getloadavg(), ran)}", doc["provenance_info"])
    page.write(out, doc)
    log(f"normlab leaderboard: {sum(r['status'] == 'trained' for r in rows)} arms trained, "
        f"{sum(r['status'] != 'trained' for r in rows)} not applicable, in {doc['total_seconds']:.0f} s -> "
        f"{out}/leaderboard.md, leaderboard.html, leaderboard.csv")
    return doc


def _unfinished(runs: list, phase: str, log: Callable) -> bool:
    """Whether some of a phase's runs did not finish (the machine stopped them, or another
    process holds them): the next phase must not start from a part of this one."""
    left = [name for name, cfg in runs if not is_finished(Path(cfg["out"]))]
    if left:
        log(f"normlab leaderboard: {len(left)} {phase} runs did not finish ({', '.join(left[:3])}"
            f"{', ...' if len(left) > 3 else ''}); the board needs all of them")
    return bool(left)


def _stopped(log: Callable) -> dict:
    log("normlab leaderboard: interrupted; the finished runs are kept, and the same command resumes")
    return {"interrupted": True}


def trained_text_of(work: Path, trained_text: Callable) -> str:
    """trained_text reads WORK/*/runs/*/summary.json (a claims layout); here runs sit deeper."""
    import glob

    class _Flat:  # a stand-in path whose glob finds every summary under work
        def glob(self, _pattern):
            return [Path(p) for p in glob.glob(str(work / "**" / "summary.json"), recursive=True)]

    return trained_text(_Flat())


def _seconds(run: Path) -> float:
    p = run / "summary.json"
    if not p.is_file():
        return 0.0
    try:
        return float(json.loads(p.read_text(encoding="utf-8")).get("wall_seconds") or 0.0)
    except ValueError:
        return 0.0
