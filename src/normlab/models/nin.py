"""Network in Network.

Source: Lin et al. (2014), "Network In Network", as in d2l's "网络中的网络 (NiN)" section: four
NiN blocks (a conv followed by two 1x1 convs, each with its act) with max pooling between them,
dropout 0.5, the last block producing one channel per class, global average pooling instead of
dense layers. A norm layer follows every conv (identity by default, as the tutorial).
"""

from __future__ import annotations

import torch.nn as tnn

from .registry import register, require_min_size


def nin_block(cin, cout, kernel, stride, padding, *, norm_layer, act_layer):
    layers = [tnn.Conv2d(cin, cout, kernel, stride, padding)]
    for i in range(3):
        if i:
            layers.append(tnn.Conv2d(cout, cout, 1))
        layers += [norm_layer(cout), act_layer()]
    return tnn.Sequential(*layers)


class NiN(tnn.Module):
    def __init__(self, num_classes, in_channels, input_size, *, norm_layer, act_layer, dropout=0.5):
        super().__init__()
        # 11x11/4 conv then three 3x3/2 pools need at least 67 pixels to keep one.
        require_min_size("nin", input_size, 67)
        blk = dict(norm_layer=norm_layer, act_layer=act_layer)
        self.net = tnn.Sequential(
            nin_block(in_channels, 96, 11, 4, 0, **blk), tnn.MaxPool2d(3, 2),
            nin_block(96, 256, 5, 1, 2, **blk), tnn.MaxPool2d(3, 2),
            nin_block(256, 384, 3, 1, 1, **blk), tnn.MaxPool2d(3, 2),
            tnn.Dropout(dropout),
            nin_block(384, num_classes, 3, 1, 1, **blk),
            tnn.AdaptiveAvgPool2d(1), tnn.Flatten())

    def forward(self, x):
        return self.net(x)


@register("nin", "nin", "Network in Network: 1x1 convs and global pooling instead of dense layers",
          default_norm="none", default_input=(1, 224, 224))
def nin(dropout=0.5, **kw):
    return NiN(dropout=dropout, **kw)
