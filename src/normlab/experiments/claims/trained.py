"""The trained claims: each is a set of arms, cells of the experiments below (run by the sweep
runner, paired by seed), and an analysis that applies a measure to the arms' runs.

An experiment is a `normlab compare` experiment (base options, factors, seeds), with a quick
and a full setting. Claims that need the same cell name the same experiment, so the cell is
trained once: the ResNet-56 of the depth and the pre-activation claims, the batch-32 LeNets of
the GN and the contrast claims.
"""

from __future__ import annotations

from ...analysis.claims import measures as m
from ...analysis.claims.comparisons import in_unit, interaction, several, two_arms
from ...analysis.claims.lr_sweep import LR_GRID, claim_bn_lr
from ...analysis.claims.verdict import compare_arms, mean


def seeds(quick: bool) -> int:
    return 3 if quick else 5


# ---------------------------------------------------------------- experiments
def exp_deep_mlp(quick):
    return {"base": {"dataset": "digits", "model": "mlp", "depth": 20, "width": 64, "act": "sigmoid",
                     "epochs": 2 if quick else 5, "lr": 0.01},
            "factors": {"norm": ["none", "bn"]}}


def exp_l1(quick):
    return {"base": {"dataset": "digits", "model": "mlp", "depth": 2, "width": 64, "norm": "none",
                     "epochs": 2 if quick else 5},
            "factors": {"l1": [0.0, L1_STRENGTH]}}


L1_STRENGTH = 0.3
# Seed 004's L1, the 1-norm added to the loss (--l1-mode penalty), at a strength that leaves the
# net accurate: in a pilot (seed 0, 2 epochs) 1e-3 kept test accuracy at 92% with 13% of the
# weights below 1e-3 and none at exactly 0; 1e-2 put the net near chance (19%).
L1_PENALTY = 1e-3


def exp_l1_penalty(quick):
    base = exp_l1(quick)["base"]
    return {"base": {**base, "l1_mode": "penalty"}, "factors": {"l1": [L1_PENALTY]}}


def exp_l2(quick):
    return {"base": {"dataset": "digits", "model": "mlp", "depth": 2, "width": 64, "norm": "none",
                     "optimizer": "sgd", "lr": 0.1, "epochs": 2 if quick else 5},
            "factors": {"weight_decay": [0.0, 0.01]}}


# A gap to narrow, as in the tutorials' overfitting demos: 400 training images (val_split 0.9 holds
# out the other 3,600, stratified and seeded) and a wide MLP that fits every one of them. Dropout
# goes where the tutorials put it, after each hidden layer's activation (--hidden-dropout), not only
# before the classifier. The gap is measured on the final weights in eval mode (measures.eval_scores),
# so dropout, which lowers the trainer's running train accuracy, cannot shrink it by itself. The
# held-out 3,600 only make the training set small: they are evaluated once, after the last epoch
# (--val-every), not after every epoch, where they cost three times the epoch's training.
#
# A confirmatory design, so the verdict is decisive either way: five seeds (0-4, the first committed
# run) and a pilot (seeds 100-105; weight decay 0.01, 0.03, 0.1, dropout 0.5) measured the per-seed
# sd of the gap difference at 0.8-1.5 points. From them, before these runs: 20 fresh seeds (1000-1019;
# 10 in --quick) and a margin of 1 accuracy point, 10 of the 1,000 test images, the smallest narrowing
# worth the name (dropout's pilot effect). An arm that narrows the gap holds; one whose interval rules
# out a narrowing of 1 point does not hold here (paired.decide). Weight decay stays at 0.01: in the
# pilot 0.03 and 0.1 narrowed the accuracy gap no more (0.1 lost train and test accuracy alike).
OVERFIT_WD = 0.01
OVERFIT_DROPOUT = 0.5
OVERFIT_IMAGES = 400
GAP_MARGIN = 1.0  # accuracy points


def overfit_seeds(quick) -> list[int]:
    return list(range(1000, 1010 if quick else 1020))


def exp_overfit(quick):
    return {"base": {"dataset": "mnist5k", "val_split": 0.9, "model": "mlp", "depth": 2, "width": 512,
                     "norm": "none", "dropout": 0.0, "optimizer": "momentum", "lr": 0.05, "batch_size": 32,
                     "epochs": 15 if quick else 30, "val_every": 15 if quick else 30},
            "factors": {"weight_decay": [0.0, OVERFIT_WD], "hidden_dropout": [0.0, OVERFIT_DROPOUT]},
            "seeds": overfit_seeds(quick)}


