"""The tutorials' claims, each as a small measured experiment with a verdict.

A claim function takes `quick` (fewer seeds/epochs) and a scratch folder for run directories and
returns a dict: the measured numbers, the effect (arm - baseline, paired by seed) with its paired
t interval (analysis/paired.py) where two arms are compared, and a verdict:

  holds              the interval excludes 0 on the side the claim predicts (or, for an exact
                     claim, the counted/compared numbers say so)
  does not hold here the interval excludes 0 on the other side (or the exact check fails)
  inconclusive       the interval contains 0

"here" matters: these are tiny models, few epochs and few seeds on small datasets, so a verdict
is about this setting, not a refutation of the paper.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as tnn

from ..fileio import atomic_write_text
from . import paired

HOLDS = "holds"
FAILS = "does not hold here"
INCONCLUSIVE = "inconclusive"


def verdict_from_ci(lo: float, hi: float, direction: int) -> str:
    """direction +1: the claim predicts effect > 0; -1: effect < 0."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if lo > 0:
        return HOLDS if direction > 0 else FAILS
    if hi < 0:
        return HOLDS if direction < 0 else FAILS
    return INCONCLUSIVE


def compare_arms(baseline: list, arm: list, direction: int) -> dict:
    """Paired effect arm - baseline with its paired t interval (analysis/paired.py) and the verdict."""
    c = paired.compare(baseline, arm, better=direction)
    d, lo, hi = c.mean, c.low, c.high
    return {"baseline": list(map(float, baseline)), "arm": list(map(float, arm)),
            "effect": d, "ci": [lo, hi], "direction": direction, "verdict": verdict_from_ci(lo, hi, direction)}


# ---------------------------------------------------------------- exact claims (no training)
class NaiveInception(tnn.Module):
    """The Inception module without the 1x1 reductions in front of the 3x3 and 5x5 convs
    (Szegedy et al. 2014, fig. 2a); the pool branch keeps its 1x1 projection so that the two
    modules differ only in the reductions and have the same output channels."""

    def __init__(self, cin, c1, c3, c5, pool_proj, kernel5=5):
        super().__init__()
        self.branch1 = tnn.Conv2d(cin, c1, 1, bias=False)
        self.branch2 = tnn.Conv2d(cin, c3, 3, padding=1, bias=False)
        self.branch3 = tnn.Conv2d(cin, c5, kernel5, padding=kernel5 // 2, bias=False)
        self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, 1, 1), tnn.Conv2d(cin, pool_proj, 1, bias=False))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


# GoogLeNet's inception (3a) on its 28x28x192 input, with the paper's 5x5 kernel.
INCEPTION_3A = {"cin": 192, "c1": 64, "c3r": 96, "c3": 128, "c5r": 16, "c5": 32, "pool_proj": 32, "hw": 28}


def inception_mult_adds(cin, c1, c3r, c3, c5r, c5, pool_proj, hw) -> dict:
    """Mult-adds of one image through the Inception module with and without 1x1 reductions,
    counted by analysis.layer_table's hooks on the real modules."""
    from ..nn.blocks import Inception
    from .layer_table import summarize

    from ..nn.factory import get_norm_layer

    with_red = Inception(cin, c1, c3r, c3, c5r, c5, pool_proj, kernel5=5, norm_layer=get_norm_layer("none"))
    naive = NaiveInception(cin, c1, c3, c5, pool_proj, kernel5=5)
    a = summarize(with_red.eval(), (cin, hw, hw)).mult_adds
    b = summarize(naive.eval(), (cin, hw, hw)).mult_adds
    return {"with_1x1": a, "without_1x1": b, "ratio": a / b}


def claim_inception(quick: bool, work: Path) -> dict:
    cfg = dict(INCEPTION_3A)
    m = inception_mult_adds(**cfg)
    return {"setting": f"GoogLeNet inception (3a), input {cfg['hw']}x{cfg['hw']}x{cfg['cin']}, 5x5 kernel, "
                       "one image; the module without reductions keeps the pool projection",
            "numbers": m, "effect": m["with_1x1"] - m["without_1x1"], "ci": None,
            "verdict": HOLDS if m["with_1x1"] < m["without_1x1"] else FAILS,
            "summary": f"{m['with_1x1']:,} mult-adds with 1x1 reductions vs {m['without_1x1']:,} without "
                       f"({m['ratio']:.3f}x)"}


