"""The claims `normlab claims` knows, in report order: a sentence, how it is evaluated, and for
a trained claim its arms (cells of the experiments in trained.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from . import exact, trained as t


@dataclass(frozen=True)
class Claim:
    text: str
    evaluate: Callable                  # exact: (quick) -> result; trained: (quick, runs) -> result
    arms: Optional[Callable] = None     # trained: quick -> {label: (experiment, {factor: level})}
    # trained: the config fields its arms may differ in, the factor the claim names (and for a
    # two-factor claim its condition); tests/test_like_for_like.py fails on any other difference
    varies: tuple = ()


CLAIMS: dict[str, Claim] = {
    "inception-1x1": Claim("1x1 convolutions cut the Inception module's multiply-adds", exact.claim_inception),
    "norm-train-eval": Claim("LN/IN/GN keep no running statistics and give the same output in train and eval "
                             "mode; BN does not", exact.claim_norm_modes),
    "gn-interpolates": Claim("GN lies between LN and IN: one group is LN, one channel per group is IN",
                             exact.claim_gn_interpolates),
    "bn-deep-mlp": Claim("BN lets a deep sigmoid MLP train where plain default init fails", t.claim_bn_deep_mlp,
                         t.arms_bn_deep, ("norm",)),
    "bn-higher-lr": Claim("BN allows a higher learning rate", t.claim_bn_higher_lr, t.arms_lr, ("norm", "lr")),
    "l1-sparse": Claim("L1 regularization gives sparse (exactly zero) weights", t.claim_l1_sparse, t.arms_l1, ("l1",)),
    "l2-weight-norm": Claim("L2 / weight decay shrinks the weight norm", t.claim_l2_norm, t.arms_l2, ("weight_decay",)),
    "l2-gap": Claim("L2 / weight decay narrows the train-test gap", t.claim_l2_gap, t.arms_l2_gap, ("weight_decay",)),
    "dropout-gap": Claim("dropout narrows the train-test gap", t.claim_dropout_gap, t.arms_dropout_gap, ("hidden_dropout",)),
    "grad-flow": Claim("ReLU keeps the first layer's gradient larger than sigmoid does in a deep MLP",
                       exact.claim_grad_flow),
    "bn-lenet-early": Claim("BN speeds the early convergence of LeNet", t.claim_bn_lenet_early, t.arms_lenet_early, ("norm",)),
    "gn-batch-size": Claim("GN is stable across batch sizes where BN degrades at batch 2", t.claim_gn_batch_size,
                           t.arms_gn_batch, ("norm", "batch_size", "epochs")),
    "gn-beats-ln-in": Claim("GN trains better than LN and than IN (it uses cross-channel dependence, and learns "
                            "a distribution per group)", t.claim_gn_between, t.arms_gn_between, ("norm",)),
    "gn-behind-bn": Claim("at a large batch GN does not match BN", t.claim_gn_behind_bn, t.arms_gn_bn_large, ("norm",)),
    "in-contrast": Claim("IN removes per-image contrast: its net's predictions do not change with an image's "
                         "contrast and brightness, a BN net's do", t.claim_in_contrast, t.arms_contrast, ("norm",)),
    "ln-recurrent": Claim("LN suits recurrent nets: it trains a GRU at any batch size, down to 1, where BN "
                          "cannot", t.claim_ln_recurrent, t.arms_rnn, ("norm", "batch_size", "epochs")),
    "plain-vs-residual-depth": Claim("deeper plain nets train worse than shallower ones; residual nets do not",
                                     t.claim_plain_vs_residual, t.arms_depth, ("model",)),
    "preact-vs-original": Claim("pre-activation residual blocks give a deep ResNet higher accuracy than the "
                                "original blocks (He et al. 2016)", t.claim_preact, t.arms_preact, ("model",)),
}


def select(only: Optional[str]) -> list[str]:
    from ...errors import unknown_name

    if not only:
        return list(CLAIMS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    for n in names:
        if n not in CLAIMS:
            raise unknown_name("claim", n, list(CLAIMS))
    return names