LENET_EARLY = {"dataset": "mnist5k", "model": "lenet-bn", "epochs": 1, "optimizer": "adam", "lr": 1e-3,
               "batch_size": 64, "schedule": "constant"}


def exp_lenet_early(quick):
    return {"base": dict(LENET_EARLY), "factors": {"norm": ["none", "bn"]}}


# The tutorial's LeNet (sigmoid, max pooling) at batch 32 and 2 with equal optimizer steps on the
# 4,000 mnist5k training images: --quick 2,000 steps (one epoch at batch 2, 16 at batch 32), full
# 4,000 (2 and 32). GN gets 2 groups: lenet-bn's 6 and 16 channels in 3 and 8 per group, neither
# LN (1) nor IN (C).
GN = "gn:2"


def lenet_epochs(quick) -> int:
    """Epochs at batch 2 (batch 32 runs 16 times as many: the same optimizer steps)."""
    return 1 if quick else 2


def _lenet(quick, batch):
    return {"dataset": "mnist5k", "model": "lenet-bn", "optimizer": "adam", "lr": 1e-3,
            "batch_size": batch, "epochs": lenet_epochs(quick) * (16 if batch == 32 else 1)}


def exp_lenet_b32(quick):
    return {"base": _lenet(quick, 32), "factors": {"norm": ["bn", GN]}}


# Instance norm has no form for a Linear layer's (N, C) features (one value per channel), so in
# lenet-bn it normalizes the two convolutions only. The claims that set IN against other norms
# compare them on those same layers: every arm here has its norm after the two convolutions and
# none after the Linear layers (fc_norm off), so the arms differ in the norm alone. IN is
# in-affine, with a learned scale and shift per channel as GN, LN and BN have (and as `in` was
# built before it followed torch's affine=False default), so the arms differ in the statistics.
IN = "in-affine"


def exp_lenet_conv(quick):
    return {"base": {**_lenet(quick, 32), "fc_norm": False}, "factors": {"norm": [GN, "ln", IN, "bn"]}}


def exp_lenet_b2(quick):
    return {"base": _lenet(quick, 2), "factors": {"norm": ["bn", GN]}}


RESNET_DIGITS = {"dataset": "digits", "optimizer": "momentum", "lr": 0.05, "batch_size": 64,
                 "weight_decay": 1e-4, "schedule": "cosine"}


def resnet_epochs(quick) -> int:
    return 3 if quick else 15


def exp_resnets(quick):
    return {"base": {**RESNET_DIGITS, "epochs": resnet_epochs(quick)},
            "factors": {"model": ["resnet56", "preact-resnet56", "plain20", "plain56", "resnet20"]}}


LR_BASE = {"dataset": "digits", "model": "mlp", "depth": 4, "width": 128, "act": "relu", "optimizer": "momentum",
           "schedule": "constant", "batch_size": 64}


def exp_lr(quick):
    return {"base": {**LR_BASE, "epochs": 3 if quick else 5}, "factors": {"norm": ["none", "bn"], "lr": list(LR_GRID)}}


EXPERIMENTS = {"deep-mlp": exp_deep_mlp, "l1": exp_l1, "l1-penalty": exp_l1_penalty, "l2": exp_l2, "overfit": exp_overfit,
               "lenet-early": exp_lenet_early, "lenet-b32": exp_lenet_b32, "lenet-b2": exp_lenet_b2,
               "lenet-conv": exp_lenet_conv,
               "resnets": exp_resnets, "lr": exp_lr}


def experiment(name: str, quick: bool) -> dict:
    """An experiment's definition; its seeds are the run's (3 or 5) unless it names its own."""
    return {"seeds": seeds(quick), **EXPERIMENTS[name](quick), "name": name}


# ---------------------------------------------------------------- claims
def arms_bn_deep(quick):
    return {"none": ("deep-mlp", {"norm": "none"}), "bn": ("deep-mlp", {"norm": "bn"})}


def claim_bn_deep_mlp(quick, runs):
    e = experiment("deep-mlp", quick)["base"]["epochs"]
    return two_arms(runs, "none", "bn", m.test_acc, +1, "final test accuracy",
                    f"mlp depth 20 width 64 sigmoid, torch default init, adam lr 0.01, digits, {e} epochs; "
                    "arm = BN, baseline = no norm")


