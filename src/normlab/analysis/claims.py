"""The tutorials' claims, each as a small measured experiment with a verdict.

A claim function takes `quick` (fewer seeds/epochs) and a scratch folder for run directories and
returns a dict: the measured numbers, the effect (arm - baseline, paired by seed) with its paired
bootstrap interval where two arms are compared, and a verdict:

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

from ..train.io import atomic_write_text
from .report import paired_bootstrap_ci

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
    """Paired effect arm - baseline with its bootstrap interval and the verdict."""
    d, lo, hi = paired_bootstrap_ci(baseline, arm)
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
    counted by analysis.summary's hooks on the real modules."""
    from ..nn.blocks import Inception
    from .summary import summarize

    with_red = Inception(cin, c1, c3r, c3, c5r, c5, pool_proj, kernel5=5, norm="none", act="relu")
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


def _paired(work: Path, seeds: int, base: dict, arm: dict, measure: Callable) -> tuple[list, list]:
    a, b = [], []
    for s in range(seeds):
        a.append(measure(_train(work, seed=s, **base)))
        b.append(measure(_train(work, seed=s, **arm)))
    return a, b


def _gap(r) -> float:
    return r.summary["final_train_acc"] - r.summary["final_test_acc"]


def _trained_claim(setting: str, base: dict, arm: dict, measure: Callable, direction: int,
                   what: str, quick: bool, work: Path) -> dict:
    seeds = 3 if quick else 5
    a, b = _paired(work, seeds, base, arm, measure)
    c = compare_arms(a, b, direction)
    c["setting"] = f"{setting}; {seeds} paired seeds"
    c["numbers"] = {"baseline_mean": sum(a) / len(a), "arm_mean": sum(b) / len(b)}
    c["summary"] = (f"{what}: {c['numbers']['baseline_mean']:.4f} -> {c['numbers']['arm_mean']:.4f}, "
                    f"effect {c['effect']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]")
    return c


def claim_bn_deep_mlp(quick: bool, work: Path) -> dict:
    common = {"depth": 20, "width": 64, "act": "sigmoid", "epochs": 2 if quick else 5, "lr": 0.01}
    return _trained_claim("mlp depth 20 width 64 sigmoid, torch default init, adam lr 0.01, digits, "
                          f"{common['epochs']} epochs; arm = BN, baseline = no norm",
                          {**common, "norm": "none"}, {**common, "norm": "bn"},
                          lambda r: r.summary["final_test_acc"], +1, "final test accuracy", quick, work)


def _zero_fraction(r) -> float:
    ws = _linear_weights(r.model)
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def claim_l1_sparse(quick: bool, work: Path) -> dict:
    common = {"depth": 2, "width": 64, "epochs": 2 if quick else 5, "norm": "none"}
    return _trained_claim(f"mlp depth 2 width 64, digits, {common['epochs']} epochs; arm = l1 1e-2 "
                          "(proximal soft-threshold), baseline = no l1",
                          common, {**common, "l1": 1e-2}, _zero_fraction, +1,
                          "fraction of exactly-zero Linear weights", quick, work)


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
    return _trained_claim(f"same setting as the weight-norm claim; gap = final train acc - test acc",
                          common, {**common, "weight_decay": 0.01}, _gap, -1,
                          "train-test accuracy gap", quick, work)


def claim_dropout_gap(quick: bool, work: Path) -> dict:
    common = {"depth": 2, "width": 256, "norm": "none", "epochs": 3 if quick else 10}
    return _trained_claim(f"mlp depth 2 width 256, digits, {common['epochs']} epochs; arm = dropout 0.5, "
                          "baseline = 0; the train accuracy is the running one of the last epoch, measured "
                          "with dropout active, which itself lowers the arm's gap",
                          common, {**common, "dropout": 0.5}, _gap, -1, "train-test accuracy gap", quick, work)


def _grad_ratio(act: str, seed: int, depth: int) -> float:
    """log10 of first-layer / last-hidden-layer weight-gradient norm of a fresh deep MLP."""
    from .stats import model_stats

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
    with tempfile.TemporaryDirectory(prefix="claims-") as tmp:
        for name in names:
            text, fn = CLAIMS[name]
            t0 = time.perf_counter()
            r = fn(quick, Path(tmp))
            r.update(name=name, claim=text, seconds=time.perf_counter() - t0)
            results.append(r)
            log(f"{name}: {r['verdict']} ({r['summary']}) [{r['seconds']:.1f} s]")
    doc = {"quick": quick, "claims": results}
    atomic_write_text(out / "claims.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out / "claims.md", render_markdown(doc))
    return doc


def render_markdown(doc: dict) -> str:
    lines = [f"# The tutorials' claims, measured ({'--quick' if doc['quick'] else 'full'} run)", "",
             "Verdicts are about this small setting (tiny models, few epochs and seeds); effect = arm - "
             "baseline paired by seed, with a 95% paired bootstrap interval.", "",
             "| claim | verdict | measured | seconds |", "|---|---|---|---|"]
    for r in doc["claims"]:
        lines.append(f"| {r['claim']} | **{r['verdict']}** | {r['summary']} | {r['seconds']:.1f} |")
    lines.append("")
    for r in doc["claims"]:
        lines += [f"## {r['name']}: {r['claim']}", "", f"- verdict: **{r['verdict']}**",
                  f"- setting: {r['setting']}", f"- measured: {r['summary']}"]
        if r.get("baseline") is not None:
            lines.append(f"- per seed: baseline {[round(v, 4) for v in r['baseline']]}, "
                         f"arm {[round(v, 4) for v in r['arm']]}")
        lines.append("")
    return "\n".join(lines)
