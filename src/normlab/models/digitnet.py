"""DigitNet: a small CNN built for time-to-accuracy on small grayscale images (the `fast` recipe).

Three stages, each conv3x3 -> maxpool 2 -> norm -> act, with width, 2x width and 4x width
channels, then a linear classifier on the flattened last map (3x3 for 28x28 inputs).

Two choices from the speed-run literature (e.g. Keller Jordan's airbench) matter on a CPU:
  - the norm comes after the pooling, so BatchNorm and the activation touch a quarter of the
    values they would before it; on 2 cores this makes the net about twice as fast as
    conv-norm-act-pool, with the same accuracy in our runs (docs/recipes.md);
  - no conv bias: the norm's shift replaces it.
`depth` adds conv3x3 -> norm -> act layers (no pooling) after the first in each stage.

Source: normlab's own small net; the layout ideas follow K. Jordan, "94% on CIFAR-10 in 3.29
seconds on a single GPU" (airbench, 2024), adapted to 28x28 digits.
"""

from __future__ import annotations

import torch.nn as tnn

from .registry import conv_output_size, register, require_min_size


def _stage(cin, cout, extra, norm_layer, act_layer):
    layers = [tnn.Conv2d(cin, cout, 3, padding=1, bias=False), tnn.MaxPool2d(2), norm_layer(cout), act_layer()]
    for _ in range(extra):
        layers += [tnn.Conv2d(cout, cout, 3, padding=1, bias=False), norm_layer(cout), act_layer()]
    return tnn.Sequential(*layers)


class DigitNet(tnn.Module):
    def __init__(self, num_classes, in_channels, input_size, *, norm_layer, act_layer, width=16, depth=1,
                 dropout=0.0):
        super().__init__()
        require_min_size("digitnet", input_size, 8)  # three 2x2 poolings leave at least 1 pixel
        if depth < 1:
            from ..errors import ConfigError

            raise ConfigError(f"depth: digitnet needs at least 1 conv per stage, got {depth}")
        widths = (width, 2 * width, 4 * width)
        cins = (in_channels,) + widths[:2]
        self.features = tnn.Sequential(*(_stage(ci, co, depth - 1, norm_layer, act_layer)
                                         for ci, co in zip(cins, widths)))
        h, w = input_size
        for _ in widths:
            h, w = conv_output_size(h, 2, 2), conv_output_size(w, 2, 2)
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.classifier = tnn.Linear(widths[-1] * h * w, num_classes)

    def forward(self, x):
        return self.classifier(self.dropout(self.features(x).flatten(1)))


@register("digitnet", "digitnet", "small fast CNN for small grayscale images (conv-pool-BN-ReLU x3; the "
          "fast recipe's model)", width=16, depth=1, channels_last=True)
def digitnet(**kw):
    return DigitNet(**kw)
