"""The normalization literature's claims (issue 31): what the papers after the tutorials say about
their layers, each measured in a small offline setting with the trained claims' statistics.

Each claim names its paper and quotes its sentence (catalog.Claim.source). These are tiny models,
few epochs and few seeds on mnist5k and digits, not the papers' ImageNet runs: where a setting here
cannot test what the paper states, the claim's setting says what it does test. Where a paper says
a layer "matches" another, that half is reported beside the verdict with its interval and not
tested: a paired t-test can show a difference, not an equality, and these claims name no
equivalence margin. The verdict rests on the directional half of the sentence.

The experiments reuse the tutorials' claims' cells where the setting is the same (lenet-b32's and
lenet-b2's BN and GN, lenet-early's no-norm and BN), so those runs are trained once.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ...analysis.claims import measures as m
from ...analysis.claims.comparisons import in_unit, interaction, several, two_arms, unit_of, value
from ...analysis.claims.verdict import compare_arms, mean
from .trained import GN, LENET_EARLY, SGD_MLP, _lenet, _lenet_setting, lenet_epochs, sgd_epochs, sgd_seeds


def sgd_like_seeds(quick: bool) -> int:
    """The second-scale MLP runs (rms-vs-ln) take as many seeds as the tutorials' SGD claims."""
    return 6 if quick else 20


# ---------------------------------------------------------------- experiments
GN_WS = f"{GN}+ws"  # GN with 2 groups on weight-standardized convolutions
GHOST = "gbn:16"
LARGE_BATCH = 512
SKEW_CLASSES = 2  # class-skewed batches: 16 examples of each of 2 classes in a batch of 32


def exp_lenet_b32_more(quick):
    """lenet-b32's setting (the tutorial's sigmoid LeNet, batch 32) with the newer norms."""
    return {"base": _lenet(quick, 32), "factors": {"norm": [GN_WS]}}


def exp_lenet_b2_more(quick):
    return {"base": _lenet(quick, 2), "factors": {"norm": [GN_WS, "brn"]}}


# FRN's TLU and EvoNorm-S0 replace "BN + ReLU" in their papers; in a pilot (seed 0, 4 epochs at
# batch 32) the tutorial's sigmoid LeNet with FRN or EvoNorm-S0 reached 47% and 53% where BN reached
# 74%, and at batch 2 neither left chance in an epoch, so these cells use ReLU (all three arms), where
# the three trained to 95-96%. The norms sit after the convolutions only (FRN and EvoNorm-S0 have no
# form for a Linear layer's (N, C) features), in every arm. One epoch at batch 2, 16 at batch 32
# (2,000 optimizer steps), in both settings, to keep the claim cheap.
FRN_NORMS = ("bn", "frn", "evos0:2")


def _relu_lenet(batch):
    return {**_lenet(True, batch), "act": "relu", "fc_norm": False}


def exp_relu_lenet(batch):
    def build(quick):
        return {"base": _relu_lenet(batch), "factors": {"norm": list(FRN_NORMS)}}
    return build


def exp_lenet_skewed(quick):
    """lenet-b32's setting with class-skewed batches (--batch-classes 2), BN and Batch Renorm, for
    16 epochs (2,000 steps) in both settings: the two arms are compared with each other only."""
    return {"base": {**_lenet(True, 32), "batch_classes": SKEW_CLASSES}, "factors": {"norm": ["bn", "brn"]}}


def exp_lenet_large(quick):
    """lenet-b32's setting (the same epochs) at batch 512: 16 times fewer optimizer steps."""
    return {"base": {**_lenet(quick, 32), "batch_size": LARGE_BATCH}, "factors": {"norm": ["bn", GHOST]}}


def exp_lenet_early_more(quick):
    return {"base": dict(LENET_EARLY), "factors": {"norm": ["noisy-bn"]}}


# Weight normalization's claim is about stochastic gradient descent, so it is tested with the
# tutorials' plain-SGD MLP (trained.SGD_MLP, relu): its no-norm arm is relu-lr's lr 0.1 cell, the
# same config, trained once. (In bn-lenet-early's Adam setting, in a pilot, neither the plain nor the
# weight-normalized sigmoid LeNet left chance in its one epoch.)
def exp_wn_sgd(quick):
    return {"base": {**SGD_MLP, "act": "relu", "epochs": sgd_epochs(quick)}, "factors": {"norm": ["wn"]},
            "seeds": sgd_seeds(quick)}