def arms_l1(quick):
    return {"off": ("l1", {"l1": 0.0}), "on": ("l1", {"l1": L1_STRENGTH})}


def claim_l1_sparse(quick, runs):
    # Adam at the mlp's default lr 0.01, so the soft threshold per step is lr * l1 = 0.003. The
    # tutorials' 1e-2 (a threshold of 1e-4) leaves almost no weight at exactly 0 (0.3% after 5
    # epochs): Adam's steps of ~lr move weights across it. At 0.3 a third of the weights end at 0
    # for about two points of test accuracy; at 1.0 every weight does and the net is at chance.
    e = experiment("l1", quick)["base"]["epochs"]
    return two_arms(runs, "off", "on", m.zero_fraction, +1, "fraction of exactly-zero Linear weights",
                    f"mlp depth 2 width 64, adam lr 0.01, digits, {e} epochs; arm = l1 {L1_STRENGTH} (proximal "
                    "soft-threshold lr*l1 after each step), baseline = no l1",
                    also={"final test accuracy": m.test_acc})


def arms_l1_penalty(quick):
    return {"off": ("l1", {"l1": 0.0}), "penalty": ("l1-penalty", {"l1": L1_PENALTY})}


ZERO_MARGIN = 1.0  # percentage points of the weights: a third of them (l1-sparse's proximal arm) is far above


def claim_l1_penalty(quick, runs):
    # The tutorial's own L1 (seed 004: the 1-norm added to the loss) and its sentence (many weights
    # become 0). A subgradient step moves a weight across 0 rather than onto it, so the measure is
    # the one the sentence names, weights at exactly 0, with a margin of 1 point of the weights;
    # how many end merely near 0 (|w| < 1e-3) is reported beside it.
    e = experiment("l1", quick)["base"]["epochs"]
    return two_arms(runs, "off", "penalty", m.zero_fraction, +1, "fraction of exactly-zero Linear weights",
                    f"mlp depth 2 width 64, adam lr 0.01, digits, {e} epochs; arm = l1 {L1_PENALTY:g} as a loss "
                    f"penalty (--l1-mode penalty: l1 * sum|w| added to the loss, seed 004's form), baseline = no l1",
                    also={"fraction of Linear weights with |w| < 1e-3": m.near_zero_fraction,
                          "final test accuracy": m.test_acc}, margin=ZERO_MARGIN)


def arms_l2(quick):
    return {"off": ("l2", {"weight_decay": 0.0}), "on": ("l2", {"weight_decay": 0.01})}


def claim_l2_norm(quick, runs):
    e = experiment("l2", quick)["base"]["epochs"]
    return two_arms(runs, "off", "on", m.weight_norm, -1, "L2 norm of the Linear weights",
                    f"mlp depth 2 width 64, sgd lr 0.1, digits, {e} epochs; arm = weight_decay 0.01, baseline = none")


def _overfit_setting(quick) -> str:
    e = experiment("overfit", quick)
    b, sd = e["base"], e["seeds"]
    return (f"mlp depth 2 width 512 on {OVERFIT_IMAGES} mnist5k training images (val_split 0.9 holds out the rest), "
            f"momentum 0.9 lr 0.05, batch 32, {b['epochs']} epochs; gap = train accuracy minus test accuracy, both "
            f"of the final weights in eval mode (train accuracy on the run's own {OVERFIT_IMAGES} images, without "
            f"dropout), in accuracy points; seeds {sd[0]}-{sd[-1]}, fresh (the design, seed count and margin "
            f"of {GAP_MARGIN:g} point were fixed on a pilot on other seeds)")


GAP_ALSO = {"test - train loss gap": m.eval_loss_gap, "train accuracy, eval mode": m.eval_train_acc,
            "test accuracy": m.test_acc}


def arms_l2_gap(quick):
    return {"plain": ("overfit", {"weight_decay": 0.0, "hidden_dropout": 0.0}),
            "l2": ("overfit", {"weight_decay": OVERFIT_WD, "hidden_dropout": 0.0})}


def claim_l2_gap(quick, runs):
    return two_arms(runs, "plain", "l2", m.eval_acc_gap, -1, "train - test accuracy gap",
                    f"{_overfit_setting(quick)}; arm = weight_decay {OVERFIT_WD}, baseline = none", also=GAP_ALSO,
                    margin=GAP_MARGIN)