def norm_train_eval(kind: str, channels: int = 8, seed: int = 0) -> dict:
    """Running-statistics buffers of a fresh norm layer and the largest |train - eval| output
    difference on one batch (the train-mode pass comes first, as in training)."""
    from ..nn.factory import make_norm

    torch.manual_seed(seed)
    layer = make_norm(kind, channels, 2)
    x = torch.randn(4, channels, 5, 5) * 2.0 + 3.0  # far from the initial running mean 0 / var 1
    running = [n for n, _ in layer.named_buffers() if n.startswith("running_")]
    with torch.no_grad():
        y_train = layer.train()(x)
        y_eval = layer.eval()(x)
    return {"running_buffers": running, "max_abs_diff": float((y_train - y_eval).abs().max())}


def claim_norm_modes(quick: bool, work: Path) -> dict:
    res = {k: norm_train_eval(k) for k in ("bn", "ln", "in", "gn")}
    bn_differs = bool(res["bn"]["running_buffers"]) and res["bn"]["max_abs_diff"] > 1e-3
    others_same = all(not res[k]["running_buffers"] and res[k]["max_abs_diff"] == 0.0 for k in ("ln", "in", "gn"))
    return {"setting": "fresh layers on 8 channels, one 4x8x5x5 batch with mean 3 and std 2",
            "numbers": res, "effect": None, "ci": None, "verdict": HOLDS if bn_differs and others_same else FAILS,
            "summary": "; ".join(f"{k}: buffers {v['running_buffers'] or 'none'}, max |train-eval| "
                                 f"{v['max_abs_diff']:.3g}" for k, v in res.items())}


# ---------------------------------------------------------------- trained claims
def _silent(*_a, **_k):
    pass


def _train(work: Path, **cfg):
    from ..train.trainer import train

    out = tempfile.mkdtemp(prefix="run-", dir=work)
    base = {"dataset": "digits", "model": "mlp", "progress": False, "out": out, "threads": 1}
    return train({**base, **cfg}, log=_silent)


def _linear_weights(model) -> list:
    return [m.weight.detach() for m in model.modules() if isinstance(m, tnn.Linear)]


# Runs of one claims run, by config: claims that share an arm (the ResNet-56 of the depth and the
# pre-activation claims) train it once. Keyed by the scratch folder too, so two claims runs never
# share results; run_claims empties it when it is done.
_RUNS: dict = {}


def _run(work: Path, **cfg):
    key = (str(work), json.dumps(cfg, sort_keys=True))
    if key not in _RUNS:
        _RUNS[key] = _train(work, **cfg)
    return _RUNS[key]


def _seeds(quick: bool) -> int:
    return 3 if quick else 5


def _per_seed(work: Path, seeds: int, cfg: dict, measure: Callable) -> list:
    """`measure` of one run per seed 0..seeds-1: every arm of a claim uses the same seeds, so
    the arms are paired (same initial-weight draw for the same architecture, same data order)."""
    return [measure(_run(work, seed=s, **cfg)) for s in range(seeds)]


def _mean(xs) -> float:
    return sum(xs) / len(xs)


def _gap(r) -> float:
    return r.summary["final_train_acc"] - r.summary["final_test_acc"]


def _test_acc(r) -> float:
    return r.summary["final_test_acc"]


def _train_acc(r) -> float:
    return r.summary["final_train_acc"]


def _train_loss(r) -> float:
    return r.summary["final_train_loss"]


def _side_effects(work: Path, seeds: int, base: dict, arm: dict, also: dict) -> dict:
    """Secondary measures of the same runs (cached, so no extra training), reported with their
    paired interval but not part of the verdict."""
    out = {}
    for label, fn in also.items():
        c = compare_arms(_per_seed(work, seeds, base, fn), _per_seed(work, seeds, arm, fn), +1)
        out[label] = {"baseline_mean": _mean(c["baseline"]), "arm_mean": _mean(c["arm"]),
                      "effect": c["effect"], "ci": c["ci"]}
    return out


def _also_text(also: dict) -> str:
    return "".join(f"; {k}: {v['baseline_mean']:.4f} -> {v['arm_mean']:.4f}, effect {v['effect']:+.4f} "
                   f"[{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]" for k, v in also.items())


