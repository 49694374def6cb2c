"""Fully connected models: logistic regression and the multilayer perceptron.

Source: d2l's "softmax回归" and "多层感知机" sections; `mlp` with depth=100, width 256 is the deep
MLP of the tutorial's BatchNorm-and-initialization experiment.
"""

from __future__ import annotations

import math

import torch.nn as tnn

import torch

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


class MLP(tnn.Module):
    """Flatten -> depth x [Linear -> norm -> act] -> (dropout) -> Linear.

    The tutorials place BatchNorm between the affine map and the activation; so does this.
    With depth=100, width=256 it is the deep MLP of the BatchNorm-and-initialization experiment.
    """

    def __init__(self, num_classes, in_channels, input_size, *, norm_layer, act_layer, depth=2, width=256,
                 dropout=0.0, hidden_dropout=0.0, maxout_pieces=0):
        super().__init__()
        n = in_channels * math.prod(input_size)
        layers = [tnn.Flatten()]
        for _ in range(depth):
            norm = feature_norm(norm_layer, width)
            if maxout_pieces:  # the maxout unit is its own nonlinearity
                layers += [Maxout(n, width, maxout_pieces), norm]
            else:
                # A norm layer's mean subtraction would cancel a bias here, so only a bare Linear has one.
                layers += [tnn.Linear(n, width, bias=isinstance(norm, tnn.Identity)), norm, act_layer()]
            if hidden_dropout:
                layers.append(tnn.Dropout(hidden_dropout))
            n = width
        self.features = tnn.Sequential(*layers)
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.classifier = tnn.Linear(n, num_classes)

    def forward(self, x):
        return self.classifier(self.dropout(self.features(x)))


@register("mlp", "mlp", "multilayer perceptron, depth x [Linear-norm-act], width 256",
          default_norm="none", depth=2, width=256, hidden_dropout=0.0)
def mlp(**kw):
    return MLP(**kw)


@register("maxout-mlp", "mlp", "MLP of maxout units (Goodfellow et al. 2013): depth x [max of 2 Linear maps]",
          default_norm="none", default_act="identity", takes_act=False, depth=2, width=256, hidden_dropout=0.0)
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