# RMSNorm against LayerNorm where both are torch's own layers over the same features: an MLP's
# hidden layers (torch.nn.LayerNorm and torch.nn.RMSNorm over the 256 features of each).
RMS_MLP = {"dataset": "digits", "model": "mlp", "depth": 4, "width": 256, "act": "relu", "optimizer": "adam",
           "lr": 1e-3, "batch_size": 64, "schedule": "linear"}


def rms_epochs(quick) -> int:
    return 5 if quick else 10


def exp_rms_ln(quick):
    return {"base": {**RMS_MLP, "epochs": rms_epochs(quick)}, "factors": {"norm": ["ln", "rms"]},
            "seeds": sgd_like_seeds(quick)}


# Experiments whose seeds are never seed-batched, and why: a speed claim measures each arm's own
# training speed, which a seed batch changes (and changes differently for a layer that stacks and
# one that does not), so its arms would differ in more than the claim names.
ONE_BY_ONE = {"rms-ln": "a speed claim: each arm's own training speed is the measure"}

EXPERIMENTS = {"lenet-b32-more": exp_lenet_b32_more, "lenet-b2-more": exp_lenet_b2_more,
               "relu-lenet-b32": exp_relu_lenet(32), "relu-lenet-b2": exp_relu_lenet(2),
               "lenet-skewed": exp_lenet_skewed, "lenet-large": exp_lenet_large,
               "lenet-early-more": exp_lenet_early_more, "rms-ln": exp_rms_ln, "wn-sgd": exp_wn_sgd}


# ---------------------------------------------------------------- measures
@m.unit("images/s")
def train_images_per_s(run: Path) -> float:
    """Training throughput: the mean over epochs of the trainer's examples/s (forward, backward and
    step; evaluation not counted), from the run's metrics.csv."""
    if m.failure(run):
        return m.NAN
    with open(Path(run) / "metrics.csv", newline="", encoding="utf-8") as f:
        rates = [float(r["examples_per_s"]) for r in csv.DictReader(f)]
    return mean(rates) if rates else m.NAN


def beside(runs, base: str, arm: str, measure, what: str) -> dict:
    """A comparison reported with its interval and not tested (not in the Holm family)."""
    u, _ = unit_of(measure)
    a, b = in_unit(runs, base, measure), in_unit(runs, arm, measure)
    c = compare_arms(a, b, +1, u)
    return {"what": what, "baseline_mean": mean(a), "arm_mean": mean(b), "effect": c["effect"], "ci": c["ci"],
            "unit": u, "n": c["n"]}


def beside_text(b: dict) -> str:
    u = b["unit"]
    return (f"{b['what']} (reported, not tested): {value(b['baseline_mean'], u)} -> {value(b['arm_mean'], u)}, "
            f"{value(b['effect'], u, True)} [{value(b['ci'][0], u, True)}, {value(b['ci'][1], u, True)}] {u}")


def with_beside(r: dict, items: list) -> dict:
    r.setdefault("numbers", {})["beside"] = items
    r["summary"] += "".join(f"; {beside_text(b)}" for b in items)
    return r


# ---------------------------------------------------------------- claims
def arms_gn_ws(quick):
    return {"bn@32": ("lenet-b32", {"norm": "bn"}), "gn@32": ("lenet-b32", {"norm": GN}),
            "gn+ws@32": ("lenet-b32-more", {"norm": GN_WS}), "bn@2": ("lenet-b2", {"norm": "bn"}),
            "gn+ws@2": ("lenet-b2-more", {"norm": GN_WS})}


def claim_gn_ws(quick, runs):
    setting = (f"{_lenet_setting(quick)}; GN+WS: the same GN on weight-standardized convolutions (each filter "
               f"shifted to mean 0 and scaled to variance 1 before use; the Linear layers keep plain weights)")
    parts = {"GN+WS - GN at batch 32": two_arms(runs, "gn@32", "gn+ws@32", m.test_acc, +1,
                                                "test accuracy GN -> GN+WS at batch 32", setting),
             "BN's drop 32->2 minus GN+WS's": interaction(runs, ("bn@32", "bn@2"), ("gn+ws@32", "gn+ws@2"),
                                                          m.test_acc, +1, "test accuracy", setting)}
    r = several(parts, setting + "; holds when GN+WS beats GN at batch 32 and loses less than BN from batch 32 "
                "to 2", "final test accuracy")
    return with_beside(r, [beside(runs, "bn@32", "gn+ws@32", m.test_acc, "GN+WS - BN at batch 32"),
                           beside(runs, "bn@2", "gn+ws@2", m.test_acc, "GN+WS - BN at batch 2")])