def _trained_claim(setting: str, base: dict, arm: dict, measure: Callable, direction: int,
                   what: str, quick: bool, work: Path, also: Optional[dict] = None) -> dict:
    seeds = _seeds(quick)
    a = _per_seed(work, seeds, base, measure)
    b = _per_seed(work, seeds, arm, measure)
    c = compare_arms(a, b, direction)
    c["setting"] = f"{setting}; {seeds} paired seeds"
    c["numbers"] = {"baseline_mean": _mean(a), "arm_mean": _mean(b)}
    extra = _side_effects(work, seeds, base, arm, also or {})
    if extra:
        c["numbers"]["also"] = extra
    c["summary"] = (f"{what}: {c['numbers']['baseline_mean']:.4f} -> {c['numbers']['arm_mean']:.4f}, "
                    f"effect {c['effect']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]" + _also_text(extra))
    return c


def difference_of_drops(arm_hi: list, arm_lo: list, base_hi: list, base_lo: list) -> list:
    """Per seed: (arm_hi - arm_lo) - (base_hi - base_lo), how much more the arm loses between its
    two conditions than the baseline loses between the same two."""
    n = {len(arm_hi), len(arm_lo), len(base_hi), len(base_lo)}
    if len(n) != 1:
        raise ValueError(f"need four samples paired by seed (equally long), got lengths "
                         f"{[len(arm_hi), len(arm_lo), len(base_hi), len(base_lo)]}")
    return [(ah - al) - (bh - bl) for ah, al, bh, bl in zip(arm_hi, arm_lo, base_hi, base_lo)]


def _interaction_claim(setting: str, cells: dict, arm: tuple, baseline: tuple, measure: Callable,
                       direction: int, what: str, quick: bool, work: Path) -> dict:
    """A claim about a difference of differences: the arm's drop between two conditions
    (arm[0] - arm[1], cells by name) against the baseline's drop between the same conditions
    (baseline[0] - baseline[1]), all four cells on the same seeds. The interval is the paired
    t interval of the per-seed differences of the two drops."""
    seeds = _seeds(quick)
    vals = {name: _per_seed(work, seeds, cfg, measure) for name, cfg in cells.items()}
    arm_drop = [h - lo for h, lo in zip(vals[arm[0]], vals[arm[1]])]
    base_drop = [h - lo for h, lo in zip(vals[baseline[0]], vals[baseline[1]])]
    c = compare_arms(base_drop, arm_drop, direction)
    means = {name: _mean(v) for name, v in vals.items()}
    c["setting"] = (f"{setting}; effect = ({arm[0]} - {arm[1]}) - ({baseline[0]} - {baseline[1]}) per seed; "
                    f"{seeds} paired seeds")
    c["numbers"] = {"cells": means, "per_seed": vals, "arm_drop_mean": _mean(arm_drop),
                    "baseline_drop_mean": _mean(base_drop),
                    "effect_per_seed": difference_of_drops(vals[arm[0]], vals[arm[1]],
                                                           vals[baseline[0]], vals[baseline[1]])}
    c["summary"] = (f"{what}: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()) +
                    f"; drop {arm[0]}->{arm[1]} {_mean(arm_drop):+.4f} vs {baseline[0]}->{baseline[1]} "
                    f"{_mean(base_drop):+.4f}, effect {c['effect']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]")
    return c


def claim_bn_deep_mlp(quick: bool, work: Path) -> dict:
    common = {"depth": 20, "width": 64, "act": "sigmoid", "epochs": 2 if quick else 5, "lr": 0.01}
    return _trained_claim("mlp depth 20 width 64 sigmoid, torch default init, adam lr 0.01, digits, "
                          f"{common['epochs']} epochs; arm = BN, baseline = no norm",
                          {**common, "norm": "none"}, {**common, "norm": "bn"},
                          _test_acc, +1, "final test accuracy", quick, work)


def _zero_fraction(r) -> float:
    ws = _linear_weights(r.model)
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


L1_STRENGTH = 0.3


def claim_l1_sparse(quick: bool, work: Path) -> dict:
    # Adam at the mlp's default lr 0.01, so the soft threshold per step is lr * l1 = 0.003. The
    # tutorials' 1e-2 (a threshold of 1e-4) leaves almost no weight at exactly 0 (0.3% after 5
    # epochs): Adam's steps of ~lr move weights across it. At 0.3 a third of the weights end at 0
    # for about two points of test accuracy; at 1.0 every weight does and the net is at chance.
    common = {"depth": 2, "width": 64, "epochs": 2 if quick else 5, "norm": "none"}
    return _trained_claim(f"mlp depth 2 width 64, adam lr 0.01, digits, {common['epochs']} epochs; arm = l1 "
                          f"{L1_STRENGTH} (proximal soft-threshold lr*l1 after each step), baseline = no l1",
                          common, {**common, "l1": L1_STRENGTH}, _zero_fraction, +1,
                          "fraction of exactly-zero Linear weights", quick, work,
                          also={"final test accuracy": _test_acc})