def arms_dropout_gap(quick):
    return {"plain": ("overfit", {"weight_decay": 0.0, "hidden_dropout": 0.0}),
            "dropout": ("overfit", {"weight_decay": 0.0, "hidden_dropout": OVERFIT_DROPOUT})}


def claim_dropout_gap(quick, runs):
    return two_arms(runs, "plain", "dropout", m.eval_acc_gap, -1, "train - test accuracy gap",
                    f"{_overfit_setting(quick)}; arm = dropout {OVERFIT_DROPOUT} after each of the two hidden layers' "
                    "activations (hidden_dropout), baseline = none", also=GAP_ALSO, margin=GAP_MARGIN)


def arms_lenet_early(quick):
    return {"none": ("lenet-early", {"norm": "none"}), "bn": ("lenet-early", {"norm": "bn"})}


def claim_bn_lenet_early(quick, runs):
    return two_arms(runs, "none", "bn", m.test_acc, +1, "test accuracy after the first epoch",
                    "lenet-bn architecture (sigmoid, max pooling) on mnist5k, adam lr 0.001 constant, batch 64, one "
                    "epoch (63 steps); arm = BN, baseline = norm none",
                    also={"train loss over the first epoch": m.train_loss})


def _lenet_setting(quick) -> str:
    e = lenet_epochs(quick)
    return (f"lenet-bn (sigmoid) on the 4,000 mnist5k training images, adam lr 0.001 with linear decay, equal "
            f"optimizer steps ({2000 * e:,}): {e} epoch{'s' * (e > 1)} at batch 2, {16 * e} at batch 32; GN with 2 "
            f"groups (3 and 8 channels a group)")


def arms_gn_batch(quick):
    return {"bn@32": ("lenet-b32", {"norm": "bn"}), "bn@2": ("lenet-b2", {"norm": "bn"}),
            "gn@32": ("lenet-b32", {"norm": GN}), "gn@2": ("lenet-b2", {"norm": GN})}


def claim_gn_batch_size(quick, runs):
    return interaction(runs, ("bn@32", "bn@2"), ("gn@32", "gn@2"), m.test_acc, +1, "final test accuracy",
                       _lenet_setting(quick))


CONV_ONLY = ("norms after the two convolutions only, none after the Linear layers, in every arm (instance norm "
             "has no form for a Linear layer's features, so GN and LN are compared with IN on the same layers); "
             "IN with a learned scale and shift per channel (in-affine), as GN, LN and BN")


def arms_gn_between(quick):
    return {n: ("lenet-conv", {"norm": v}) for n, v in (("gn", GN), ("ln", "ln"), ("in", IN))}


def claim_gn_between(quick, runs):
    setting = f"{_lenet_setting(quick)}; {CONV_ONLY}"
    parts = {"GN - IN": two_arms(runs, "in", "gn", m.test_acc, +1, "test accuracy IN -> GN", setting),
             "GN - LN": two_arms(runs, "ln", "gn", m.test_acc, +1, "test accuracy LN -> GN", setting)}
    return several(parts, setting + "; batch 32 cells; holds when GN beats both", "final test accuracy")


def arms_gn_bn_large(quick):
    return {"gn": ("lenet-b32", {"norm": GN}), "bn": ("lenet-b32", {"norm": "bn"})}


def claim_gn_behind_bn(quick, runs):
    return two_arms(runs, "gn", "bn", m.test_acc, +1, "final test accuracy at batch 32",
                    _lenet_setting(quick) + "; the batch-32 cells (Wu & He's usual batch, where their GN trails "
                    "BN); arm = BN, baseline = GN")


def arms_contrast(quick):
    return {"bn": ("lenet-conv", {"norm": "bn"}), "in": ("lenet-conv", {"norm": IN})}


def claim_in_contrast(quick, runs):
    return two_arms(runs, "in", "bn", m.contrast_change, +1,
                    "fraction of test predictions changed by per-image contrast/brightness",
                    f"{_lenet_setting(quick)}; {CONV_ONLY}; the batch-32 cells with BN and IN, in eval mode; "
                    "every test image "
                    "gets its own x -> a x + b on the standardized input (a log-uniform in [0.5, 2], b uniform in "
                    "[-1, 1], one fixed draw); arm = BN, baseline = IN")


def arms_depth(quick):
    return {m_: ("resnets", {"model": m_}) for m_ in ("plain20", "plain56", "resnet20", "resnet56")}


