"""LeNet-5 and the tutorial's LeNet with BatchNorm.

Source: LeCun et al. (1998), "Gradient-based learning applied to document recognition", as
written in d2l's "LeNet" section (sigmoid, average pooling, 5x5 convs); and the tutorial
"批量归一化和残差网络" (BN after each conv/linear and before the sigmoid, max pooling, no padding).
"""

from __future__ import annotations

import torch.nn as tnn

from ..errors import ConfigError
from ..nn.factory import SPATIAL_ONLY, NormLayer, feature_norm
from .registry import conv_output_size, register, require_min_size


class LeNet(tnn.Module):
    """conv5(6) -> norm -> act -> pool -> conv5(16) -> norm -> act -> pool
    -> fc120 -> norm -> act -> fc84 -> norm -> act -> (dropout) -> fc(classes)."""

    def __init__(self, num_classes, in_channels, input_size, *, norm_layer, act_layer, pool="max", padding=0,
                 dropout=0.0, hidden_dropout=0.0, fc_norm=None, name="lenet"):
        super().__init__()
        # The tutorial keeps the conv/linear biases before BN (redundant, harmless); so do we, so
        # parameter counts match it.
        # Keep a minimum of one pixel after the second pooling.
        require_min_size(name, input_size, 16 - 2 * padding)
        pool_cls = tnn.MaxPool2d if pool == "max" else tnn.AvgPool2d
        h, w = input_size
        for k, s, p in ((5, 1, padding), (2, 2, 0), (5, 1, 0), (2, 2, 0)):
            h, w = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p)
        self.features = tnn.Sequential(
            tnn.Conv2d(in_channels, 6, 5, padding=padding),
            norm_layer(6), act_layer(), pool_cls(2, 2),
            tnn.Conv2d(6, 16, 5),
            norm_layer(16), act_layer(), pool_cls(2, 2),
            tnn.Flatten(),
        )
        def drop():  # after each hidden activation, as the tutorials place dropout
            return [tnn.Dropout(hidden_dropout)] if hidden_dropout else []

        # A spatial-only norm (instance norm, frn, ...) has nothing to normalize over in a Linear
        # layer's (N, C) features: it is refused there unless fc_norm=False (--no-fc-norm) asks for
        # norms after the convolutions only, which also lets IN, GN and LN be compared on the same
        # layers. The default (None) is on.
        spatial = isinstance(norm_layer, NormLayer) and norm_layer.kind in SPATIAL_ONLY
        if fc_norm is not False and spatial:
            raise ConfigError(f"fc_norm: norm {norm_layer.spec} normalizes over spatial positions and has no form "
                              f"for the (N, C) features of {name}'s Linear layers; add --no-fc-norm (norms after "
                              f"the convolutions only) or use another norm")
        fc_norm = fc_norm is not False

        def fnorm(n):
            return feature_norm(norm_layer, n) if fc_norm else tnn.Identity()

        self.fc = tnn.Sequential(
            tnn.Linear(16 * h * w, 120), fnorm(120), act_layer(), *drop(),
            tnn.Linear(120, 84), fnorm(84), act_layer(), *drop(),
        )
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.classifier = tnn.Linear(84, num_classes)

    def forward(self, x):
        return self.classifier(self.dropout(self.fc(self.features(x))))


@register("lenet", "lenet", "LeNet-5 (sigmoid, average pooling, padded first conv), no norm",
          default_norm="none", default_act="sigmoid", hidden_dropout=0.0, fc_norm=None)
def lenet(**kw):
    return LeNet(pool="avg", padding=2, name="lenet", **kw)


@register("lenet-bn", "lenet", "the tutorial's LeNet with BatchNorm before each sigmoid",
          default_norm="bn", default_act="sigmoid", hidden_dropout=0.0, fc_norm=None)
def lenet_bn(**kw):
    return LeNet(pool="max", padding=0, name="lenet-bn", **kw)