def _weight_norm(r) -> float:
    return math.sqrt(sum(float((w.double() ** 2).sum()) for w in _linear_weights(r.model)))


L2_COMMON = {"depth": 2, "width": 64, "norm": "none", "optimizer": "sgd", "lr": 0.1}


def claim_l2_norm(quick: bool, work: Path) -> dict:
    common = {**L2_COMMON, "epochs": 2 if quick else 5}
    return _trained_claim(f"mlp depth 2 width 64, sgd lr 0.1, digits, {common['epochs']} epochs; "
                          "arm = weight_decay 0.01, baseline = none",
                          common, {**common, "weight_decay": 0.01}, _weight_norm, -1,
                          "L2 norm of the Linear weights", quick, work)


def claim_l2_gap(quick: bool, work: Path) -> dict:
    common = {**L2_COMMON, "epochs": 2 if quick else 5}
    return _trained_claim(f"the weight-norm claim's runs (trained once, shared); gap = final train acc - test acc",
                          common, {**common, "weight_decay": 0.01}, _gap, -1,
                          "train-test accuracy gap", quick, work)


def claim_dropout_gap(quick: bool, work: Path) -> dict:
    common = {"depth": 2, "width": 256, "norm": "none", "epochs": 3 if quick else 10}
    return _trained_claim(f"mlp depth 2 width 256, digits, {common['epochs']} epochs; arm = dropout 0.5, "
                          "baseline = 0; the train accuracy is the running one of the last epoch, measured "
                          "with dropout active, which itself lowers the arm's gap",
                          common, {**common, "dropout": 0.5}, _gap, -1, "train-test accuracy gap", quick, work)


# LeNet as in the tutorial's BN section (max pooling, sigmoid); `norm` switches BN on and off
# in the same architecture, so the arms differ only in the normalization layers.
LENET_EARLY = {"dataset": "mnist5k", "model": "lenet-bn", "epochs": 1, "optimizer": "adam", "lr": 1e-3,
               "batch_size": 64, "schedule": "constant"}


def claim_bn_lenet_early(quick: bool, work: Path) -> dict:
    return _trained_claim("lenet-bn architecture (sigmoid, max pooling) on mnist5k, adam lr 0.001 constant, "
                          "batch 64, one epoch (63 steps); arm = BN, baseline = norm none",
                          {**LENET_EARLY, "norm": "none"}, {**LENET_EARLY, "norm": "bn"}, _test_acc, +1,
                          "test accuracy after the first epoch", quick, work,
                          also={"train loss over the first epoch": _train_loss})


def claim_gn_batch_size(quick: bool, work: Path) -> dict:
    # One Adam lr for every batch size, and equal optimizer steps: batch 32 runs 16x the epochs
    # of batch 2. At equal epochs GN at batch 32 (GN trains slower than BN in this net, and
    # diverges at a larger lr) was not converged, which made its "drop" to batch 2 negative and
    # flattered GN; with equal steps both norms converge at batch 32.
    epochs = 1 if quick else 2
    common = {"dataset": "mnist5k", "model": "lenet-bn", "optimizer": "adam", "lr": 1e-3}
    cells = {f"{n}@{b}": {**common, "norm": n, "batch_size": b, "epochs": epochs * (16 if b == 32 else 1)}
             for n in ("bn", "gn") for b in (32, 2)}
    return _interaction_claim(f"lenet-bn (sigmoid) on mnist5k, adam lr 0.001 with linear decay, equal steps: "
                              f"{epochs} epoch(s) at batch 2, {16 * epochs} at batch 32; BN vs GN (default groups)",
                              cells, ("bn@32", "bn@2"), ("gn@32", "gn@2"), _test_acc, +1,
                              "final test accuracy", quick, work)


# experiments/plain-vs-residual.yaml and preact.yaml: CIFAR-style nets on the 8x8 digits.
RESNET_DIGITS = {"dataset": "digits", "optimizer": "momentum", "lr": 0.05, "batch_size": 64,
                 "weight_decay": 1e-4, "schedule": "cosine"}


def _resnet_common(quick: bool) -> dict:
    return {**RESNET_DIGITS, "epochs": 3 if quick else 15}