def _resnet_setting(quick) -> str:
    return (f"CIFAR-style nets (16/32/64 channels) on digits, momentum 0.9 lr 0.05, cosine, batch 64, "
            f"weight decay 1e-4, {resnet_epochs(quick)} epochs")


def claim_plain_vs_residual(quick, runs):
    return interaction(runs, ("plain20", "plain56"), ("resnet20", "resnet56"), m.train_acc, +1,
                       "final train accuracy", f"{_resnet_setting(quick)}; measure = training accuracy of the last "
                       "epoch (running, in train mode)")


def arms_preact(quick):
    return {"resnet56": ("resnets", {"model": "resnet56"}), "preact": ("resnets", {"model": "preact-resnet56"})}


def claim_preact(quick, runs):
    return two_arms(runs, "resnet56", "preact", m.test_acc, +1, "final test accuracy",
                    f"{_resnet_setting(quick)}; arm = preact-resnet56 (full pre-activation), baseline = resnet56 "
                    "(the same runs as plain-vs-residual-depth's)", also={"final train loss": m.train_loss})


def arms_lr(quick):
    return {f"{n}@{lr}": ("lr", {"norm": n, "lr": lr}) for n in ("none", "bn") for lr in LR_GRID}


def claim_bn_higher_lr(quick, runs):
    e = experiment("lr", quick)["base"]["epochs"]
    return claim_bn_lr(runs, f"mlp depth 4 width 128 relu on digits, momentum 0.9, constant lr, batch 64, {e} epochs")


# "LN suits recurrent nets" (seed 004): a GRU reads each 28x28 mnist5k image row by row (28 steps
# of 28 pixels) with LN, BN or no norm in its cells, at batch 32 down to 1, equal optimizer steps:
# one epoch at batch 1, 4 at batch 4, 32 at batch 32, over 300 (--quick) or 600 training images.
# The held-out rest is evaluated after the last epoch only (--val-every): the claim reads test accuracy.
RNN_BATCHES = {True: (32, 1), False: (32, 4, 1)}


def rnn_images(quick) -> int:
    return 300 if quick else 600


def exp_rnn_batch(batch):
    def build(quick):
        return {"base": {"dataset": "mnist5k", "val_split": 1 - rnn_images(quick) / 4000, "model": "gru-rows",
                         "width": 64, "optimizer": "adam", "lr": 1e-3, "batch_size": batch, "epochs": batch,
                         **({"val_every": batch} if batch > 1 else {})},
                "factors": {"norm": ["ln", "bn", "none"]}}
    return build


for _b in (32, 4, 1):
    EXPERIMENTS[f"rnn-b{_b}"] = exp_rnn_batch(_b)


def arms_rnn(quick):
    return {f"{n}@{b}": (f"rnn-b{b}", {"norm": n}) for n in ("ln", "bn", "none") for b in RNN_BATCHES[quick]}


def claim_ln_recurrent(quick, runs):
    n, batches = rnn_images(quick), RNN_BATCHES[quick]
    setting = (f"gru-rows (a GRU of width 64 reading the 28 rows of each image, norms inside its cells as in Ba et "
               f"al. 2016) on {n:,} mnist5k training images (val_split {1 - n / 4000:g}), adam lr 0.001, batch sizes "
               f"{list(batches)} with equal optimizer steps ({n:,}: one epoch at batch 1, 32 at batch 32); "
               f"measure = final test accuracy, a run that cannot train at all (BN at batch 1 is refused) "
               f"counting at chance (0.1)")
    parts = {"LN - BN at batch 1": two_arms(runs, "bn@1", "ln@1", m.test_acc_or_chance, +1,
                                            "test accuracy BN -> LN at batch 1", setting),
             "BN's drop 32->1 minus LN's": interaction(runs, ("bn@32", "bn@1"), ("ln@32", "ln@1"),
                                                        m.test_acc_or_chance, +1, "test accuracy", setting)}
    r = several(parts, setting + "; holds when LN beats BN at batch 1 and loses less than BN from batch 32 to 1",
                "final test accuracy")
    r["numbers"]["cells"] = {lab: in_unit(runs, lab, m.test_acc_or_chance) for lab in arms_rnn(quick)}
    cells = {lab: sum(v) / len(v) for lab, v in r["numbers"]["cells"].items()}
    r["summary"] = ("mean test accuracy (%) " + ", ".join(f"{k} {v:.2f}" for k, v in cells.items()) + "; "
                    + r["summary"])
    return r


