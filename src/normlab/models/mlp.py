"""Fully connected models: logistic regression and the multilayer perceptron.

Source: d2l's "softmax回归" and "多层感知机" sections; `mlp` with depth=100, width 256 is the deep
MLP of the tutorial's BatchNorm-and-initialization experiment.
"""

from __future__ import annotations

import math

import torch.nn as tnn

from ..nn.factory import feature_norm
from .registry import register


@register("logistic", "linear", "multinomial logistic regression: flatten -> Linear",
          default_norm="none", default_act="identity")
def logistic(num_classes, in_channels, input_size, dropout=0.0, **_):
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
                 dropout=0.0):
        super().__init__()
        n = in_channels * math.prod(input_size)
        layers = [tnn.Flatten()]
        for _ in range(depth):
            norm = feature_norm(norm_layer, width)
            # A norm layer's mean subtraction would cancel a bias here, so only a bare Linear has one.
            layers += [tnn.Linear(n, width, bias=isinstance(norm, tnn.Identity)), norm, act_layer()]
            n = width
        self.features = tnn.Sequential(*layers)
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.classifier = tnn.Linear(n, num_classes)

    def forward(self, x):
        return self.classifier(self.dropout(self.features(x)))


@register("mlp", "mlp", "multilayer perceptron, depth x [Linear-norm-act], width 256",
          default_norm="none", depth=2, width=256)
def mlp(**kw):
    return MLP(**kw)