def _resnet_setting(common: dict) -> str:
    return (f"CIFAR-style nets (16/32/64 channels) on digits, momentum 0.9 lr 0.05, cosine, batch 64, "
            f"weight decay 1e-4, {common['epochs']} epochs")


def claim_plain_vs_residual(quick: bool, work: Path) -> dict:
    common = _resnet_common(quick)
    cells = {m: {**common, "model": m} for m in ("plain20", "plain56", "resnet20", "resnet56")}
    return _interaction_claim(f"{_resnet_setting(common)}; measure = training accuracy of the last epoch "
                              "(running, in train mode)", cells, ("plain20", "plain56"),
                              ("resnet20", "resnet56"), _train_acc, +1, "final train accuracy", quick, work)


def claim_preact(quick: bool, work: Path) -> dict:
    common = _resnet_common(quick)
    return _trained_claim(f"{_resnet_setting(common)}; arm = preact-resnet56 (full pre-activation), baseline = "
                          "resnet56 (the same runs as plain-vs-residual-depth's when both run)",
                          {**common, "model": "resnet56"}, {**common, "model": "preact-resnet56"}, _test_acc, +1,
                          "final test accuracy", quick, work, also={"final train loss": _train_loss})


def _grad_ratio(act: str, seed: int, depth: int) -> float:
    """log10 of first-layer / last-hidden-layer weight-gradient norm of a fresh deep MLP."""
    from .activations import model_stats

    rep = model_stats("mlp", act=act, norm="none", depth=depth, width=64, data="digits", batch=128, seed=seed)
    g = [l.grad_norm for l in rep.layers]
    return math.log10(g[0] / g[-2])


def claim_grad_flow(quick: bool, work: Path) -> dict:
    depth, seeds = 10, (3 if quick else 10)
    sig = [_grad_ratio("sigmoid", s, depth) for s in range(seeds)]
    rel = [_grad_ratio("relu", s, depth) for s in range(seeds)]
    c = compare_arms(sig, rel, +1)
    c["setting"] = (f"fresh mlp depth {depth} width 64, torch default init, one batch of 128 digits; "
                    f"log10(|grad W_first| / |grad W_last hidden|); {seeds} seeds, baseline sigmoid, arm relu")
    c["numbers"] = {"sigmoid_mean": sum(sig) / seeds, "relu_mean": sum(rel) / seeds}
    c["summary"] = (f"log10 gradient ratio sigmoid {c['numbers']['sigmoid_mean']:.2f} vs relu "
                    f"{c['numbers']['relu_mean']:.2f}, effect {c['effect']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]")
    return c


CLAIMS: dict[str, tuple[str, Callable]] = {
    "inception-1x1": ("1x1 convolutions cut the Inception module's multiply-adds", claim_inception),
    "norm-train-eval": ("LN/IN/GN keep no running statistics and give the same output in train and "
                        "eval mode; BN does not", claim_norm_modes),
    "bn-deep-mlp": ("BN lets a deep sigmoid MLP train where plain default init fails", claim_bn_deep_mlp),
    "l1-sparse": ("L1 regularization gives sparse (exactly zero) weights", claim_l1_sparse),
    "l2-weight-norm": ("L2 / weight decay shrinks the weight norm", claim_l2_norm),
    "l2-gap": ("L2 / weight decay narrows the train-test gap", claim_l2_gap),
    "dropout-gap": ("dropout narrows the train-test gap", claim_dropout_gap),
    "grad-flow": ("ReLU keeps the first layer's gradient larger than sigmoid does in a deep MLP",
                  claim_grad_flow),
    "bn-lenet-early": ("BN speeds the early convergence of LeNet", claim_bn_lenet_early),
    "gn-batch-size": ("GN is stable across batch sizes where BN degrades at batch 2", claim_gn_batch_size),
    "plain-vs-residual-depth": ("deeper plain nets train worse than shallower ones; residual nets do not",
                                claim_plain_vs_residual),
    "preact-vs-original": ("pre-activation residual blocks give a deep ResNet higher accuracy than the "
                           "original blocks (He et al. 2016)", claim_preact),
}