def arms_frn_evo(quick):
    return {f"{lab}@{b}": (f"relu-lenet-b{b}", {"norm": n})
            for lab, n in (("bn", "bn"), ("frn", "frn"), ("evos0", "evos0:2")) for b in (32, 2)}


def _frn_setting() -> str:
    return ("lenet-bn with ReLU (FRN+TLU and EvoNorm-S0 replace BN + ReLU in their papers; with the tutorial's "
            "sigmoid they did not train in a pilot) on the 4,000 mnist5k training images, norms after the two "
            "convolutions only (neither FRN nor EvoNorm-S0 has a form for a Linear layer's features), adam lr 0.001 "
            "with linear decay, equal optimizer steps (2,000): one epoch at batch 2, 16 at batch 32; EvoNorm-S0 "
            "with 2 groups, as GN in the tutorials' claims")


def claim_frn_evo(quick, runs):
    setting = _frn_setting()
    parts = {f"BN's drop 32->2 minus {name}'s": interaction(runs, ("bn@32", "bn@2"), (f"{lab}@32", f"{lab}@2"),
                                                             m.test_acc, +1, "test accuracy", setting)
             for lab, name in (("frn", "FRN"), ("evos0", "EvoNorm-S0"))}
    r = several(parts, setting + "; holds when FRN and EvoNorm-S0 each lose less than BN from batch 32 to 2 (the "
                "batch-independence half; matching BN at batch 32 is reported beside)", "final test accuracy")
    return with_beside(r, [beside(runs, "bn@32", "frn@32", m.test_acc, "FRN - BN at batch 32"),
                           beside(runs, "bn@32", "evos0@32", m.test_acc, "EvoNorm-S0 - BN at batch 32")])


def arms_brn(quick):
    return {"bn@2": ("lenet-b2", {"norm": "bn"}), "brn@2": ("lenet-b2-more", {"norm": "brn"}),
            "bn skewed": ("lenet-skewed", {"norm": "bn"}), "brn skewed": ("lenet-skewed", {"norm": "brn"})}


def claim_brn(quick, runs):
    e = lenet_epochs(quick)
    setting = (f"{_lenet_setting(quick)}; Batch Renorm with the paper's r_max 3 and d_max 5, reached by a linear ramp "
               f"over its first 5,000 steps (the paper keeps plain BN for 5,000 steps and ramps over 40,000), "
               f"moving-average momentum 0.01; non-i.i.d.: batch 32 for {16 * e} epochs with --batch-classes "
               f"{SKEW_CLASSES} (every batch holds 16 images of each of 2 classes, where Ioffe's batches of 32 hold 2 "
               f"of each of 16 of ImageNet's 1,000 classes), tested on the usual test split")
    parts = {"BRN - BN at batch 2": two_arms(runs, "bn@2", "brn@2", m.test_acc, +1, "test accuracy BN -> BRN at "
                                             "batch 2", setting),
             "BRN - BN with class-skewed batches": two_arms(runs, "bn skewed", "brn skewed", m.test_acc, +1,
                                                            "test accuracy BN -> BRN, class-skewed batches",
                                                            setting)}
    return several(parts, setting + "; holds when BRN beats BN in both", "final test accuracy")


def arms_ghost(quick):
    return {"bn@32": ("lenet-b32", {"norm": "bn"}), "bn@512": ("lenet-large", {"norm": "bn"}),
            "gbn@512": ("lenet-large", {"norm": GHOST})}