# ---------------------------------------------------------------- seed 002's and 004's further claims
# Small MLPs on digits trained by plain SGD (the tutorial's "随机梯度下降") at a constant lr, so a
# claim about convergence speed is read off the training loss after the same number of steps.
SGD_MLP = {"dataset": "digits", "model": "mlp", "depth": 3, "width": 64, "norm": "none", "optimizer": "sgd",
           "lr": 0.1, "schedule": "constant", "batch_size": 64}


def sgd_epochs(quick) -> int:
    return 10 if quick else 20


# These nets train in about a second a run, so their claims take more seeds than the default
# 3 (quick) and 5: 6 and 20, for intervals that can decide an effect of a few points.
def sgd_seeds(quick) -> int:
    return 6 if quick else 20


def exp_act_sgd(quick):
    return {"base": {**SGD_MLP, "epochs": sgd_epochs(quick)}, "factors": {"act": ["sigmoid", "tanh", "relu"]},
            "seeds": sgd_seeds(quick)}


def exp_inputs(quick):
    return {"base": {**SGD_MLP, "act": "relu", "epochs": sgd_epochs(quick)},
            "factors": {"preprocess": ["scale", "standardize"]}, "seeds": sgd_seeds(quick)}


EXPERIMENTS.update({"act-sgd": exp_act_sgd, "inputs": exp_inputs})


def _sgd_setting(quick, what) -> str:
    return (f"mlp depth 3 width 64 (no norm) on digits, plain SGD lr 0.1 constant, batch 64, {sgd_epochs(quick)} "
            f"epochs; measure = the training loss over the last epoch (the same steps in every arm); {what}")


def arms_act_sgd(quick):
    return {a: ("act-sgd", {"act": a}) for a in ("sigmoid", "tanh", "relu")}


def claim_relu_sgd(quick, runs):
    setting = _sgd_setting(quick, "arm = ReLU, baselines = sigmoid and tanh")
    parts = {f"ReLU - {b}": two_arms(runs, b, "relu", m.train_loss, -1, f"train loss {b} -> ReLU", setting,
                                     also={"final test accuracy": m.test_acc})
             for b in ("sigmoid", "tanh")}
    return several(parts, setting + "; holds when ReLU's loss is lower than both", "final train loss")


def arms_inputs(quick):
    return {"scale": ("inputs", {"preprocess": "scale"}), "standardize": ("inputs", {"preprocess": "standardize"})}


def claim_inputs(quick, runs):
    return two_arms(runs, "scale", "standardize", m.train_loss, -1, "train loss over the last epoch",
                    _sgd_setting(quick, "relu; arm = inputs standardized per pixel (mean 0, sd 1, fitted on the "
                                        "training split), baseline = pixels only scaled to [0, 1] (--preprocess scale)"),
                    also={"final test accuracy": m.test_acc})


def arms_dropout_weights(quick):
    return arms_dropout_gap(quick)


def claim_dropout_weights(quick, runs):
    return two_arms(runs, "plain", "dropout", m.weight_norm, -1, "L2 norm of the Linear weights",
                    f"{_overfit_setting(quick)}; the runs of dropout-gap; arm = dropout {OVERFIT_DROPOUT} after "
                    "each hidden activation, baseline = none; the weight-decay arm's norm is beside it",
                    also={"test accuracy": m.test_acc})


# "ReLU units die at a high lr" (seed 002): the same relu MLP at SGD lr 0.1 and 1.0. In a pilot
# (seed 0, 3 epochs) the share of hidden units silent on every training image was 3.6% at 0.1,
# 18% at 1.0 and 83% at 2.0 (the net then at chance); 1.0 is high but still trains.
HIGH_LR = 1.0


def exp_relu_lr(quick):
    return {"base": {**SGD_MLP, "act": "relu", "epochs": sgd_epochs(quick)}, "factors": {"lr": [0.1, HIGH_LR]},
            "seeds": sgd_seeds(quick)}


EXPERIMENTS["relu-lr"] = exp_relu_lr


def arms_dying_relu(quick):
    return {"lr 0.1": ("relu-lr", {"lr": 0.1}), f"lr {HIGH_LR:g}": ("relu-lr", {"lr": HIGH_LR})}


