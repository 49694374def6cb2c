"""Densely connected networks.

Sources:
- densenet-d2l: d2l's "稠密连接网络 (DenseNet)" section: stem conv7x7(64, /2) -> norm -> act ->
  maxpool3/2, four dense blocks of 4 conv_blocks (norm -> act -> conv3x3, growth 32, convs with
  biases), a transition halving channels and size between blocks, norm -> act -> pooling -> linear.
- densenet-bc100: Huang et al. (2017), "Densely Connected Convolutional Networks", DenseNet-BC for
  CIFAR with depth 100 and growth k=12: conv3x3(2k), three blocks of 16 bottleneck layers, 0.5
  compression (0.8M parameters, the paper's Table 2).
- densenet121: the ImageNet DenseNet-121 (growth 32, blocks 6/12/24/16, bottleneck 4k) with
  torchvision's state_dict keys (features.conv0, features.denseblock1.denselayer1.norm1, ...).
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as tnn

from ..nn.blocks import DenseBlock, Transition
from .registry import conv_output_size, register, require_min_size


class DenseNet(tnn.Module):
    """features (stem, dense blocks, transitions, final norm) -> act -> global pooling -> classifier."""

    def __init__(self, num_classes, in_channels, input_size=None, *, norm_layer, act_layer, dropout=0.0,
                 growth, blocks, init_features, bn_size, compression=0.5, stem="imagenet",
                 bias=False, name="densenet"):
        super().__init__()
        if input_size is not None:
            require_min_size(name, input_size, _min_size(stem, len(blocks) - 1))
        if stem == "imagenet":
            layers = [("conv0", tnn.Conv2d(in_channels, init_features, 7, 2, 3, bias=bias)),
                      ("norm0", norm_layer(init_features)),
                      ("relu0", act_layer()),
                      ("pool0", tnn.MaxPool2d(3, 2, 1))]
        else:  # CIFAR: a single 3x3 conv, the first block normalizes its output
            layers = [("conv0", tnn.Conv2d(in_channels, init_features, 3, 1, 1, bias=bias))]
        c = init_features
        for i, n in enumerate(blocks):
            block = DenseBlock(n, c, growth, bn_size=bn_size, norm_layer=norm_layer, act_layer=act_layer,
                               dropout=dropout, bias=bias)
            layers.append((f"denseblock{i + 1}", block))
            c = block.out_channels
            if i != len(blocks) - 1:
                out = int(c * compression)
                layers.append((f"transition{i + 1}",
                               Transition(c, out, norm_layer=norm_layer, act_layer=act_layer, bias=bias)))
                c = out
        layers.append((f"norm{len(blocks) + 1}", norm_layer(c)))
        self.features = tnn.Sequential(OrderedDict(layers))
        self.relu = act_layer()
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.classifier = tnn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(self.avgpool(self.relu(self.features(x))).flatten(1))


def _min_size(stem: str, transitions: int) -> int:
    """The smallest input that leaves the last dense block a map of at least 1x1: the ImageNet
    stem (7x7/2 conv, 3x3/2 pooling) and each transition's 2x2 pooling shrink it."""
    def last_map(size):
        if stem == "imagenet":
            size = conv_output_size(conv_output_size(size, 7, 2, 3), 3, 2, 1)
        return size >> transitions
    return next(s for s in range(1, 4096) if last_map(s) >= 1)


@register("densenet-d2l", "densenet", "d2l's DenseNet: 4 blocks of 4 convs, growth 32, halving transitions",
          default_input=(1, 96, 96), channels_last=True)
def densenet_d2l(**kw):
    return DenseNet(growth=32, blocks=(4, 4, 4, 4), init_features=64, bn_size=None, bias=True, name="densenet-d2l", **kw)


@register("densenet-bc100", "densenet", "DenseNet-BC-100 (k=12) for CIFAR (Huang et al. 2017)",
          default_input=(3, 32, 32))
def densenet_bc100(**kw):
    return DenseNet(growth=12, blocks=(16, 16, 16), init_features=24, bn_size=4, stem="cifar", name="densenet-bc100", **kw)


@register("densenet121", "densenet", "DenseNet-121, torchvision-compatible weights",
          default_input=(3, 224, 224))
def densenet121(**kw):
    return DenseNet(growth=32, blocks=(6, 12, 24, 16), init_features=64, bn_size=4, name="densenet121", **kw)
