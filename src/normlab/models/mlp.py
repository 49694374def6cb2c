"""Fully connected models: logistic regression and the multilayer perceptron.

Source: d2l's "softmax回归" and "多层感知机" sections; `mlp` with depth=100, width 256 is the deep
MLP of the tutorial's BatchNorm-and-initialization experiment.
"""

from __future__ import annotations

import math

import torch
import torch.nn as tnn

from ..config import parse_widths
from ..nn.factory import feature_norm
from ..nn.layers import Maxout
from .registry import register


@register("logistic", "linear", "multinomial logistic regression: flatten -> Linear",
          default_norm="none", default_act="identity", takes_norm=False, takes_act=False)
def logistic(num_classes, in_channels, input_size, dropout=0.0):
    n_in = in_channels * math.prod(input_size)
    layers = [tnn.Flatten()]
    if dropout:
        layers.append(tnn.Dropout(dropout))
    layers.append(tnn.Linear(n_in, num_classes))
    return tnn.Sequential(*layers)


DEPTH, WIDTH = 2, 256  # the mlp's hidden layers when neither depth/width nor widths is given


def hidden_widths(depth=None, width=None, widths=None) -> tuple[int, ...]:
    """The hidden layers' widths: `widths` (one per layer, e.g. seed 002's Batch_Net(in, 300, 100,
    out) is (300, 100)), or `depth` layers of `width`. Both at once is refused: one would be unused."""
    if widths is None:
        return (WIDTH if width is None else int(width),) * (DEPTH if depth is None else int(depth))
    if depth is not None or width is not None:
        from ..errors import ConfigError

        given = " and ".join(f"--{k}" for k, v in (("depth", depth), ("width", width)) if v is not None)
        raise ConfigError(f"widths: sets every hidden layer's width and so the depth; drop {given}")
    if isinstance(widths, str):
        widths = parse_widths(widths)
    return tuple(int(w) for w in widths)


class MLP(tnn.Module):
    """Flatten -> depth x [Linear -> norm -> act] -> (dropout) -> Linear (or one hidden layer per
    entry of `widths`).

    The tutorials place BatchNorm between the affine map and the activation; so does this.
    With depth=100, width=256, bias=False and head=False it is seed 004's 100-layer net exactly
    (`nn.Linear(256, 256, bias=False)` x 100, each followed by its BN and ReLU, no classifier):
    built after the same seed, its weights are the seed's, drawn in the same order.
    bias: the hidden Linear layers' biases: None (the default) only where no norm layer follows
    (a norm's mean subtraction cancels a bias), True everywhere (torch's nn.Linear default, as
    seed 002's Batch_Net has them before its BNs), False nowhere. head=False leaves out the classifier, so the last hidden
    layer's activations are the output (for `normlab stats`; training needs a head).
    """

    def __init__(self, num_classes, in_channels, input_size, *, norm_layer, act_layer, depth=None, width=None,
                 widths=None, dropout=0.0, hidden_dropout=0.0, maxout_pieces=0, bias=None, head=True):
        super().__init__()
        widths = hidden_widths(depth, width, widths)
        n = in_channels * math.prod(input_size)
        layers = [tnn.Flatten()]
        for width in widths:
            norm = feature_norm(norm_layer, width)
            if maxout_pieces:  # the maxout unit is its own nonlinearity
                layers += [Maxout(n, width, maxout_pieces), norm]
            else:
                # A norm layer's mean subtraction would cancel a bias here, so only a bare Linear has one.
                has_bias = isinstance(norm, tnn.Identity) if bias is None else bias
                layers += [tnn.Linear(n, width, bias=has_bias), norm, act_layer()]
            if hidden_dropout:
                layers.append(tnn.Dropout(hidden_dropout))
            n = width
        self.features = tnn.Sequential(*layers)
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.classifier = tnn.Linear(n, num_classes) if head else tnn.Identity()

    def forward(self, x):
        return self.classifier(self.dropout(self.features(x)))


@register("mlp", "mlp", "multilayer perceptron, depth x [Linear-norm-act], width 256 (or --widths 300,100)",
          default_norm="none", depth=None, width=None, widths=None, hidden_dropout=0.0, bias=None, head=True)
def mlp(**kw):
    return MLP(**kw)


@register("maxout-mlp", "mlp", "MLP of maxout units (Goodfellow et al. 2013): depth x [max of 2 Linear maps]",
          default_norm="none", default_act="identity", takes_act=False, depth=None, width=None, widths=None,
          hidden_dropout=0.0)
def maxout_mlp(pieces=2, **kw):
    return MLP(maxout_pieces=pieces, act_layer=None, **kw)


class BinaryLogistic(tnn.Module):
    """Binary logistic regression (seed 002: Linear then Sigmoid, trained with BCELoss) for the
    two classes kept by --classes A,B. It returns the two logits (0, z): softmax over them is
    (1 - sigmoid(z), sigmoid(z)), so the trainer's cross-entropy on them is exactly the binary
    cross-entropy BCE(sigmoid(z), y), and `z` (`.score(x)`) is the model's single logit."""

    def __init__(self, num_classes, in_channels, input_size, dropout=0.0):
        super().__init__()
        if num_classes != 2:
            from ..errors import ConfigError

            raise ConfigError(f"logistic-binary separates two classes, got {num_classes}; keep two with "
                              f"--classes A,B (e.g. --classes 3,8)")
        self.flatten = tnn.Flatten()
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.lr = tnn.Linear(in_channels * math.prod(input_size), 1)  # seed 002 names it `lr`

    def score(self, x):
        return self.lr(self.dropout(self.flatten(x))).squeeze(-1)

    def forward(self, x):
        z = self.score(x)
        return torch.stack([torch.zeros_like(z), z], dim=-1)


@register("logistic-binary", "linear", "binary logistic regression (one logit, BCE) on two classes (--classes A,B)",
          default_norm="none", default_act="identity", num_classes=2, takes_norm=False, takes_act=False)
def logistic_binary(**kw):
    return BinaryLogistic(**kw)