def claim_dying_relu(quick, runs):
    return two_arms(runs, "lr 0.1", f"lr {HIGH_LR:g}", m.dead_units, +1, "share of dead hidden ReLU units",
                    f"mlp depth 3 width 64 relu (no norm) on digits, plain SGD constant lr, batch 64, "
                    f"{sgd_epochs(quick)} epochs; a unit is dead when it outputs 0 on every training image (final "
                    f"weights, eval mode); arm = lr {HIGH_LR:g}, baseline = lr 0.1",
                    also={"final test accuracy": m.test_acc})


# "Max-norm keeps a too-high lr from blowing up" (seed 002): SGD with momentum 0.9 at lr 0.3, where
# in a pilot (seed 0, 3 epochs) the unconstrained net ended at chance with 92% of its units dead,
# and with each unit's incoming weight norm capped at 3 (--max-norm 3) reached 82%.
MAX_NORM_LR, MAX_NORM = 0.3, 3.0


def exp_high_lr(quick):
    return {"base": {**SGD_MLP, "act": "relu", "optimizer": "momentum", "epochs": sgd_epochs(quick)},
            "factors": {"lr": [MAX_NORM_LR]}, "seeds": sgd_seeds(quick)}


def exp_high_lr_max_norm(quick):
    base = exp_high_lr(quick)["base"]
    return {"base": {**base, "lr": MAX_NORM_LR}, "factors": {"max_norm": [MAX_NORM]}, "seeds": sgd_seeds(quick)}


EXPERIMENTS.update({"high-lr": exp_high_lr, "high-lr-max-norm": exp_high_lr_max_norm})


def arms_max_norm(quick):
    return {"none": ("high-lr", {"lr": MAX_NORM_LR}), "max-norm": ("high-lr-max-norm", {"max_norm": MAX_NORM})}


def claim_max_norm(quick, runs):
    return two_arms(runs, "none", "max-norm", m.test_acc_or_chance, +1, "final test accuracy",
                    f"mlp depth 3 width 64 relu (no norm) on digits, SGD momentum 0.9 at a too-high constant lr "
                    f"{MAX_NORM_LR:g}, batch 64, {sgd_epochs(quick)} epochs (a run stopped on a non-finite loss counts "
                    f"at chance); arm = --max-norm {MAX_NORM:g} (each unit's incoming weight vector rescaled to norm "
                    f"<= {MAX_NORM:g} after every step), baseline = none",
                    also={"share of dead hidden ReLU units": m.dead_units})


# "Keep the shortcut clean" (seed 003, He et al. 2016 fig. 2): ResNet-20 on digits (the depth
# claim's setting) with each of the paper's shortcut variants on every identity shortcut.
SHORTCUT_VARIANTS = ("scale", "gate", "conv1x1", "dropout")


def exp_shortcuts(quick):
    return {"base": {**RESNET_DIGITS, "model": "resnet20", "epochs": resnet_epochs(quick)},
            "factors": {"shortcut_op": ["identity", *SHORTCUT_VARIANTS]}}


EXPERIMENTS["shortcuts"] = exp_shortcuts


def arms_shortcuts(quick):
    return {op: ("shortcuts", {"shortcut_op": op}) for op in ("identity", *SHORTCUT_VARIANTS)}


def claim_clean_shortcut(quick, runs):
    setting = (f"resnet20 (16/32/64 channels, option-A shortcuts where the shape changes) on digits, momentum 0.9 "
               f"lr 0.05, cosine, batch 64, weight decay 1e-4, {resnet_epochs(quick)} epochs; "
               "on every identity shortcut: nothing (the baseline), x 0.5 (scale), exclusive gating g F(x) + (1 - g) x "
               "with g = sigmoid(1x1 conv, bias -6) (gate), a 1x1 conv (conv1x1) or dropout 0.5 (dropout), as He et "
               "al. 2016 fig. 2 (b, c, e, f)")
    parts = {f"identity - {op}": two_arms(runs, op, "identity", m.test_acc, +1, f"test accuracy {op} -> identity",
                                          setting, also={"final train loss": m.train_loss})
             for op in SHORTCUT_VARIANTS}
    return several(parts, setting + "; holds when the clean shortcut beats every variant", "final test accuracy")


# "Dropout averages many thinned networks" (seed 002): on the dropout runs of dropout-gap, the
# average of 50 thinned networks (Monte Carlo over dropout masks) against one thinned network, and
# the eval-mode net (the weight-scaling the tutorial describes for prediction) against one.
def arms_dropout_average(quick):
    return {"dropout": ("overfit", {"weight_decay": 0.0, "hidden_dropout": OVERFIT_DROPOUT})}