def claim_ghost(quick, runs):
    e = 16 * lenet_epochs(quick)
    r = two_arms(runs, "bn@512", "gbn@512", m.test_acc, +1, f"final test accuracy at batch {LARGE_BATCH}",
                 f"lenet-bn (sigmoid) on the 4,000 mnist5k training images, adam lr 0.001 with linear decay, {e} "
                 f"epochs at batch 32 and at batch {LARGE_BATCH} (equal epochs, so 16 times fewer steps at "
                 f"{LARGE_BATCH}: the large-batch gap of Hoffer et al.); arm = Ghost BN with virtual batches of 16 "
                 f"at batch {LARGE_BATCH}, baseline = BN at batch {LARGE_BATCH}; the gap narrows by the arm's gain, "
                 f"BN at batch 32 reported beside")
    return with_beside(r, [beside(runs, "bn@512", "bn@32", m.test_acc, f"the gap: BN at batch 32 - BN at batch "
                                                                       f"{LARGE_BATCH}")])


def arms_rms(quick):
    return {"ln": ("rms-ln", {"norm": "ln"}), "rms": ("rms-ln", {"norm": "rms"})}


def claim_rms(quick, runs):
    r = two_arms(runs, "ln", "rms", train_images_per_s, +1, "training images/s",
                 f"mlp of 4 hidden layers of 256 (relu) on digits with torch.nn.LayerNorm or torch.nn.RMSNorm after "
                 f"each hidden Linear layer, adam lr 0.001 with linear decay, batch 64, {rms_epochs(quick)} epochs, one "
                 f"thread a run; images/s = the trainer's training examples/s averaged over the epochs (wall time on a "
                 f"shared machine, runs one after another: load from other jobs is noise in it); arm = RMSNorm, "
                 f"baseline = LayerNorm; the paper's 'comparable performance' (accuracy) is reported beside",
                 also={"final test accuracy": m.test_acc})
    return r


def arms_wn(quick):
    return {"none": ("relu-lr", {"lr": 0.1}), "wn": ("wn-sgd", {"norm": "wn"})}


@m.unit(*m.NATS)
def early_loss(run: Path) -> float:
    """How fast training starts: the mean of the epochs' training losses over the first half of
    training (epochs 1 .. E/2 of metrics.csv), the area under the early loss curve per epoch."""
    if m.failure(run):
        return m.NAN
    with open(Path(run) / "metrics.csv", newline="", encoding="utf-8") as f:
        loss = [float(r["train_loss"]) for r in csv.DictReader(f)]
    half = loss[:max(1, len(loss) // 2)]
    return sum(half) / len(half)


def claim_wn(quick, runs):
    e = sgd_epochs(quick)
    return two_arms(runs, "none", "wn", early_loss, -1, f"mean train loss over epochs 1-{e // 2}",
                    f"mlp depth 3 width 64 relu on digits, plain SGD lr 0.1 constant, batch 64, {e} epochs (the "
                    f"tutorials' SGD claims' net; the no-norm runs are dying-relu's lr 0.1 runs); arm = weight "
                    f"normalization of every Linear layer (w = g v / ||v|| per output unit, torch's parametrization, "
                    f"g starting at ||v||, so the same function at the start; the paper's data-dependent "
                    f"initialization is not used), baseline = plain weights; measure = the mean of the epochs' "
                    f"training losses over the first half of training (how fast it starts); the last epoch's loss "
                    f"and the test accuracy are beside",
                    also={f"train loss over epoch {e}": m.train_loss, "final test accuracy": m.test_acc})


def arms_noisy(quick):
    return {"none": ("lenet-early", {"norm": "none"}), "bn": ("lenet-early", {"norm": "bn"}),
            "noisy-bn": ("lenet-early-more", {"norm": "noisy-bn"})}


def claim_noisy_bn(quick, runs):
    r = two_arms(runs, "none", "noisy-bn", m.test_acc, +1, "test accuracy after the first epoch",
                 "bn-lenet-early's setting (lenet-bn's sigmoid LeNet on mnist5k, adam lr 0.001 constant, batch 64, one "
                 "epoch); arm = noisy BN: BN, then in training a per-step, per-channel scale (log-uniform in "
                 "[0.5, 2]), mean (uniform in [-1, 1]) and spread (uniform in [0, 1]) of i.i.d. Gaussian noise on "
                 "every activation of every sample (--norm noisy-bn), so each layer's input distribution moves at "
                 "every step; baseline = no norm (bn-lenet-early's runs); plain BN reported beside",
                 also={"train loss over the first epoch": m.train_loss})
    return with_beside(r, [beside(runs, "bn", "noisy-bn", m.test_acc, "noisy BN - BN")])
