"""The claims `normlab claims` knows, in report order: a sentence, how it is evaluated, and for
a trained claim its arms (cells of the experiments in trained.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ...analysis.claims import exact
from ...errors import unknown_name
from . import papers as pp
from . import trained as t


@dataclass(frozen=True)
class Claim:
    text: str
    evaluate: Callable                  # exact: (quick) -> result; trained: (quick, runs) -> result
    arms: Optional[Callable] = None     # trained: quick -> {label: (experiment, {factor: level})}
    # trained: the config fields its arms may differ in, the factor the claim names (and for a
    # two-factor claim its condition); tests/test_like_for_like.py fails on any other difference
    varies: tuple = ()
    # the tutorial's sentence: (seed, the Chinese original, an English translation)
    quote: tuple = ()
    # a paper's claim (papers.py): (the reference, the paper's sentence, quoted)
    source: tuple = ()


CLAIMS: dict[str, Claim] = {
    "inception-1x1": Claim("1x1 convolutions cut the Inception module's multiply-adds", exact.claim_inception),
    "norm-train-eval": Claim("LN/IN/GN keep no running statistics and give the same output in train and eval "
                             "mode; BN does not", exact.claim_norm_modes),
    "gn-interpolates": Claim("GN lies between LN and IN: one group is LN, one channel per group is IN",
                             exact.claim_gn_interpolates),
    "bn-deep-mlp": Claim("BN lets a deep sigmoid MLP train where plain default init fails", t.claim_bn_deep_mlp,
                         t.arms_bn_deep, ("norm",)),
    "bn-higher-lr": Claim("BN allows a higher learning rate", t.claim_bn_higher_lr, t.arms_lr, ("norm", "lr")),
    "l1-sparse": Claim("L1 regularization gives sparse (exactly zero) weights; tested with normlab's proximal "
                       "step (--l1-mode proximal)", t.claim_l1_sparse, t.arms_l1, ("l1",)),
    "l1-penalty-zeros": Claim("L1 as the tutorial defines it, the 1-norm added to the loss (--l1-mode penalty), "
                              "sets weights to exactly zero", t.claim_l1_penalty, t.arms_l1_penalty,
                              ("l1", "l1_mode"),
                              quote=(4, "L1正则化可以让一部分特征的系数缩小到0,所以L1适用于特征之间有关联的情况可以产生稀疏"
                                        "权值矩阵(很多权重为0,则一些特征被过滤掉)",
                                     "L1 regularization can shrink some features' coefficients to 0, so ... it produces "
                                     "a sparse weight matrix (many weights are 0, so some features are filtered out)")),
    "l2-weight-norm": Claim("L2 / weight decay shrinks the weight norm", t.claim_l2_norm, t.arms_l2, ("weight_decay",)),
    "l2-gap": Claim("L2 / weight decay narrows the train-test gap", t.claim_l2_gap, t.arms_l2_gap, ("weight_decay",)),
    "dropout-gap": Claim("dropout narrows the train-test gap", t.claim_dropout_gap, t.arms_dropout_gap, ("hidden_dropout",)),
    "grad-flow": Claim("ReLU keeps the first layer's gradient larger than sigmoid does in a deep MLP",
                       exact.claim_grad_flow),
    "bn-lenet-early": Claim("BN speeds the early convergence of LeNet", t.claim_bn_lenet_early, t.arms_lenet_early,
                            ("norm",)),
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
    "relu-speeds-sgd": Claim("ReLU makes SGD converge faster than sigmoid and tanh", t.claim_relu_sgd,
                             t.arms_act_sgd, ("act",),
                             quote=(2, "相比于 Sigmoid 和 Tanh 激活函数, ReLU 激活函数可极大地加速随机梯度下降法的收敛速度",
                                    "compared with the sigmoid and tanh activations, ReLU greatly speeds up the "
                                    "convergence of stochastic gradient descent")),
    "dying-relu": Claim("at a high learning rate ReLU units die (output 0 for every input, for good)",
                        t.claim_dying_relu, t.arms_dying_relu, ("lr",),
                        quote=(2, "训练的时候很脆弱……这个神经元之后的梯度就永远是0了,不再对任何数据有所响应。在实际操作中"
                                  "可以通过设置比较小的学习率来避免这个小问题",
                               "fragile in training ... the neuron's gradient is 0 from then on and it no longer "
                               "responds to any data; in practice a smaller learning rate avoids this")),
    "max-norm-high-lr": Claim("a max-norm constraint keeps a net trained at a too-high learning rate from blowing up",
                              t.claim_max_norm, t.arms_max_norm, ("max_norm",),
                              quote=(2, "最大范数限制,其迫使权重在更新的过程中范数有一个上界,可以使得当学习率设置太高的时候"
                                        "网络不会\"爆炸\"",
                                     "max-norm constraints bound the weights' norm during the updates, so that the "
                                     "network does not 'explode' when the learning rate is set too high")),
    "inputs-normalized": Claim("normalizing the inputs speeds up gradient descent", t.claim_inputs, t.arms_inputs,
                               ("preprocess",),
                               quote=(2, "归一化后加快了梯度下降求最优解的速度",
                                      "after normalization, gradient descent finds the optimum faster")),
    "zero-init-symmetry": Claim("all-zero initialization fails: every unit of a layer stays the same",
                                exact.claim_zero_init,
                                quote=(2, "全 0 初始化 不可取,否则权重相同",
                                       "all-zero initialization is not acceptable, otherwise the weights are the same")),
    "dropout-shrinks-weights": Claim("dropout acts like L2 weight decay: it shrinks the weights", t.claim_dropout_weights,
                                     t.arms_dropout_weights, ("hidden_dropout",),
                                     quote=(4, "Dropout实现了类似L2的权重衰减的功能",
                                            "dropout does something like L2's weight decay")),
    "adagrad-stalls": Claim("Adagrad stalls late in training: its training loss falls less in the second half than "
                            "RMSprop's", t.claim_adagrad_stalls, t.arms_adagrad, ("optimizer",),
                            quote=(2, "中后期,分母上梯度平方的累加将会越来越大,使gradient→0,使得训练提前结束",
                                   "in mid and late training the sum of squared gradients in the denominator keeps "
                                   "growing and drives the update to 0, ending training early")),
    "ln-similar-features": Claim("LN loses expressiveness when a sample's features are similar: it removes what they "
                                 "share, BN does not", exact.claim_ln_similar,
                                 quote=(4, "由于其根据不同的通道进行了归一化,因此对相似度较大的特征LN会降低模型的表达能力",
                                        "since it normalizes across the channels, LN lowers the model's expressiveness "
                                        "for features that are very similar")),
    "deeper-fc-gains-little": Claim("a deeper fully-connected net gains little from its depth, where a deeper CNN "
                                    "gains more", t.claim_deeper_fc, t.arms_deeper_fc, ("model", "depth", "width", "norm"),
                                    quote=(2, "更深的全连接神经网络结构效果提升就不大了,而与此对比的是卷积神经网络的深层结构"
                                              "则会有更好的效果",
                                           "a deeper fully-connected structure improves little, whereas a deep "
                                           "convolutional structure does better")),
    "dropout-averages": Claim("dropout trains many thinned networks whose average predicts better than one of them, "
                              "and the eval-mode net stands in for that average", t.claim_dropout_average,
                              t.arms_dropout_average, ("hidden_dropout",),
                              quote=(2, "整个dropout过程就相当于对很多个不同的神经网络取平均",
                                     "the whole dropout process amounts to averaging many different networks")),
    "clean-shortcut": Claim("a clean (identity) shortcut beats scaling, gating, 1x1-conv and dropout shortcuts "
                            "(He et al. 2016 fig. 2)", t.claim_clean_shortcut, t.arms_shortcuts, ("shortcut_op",),
                            quote=(3, "shortcut(灰色箭头线、快捷链接)最好不做其它操作,尽量保持干净,以便信息的传播",
                                   "the shortcut had best carry no other operation and stay as clean as possible, so "
                                   "that information propagates")),
}

# The normalization literature's claims (issue 31, papers.py), after the tutorials'.
CLAIMS.update({
    "gn-ws": Claim("weight standardization lets GN close its gap to BN at batch 32 and keep GN's robustness at "
                   "batch 2 (Qiao et al. 2019)", pp.claim_gn_ws, pp.arms_gn_ws, ("norm", "batch_size", "epochs"),
                   source=("Qiao, Wang, Liu, Shen & Yuille 2019, Micro-Batch Training with Batch-Channel "
                           "Normalization and Weight Standardization (arXiv:1903.10520), abstract",
                           "Our WS ends this problem because when used with Group Normalization and trained with 1 "
                           "image/GPU, WS is able to match or outperform the performances of BN trained with large "
                           "batch sizes with only 2 more lines of code.")),
    "frn-evonorm-batch-independent": Claim(
        "FRN+TLU and EvoNorm-S0 do not depend on the batch: they lose less than BN from batch 32 to batch 2 "
        "(Singh & Krishnan 2020; Liu et al. 2020)", pp.claim_frn_evo, pp.arms_frn_evo,
        ("norm", "batch_size", "epochs"),
        source=("Singh & Krishnan 2020, Filter Response Normalization Layer: Eliminating Batch Dependence in the "
                "Training of Deep Neural Networks (CVPR 2020), abstract; Liu, Brock, Simonyan & Le 2020, Evolving "
                "Normalization-Activation Layers (NeurIPS 2020), abstract",
                "Our method operates on each activation channel of each batch element independently, eliminating "
                "the dependency on other batch elements. Our method outperforms BN and other alternatives in a "
                "variety of settings for all batch sizes. (Singh & Krishnan) / Several of these layers enjoy the "
                "property of being independent from the batch statistics. (Liu et al., arXiv v1)")),
    "brn-small-noniid": Claim("Batch Renormalization beats BN at a small batch and with non-i.i.d. (class-skewed) "
                              "minibatches (Ioffe 2017)", pp.claim_brn, pp.arms_brn,
                              ("norm", "batch_size", "epochs", "batch_classes"),
                              source=("Ioffe 2017, Batch Renormalization: Towards Reducing Minibatch Dependence in "
                                      "Batch-Normalized Models (NIPS 2017), abstract",
                                      "Models trained with Batch Renormalization perform substantially better than "
                                      "batchnorm when training with small or non-i.i.d. minibatches.")),
    "ghost-bn-large-batch": Claim("a small virtual batch (Ghost BN) narrows the large-batch generalization gap "
                                  "(Hoffer et al. 2017)", pp.claim_ghost, pp.arms_ghost, ("norm", "batch_size"),
                                  source=("Hoffer, Hubara & Soudry 2017, Train longer, generalize better: closing the "
                                          "generalization gap in large batch training of neural networks (NIPS "
                                          "2017), abstract",
                                          "We further investigate different techniques to train models in the "
                                          "large-batch regime and present a novel algorithm named \"Ghost Batch "
                                          "Normalization\" which enables significant decrease in the generalization "
                                          "gap without increasing the number of updates.")),
    "rms-vs-ln": Claim("RMSNorm trains faster than LayerNorm, at comparable accuracy (Zhang & Sennrich 2019)",
                       pp.claim_rms, pp.arms_rms, ("norm",),
                       source=("Zhang & Sennrich 2019, Root Mean Square Layer Normalization (NeurIPS 2019), abstract",
                               "Extensive experiments on several tasks using diverse network architectures show that "
                               "RMSNorm achieves comparable performance against LayerNorm but reduces the running time "
                               "by 7%~64% on different models.")),
    "wn-early": Claim("weight normalization speeds up early training over plain weights (Salimans & Kingma 2016)",
                      pp.claim_wn, pp.arms_wn, ("norm",),
                      source=("Salimans & Kingma 2016, Weight Normalization: A Simple Reparameterization to "
                              "Accelerate Training of Deep Neural Networks (NIPS 2016), abstract",
                              "By reparameterizing the weights in this way we improve the conditioning of the "
                              "optimization problem and we speed up convergence of stochastic gradient descent.")),
    "noisy-bn": Claim("BN's benefit survives noise injected after it that shifts every layer's input distribution "
                      "at each step, so it does not come from reducing internal covariate shift (Santurkar et al. "
                      "2018)", pp.claim_noisy_bn, pp.arms_noisy, ("norm",),
                      source=("Santurkar, Tsipras, Ilyas & Madry 2018, How Does Batch Normalization Help "
                              "Optimization? (NeurIPS 2018), abstract",
                              "In this work, we demonstrate that such distributional stability of layer inputs has "
                              "little to do with the success of BatchNorm.")),
})


def experiment(name: str, quick: bool) -> dict:
    """Any claim's experiment: the tutorials' (trained.py) or the papers' (papers.py). Its runs
    write no curves.png: no claim reads one, and the plot was 8.5% of claims --quick's run time
    (docs/performance.md); metrics.csv holds the same curves."""
    exp = {"seeds": t.seeds(quick), **pp.EXPERIMENTS[name](quick), "name": name} if name in pp.EXPERIMENTS \
        else t.experiment(name, quick)
    return {**exp, "base": {**exp["base"], "curves": False}}


def one_by_one(name: str) -> Optional[str]:
    """Why experiment `name`'s seeds are trained one by one whatever --seed-batch says, or None."""
    return pp.ONE_BY_ONE.get(name)


def select(only: Optional[str]) -> list[str]:

    if not only:
        return list(CLAIMS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    for n in names:
        if n not in CLAIMS:
            raise unknown_name("claim", n, list(CLAIMS))
    return names