def claim_dropout_average(quick, runs):

    scores = [m.thinned_scores(d) for d in runs.dirs("dropout")]
    col = {k: [100 * s[k] for s in scores] for k in ("one", "average", "eval", "agree")}
    setting = (f"{_overfit_setting(quick)}; the dropout {OVERFIT_DROPOUT} runs of dropout-gap; test accuracy of one "
               f"thinned network (dropout on, one draw of masks), of the average of {m.THINNED} thinned networks' "
               "softmax outputs, and of the eval-mode net (dropout off, inverted dropout's scaling)")
    parts = {}
    for arm, what in (("average", f"average of {m.THINNED}"), ("eval", "eval-mode net")):
        c = compare_arms(col["one"], col[arm], +1, "accuracy points", ("one thinned", what),
                         f"test accuracy one thinned -> {what}")
        c["setting"] = f"{setting}; n = {len(col['one'])} seeds"
        c["summary"] = (f"test accuracy (%) one thinned {mean(col['one']):.2f} -> {what} {mean(col[arm]):.2f}, "
                        f"effect {c['effect']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}] accuracy points")
        parts[f"{what} - one thinned"] = c
    r = several(parts, setting + "; holds when both beat one thinned network", "test accuracy")
    r["numbers"]["agree_eval_average"] = col["agree"]
    r["summary"] += (f"; the eval net and the {m.THINNED}-average predict the same class on "
                     f"{mean(col['agree']):.2f}% of the test images")
    return r


# "A deeper fully-connected net gains little, where a deeper CNN gains more" (seed 002): the gain
# from depth of an MLP (2 -> 6 hidden layers of 128) against that of a CNN (resnet20 -> resnet56,
# the runs of the depth claim), in the same training setting on digits, paired by seed.
def exp_mlp_depth(quick):
    return {"base": {**RESNET_DIGITS, "model": "mlp", "width": 128, "norm": "none", "epochs": resnet_epochs(quick)},
            "factors": {"depth": [2, 6]}}


EXPERIMENTS["mlp-depth"] = exp_mlp_depth


def arms_deeper_fc(quick):
    return {"mlp2": ("mlp-depth", {"depth": 2}), "mlp6": ("mlp-depth", {"depth": 6}),
            "resnet20": ("resnets", {"model": "resnet20"}), "resnet56": ("resnets", {"model": "resnet56"})}


def claim_deeper_fc(quick, runs):
    return interaction(runs, ("mlp6", "mlp2"), ("resnet56", "resnet20"), m.test_acc, -1, "final test accuracy",
                       f"mlp of 2 and of 6 hidden layers of 128 (relu, no norm) and resnet20 and resnet56 "
                       f"({_resnet_setting(quick)}); effect = the MLP's gain from depth minus the CNN's, per seed "
                       "(< 0: the CNN gains more)")


# "Adagrad stalls late in training" (seed 002): its denominator sums every squared gradient, so its
# steps shrink for good; RMSprop (the tutorial's next entry, "a development of Adagrad") averages
# them instead. Both at lr 0.01 on the SGD claims' relu MLP; the measure is how much the training
# loss still falls in the second half of training. A faster start leaves less to gain late, which
# works against the claim if RMSprop starts faster; the first-half loss is beside the verdict.
def exp_adaptive(quick):
    return {"base": {**SGD_MLP, "act": "relu", "lr": 0.01, "epochs": sgd_epochs(quick)},
            "factors": {"optimizer": ["adagrad", "rmsprop"]}, "seeds": sgd_seeds(quick)}


EXPERIMENTS["adaptive"] = exp_adaptive


def arms_adagrad(quick):
    return {o: ("adaptive", {"optimizer": o}) for o in ("rmsprop", "adagrad")}


def claim_adagrad_stalls(quick, runs):
    e = sgd_epochs(quick)
    return two_arms(runs, "rmsprop", "adagrad", m.late_progress, -1,
                    f"train loss fall from epoch {e // 2} to {e}",
                    f"mlp depth 3 width 64 relu (no norm) on digits, lr 0.01 constant, batch 64, {e} epochs; arm = "
                    f"Adagrad, baseline = RMSprop; measure = mean train loss of epoch {e // 2} minus that of epoch {e}",
                    also={"final train loss": m.train_loss, "final test accuracy": m.test_acc})