def select(only: Optional[str]) -> list[str]:
    from ..errors import unknown_name

    if not only:
        return list(CLAIMS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    for n in names:
        if n not in CLAIMS:
            raise unknown_name("claim", n, list(CLAIMS))
    return names


def run_claims(out, quick: bool = False, only: Optional[str] = None, log=print) -> dict:
    names = select(only)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    t_all = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="claims-") as tmp:
            for name in names:
                text, fn = CLAIMS[name]
                t0 = time.perf_counter()
                r = fn(quick, Path(tmp))
                r.update(name=name, claim=text, seconds=time.perf_counter() - t0)
                results.append(r)
                log(f"{name}: {r['verdict']} ({r['summary']}) [{r['seconds']:.1f} s]")
    finally:
        _RUNS.clear()
    doc = {"quick": quick, "claims": results, "total_seconds": time.perf_counter() - t_all}
    atomic_write_text(out / "claims.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out / "claims.md", render_markdown(doc))
    atomic_write_text(out / "claims.html", render_html(doc))
    return doc


def _title(doc: dict) -> str:
    return f"The tutorials' claims, measured ({'--quick' if doc['quick'] else 'full'} run)"


INTRO = ("Verdicts are about this small setting (tiny models, few epochs and seeds); effect = arm - "
         "baseline (for the two-factor claims, the arm's drop minus the baseline's drop) paired by seed, "
         "with a 95% paired t interval over the seeds.")


def _tally(doc: dict) -> str:
    counts = {v: sum(r["verdict"] == v for r in doc["claims"]) for v in (HOLDS, FAILS, INCONCLUSIVE)}
    text = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    if doc.get("total_seconds") is not None:
        text += f"; {doc['total_seconds']:.0f} s in all, one CPU thread per run"
    return text + "."


def render_markdown(doc: dict) -> str:
    lines = [f"# {_title(doc)}", "", INTRO, "", _tally(doc), "",
             "| claim | verdict | measured | seconds |", "|---|---|---|---|"]
    for r in doc["claims"]:
        cells = (r["claim"], f"**{r['verdict']}**", r["summary"], f"{r['seconds']:.1f}")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    for r in doc["claims"]:
        lines += [f"## {r['name']}: {r['claim']}", "", f"- verdict: **{r['verdict']}**",
                  f"- setting: {r['setting']}", f"- measured: {r['summary']}"]
        cells = (r.get("numbers") or {}).get("per_seed")
        if cells:
            lines.append("- per seed: " + ", ".join(f"{k} {[round(v, 4) for v in vs]}" for k, vs in cells.items()))
        elif r.get("baseline") is not None:
            lines.append(f"- per seed: baseline {[round(v, 4) for v in r['baseline']]}, "
                         f"arm {[round(v, 4) for v in r['arm']]}")
        lines.append("")
    return "\n".join(lines)


VERDICT_CLASS = {HOLDS: "holds", FAILS: "fails", INCONCLUSIVE: "inconclusive"}


def effect_text(r: dict) -> str:
    e = r.get("effect")
    if e is None:
        return "–"
    if r.get("ci") is None:
        return f"{e:+,}" if isinstance(e, int) else f"{e:+.4g}"
    return f"{e:+.4f} [{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]"


def render_html(doc: dict) -> str:
    """One self-contained page: the claims in one table, the verdict cell coloured by verdict."""
    from html import escape as e

    from .report import _inline

    rows = []
    for r in doc["claims"]:
        cls = VERDICT_CLASS.get(r["verdict"], "inconclusive")
        rows.append(f"<tr id=\"{e(r['name'])}\"><td><code>{e(r['name'])}</code><br>{e(r['claim'])}</td>"
                    f"<td class=\"verdict {cls}\">{e(r['verdict'])}</td><td class=\"num\">{e(effect_text(r))}</td>"
                    f"<td>{e(r['summary'])}</td><td class=\"setting\">{_inline(r['setting'])}</td>"
                    f"<td class=\"num\">{r['seconds']:.1f}</td></tr>")
    style = ("body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "vertical-align:top;text-align:left}.num{text-align:right;white-space:nowrap}"
             ".setting{color:#555;font-size:90%}.verdict{font-weight:bold;white-space:nowrap}"
             ".holds{background:#d4edda;color:#155724}.fails{background:#f8d7da;color:#721c24}"
             ".inconclusive{background:#fff3cd;color:#856404}")
    head = "".join(f"<th>{h}</th>" for h in ("claim", "verdict", "effect [95% CI]", "measured", "setting",
                                                  "seconds"))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{e(_title(doc))}</title>\n<style>{style}</style>\n</head>\n<body>\n"
            f"<h1>{e(_title(doc))}</h1>\n<p>{e(INTRO)}</p>\n<p>{e(_tally(doc))}</p>\n"
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) +
            "\n</tbody>\n</table>\n</body>\n</html>\n")
