"""Seed 003's two MNIST nets as written. Source: seed 003, "卷积神经网络进阶 (GoogLeNet、ResNet)" (after 刘二大人's course).

- googlenet-seed003: conv5x5(10) -> pool -> act -> Inception -> conv5x5(20) -> pool -> act ->
  Inception -> flatten (88 x 4 x 4 = 1408 for 28x28) -> linear. Its Inception module applies
  one 1x1 conv (`conv1x1`, 16 channels) in three branches: 96,274 parameters at 28x28 and 10
  classes, the seed's own count. `googlenet-mini` is the same net with one 1x1 conv per branch
  (as Inception v1 has them): 97,298 parameters.
- resnet-simple-seed003: conv5x5(16) -> act -> pool -> ResidualBlock(16) -> conv5x5(32) -> act
  -> pool -> ResidualBlock(32) -> flatten (32 x 4 x 4 = 512) -> linear. Its ResidualBlock as
  written applies `conv1` and its one `bn` twice (`conv2` is built and never used): the bug kept,
  so it can be trained. resnet-simple: the same net with the block the seed meant (conv1 ->
  bn1 -> act -> conv2 -> bn2, plus the input, then act), as the paper's Fig. 2 and d2l's
  `Residual` have it.
- resnet-simple-preact-seed003: the seed's closing listing, the same net with its ResNet v2 block
  (full pre-activation, He et al. 2016b fig. 4(e)): conv1(relu(bn(x))), conv2(relu(bn(.))), plus
  the input, no act after the sum; one `bn` serves both places, as written. resnet-simple-preact:
  the same with a BN of its own before each conv, as the paper's figure has it.

A norm given by name or callable goes where the seed has its BN (the ResNet's blocks; none in
the seed's GoogLeNet, where `--norm` adds one after every conv, on the shared 1x1 conv once).
"""

from __future__ import annotations

import torch
import torch.nn as tnn
import torch.nn.functional as F

from .registry import conv_output_size, register, require_min_size


class InceptionSeed003(tnn.Module):
    """pool -> 1x1(24) | 1x1(16) | 1x1(16) -> 5x5(24) | 1x1(16) -> 3x3(24) -> 3x3(24), where the
    three 1x1(16) are one shared conv, as the seed writes it. Attribute names are the seed's."""

    def __init__(self, in_channels, *, norm_layer):
        super().__init__()
        self.pool_conv1x1 = tnn.Conv2d(in_channels, 24, kernel_size=1)
        self.conv1x1 = tnn.Conv2d(in_channels, 16, kernel_size=1)
        self.conv3x3_16 = tnn.Conv2d(16, 24, kernel_size=3, padding=1)
        self.conv3x3_24 = tnn.Conv2d(24, 24, kernel_size=3, padding=1)
        self.conv5x5 = tnn.Conv2d(16, 24, kernel_size=5, padding=2)
        self.norms = tnn.ModuleDict({k: norm_layer(c) for k, c in (
            ("pool_conv1x1", 24), ("conv1x1", 16), ("conv3x3_16", 24), ("conv3x3_24", 24), ("conv5x5", 24))})

    def _cn(self, name, x):
        return self.norms[name](getattr(self, name)(x))

    def forward(self, x):
        out1 = self._cn("pool_conv1x1", F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        shared = self._cn("conv1x1", x)  # the seed computes it three times; the value is the same
        out3 = self._cn("conv5x5", shared)
        out4 = self._cn("conv3x3_24", self._cn("conv3x3_16", shared))
        return torch.cat((out1, shared, out3, out4), dim=1)


class GoogLeNetSeed003(tnn.Module):
    def __init__(self, num_classes, in_channels, input_size, *, norm_layer, act_layer, dropout=0.0):
        super().__init__()
        require_min_size("googlenet-seed003", input_size, 16)
        h, w = input_size
        for _k in range(2):
            h, w = conv_output_size(h, 5) // 2, conv_output_size(w, 5) // 2
        self.conv1 = tnn.Conv2d(in_channels, 10, kernel_size=5)
        self.norm1 = norm_layer(10)
        self.incep1 = InceptionSeed003(10, norm_layer=norm_layer)
        self.conv2 = tnn.Conv2d(88, 20, kernel_size=5)
        self.norm2 = norm_layer(20)
        self.incep2 = InceptionSeed003(20, norm_layer=norm_layer)
        self.mp = tnn.MaxPool2d(2)
        self.act = act_layer()
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.fc = tnn.Linear(88 * h * w, num_classes)

    def forward(self, x):
        x = self.incep1(self.act(self.mp(self.norm1(self.conv1(x)))))
        x = self.incep2(self.act(self.mp(self.norm2(self.conv2(x)))))
        return self.fc(self.dropout(x.flatten(1)))


class ResidualBlockSeed003(tnn.Module):
    """Seed 003's block as written: relu(bn(conv1(x))), then bn(conv1(.)) again, plus x, relu.
    `conv2` exists (its parameters count) but is never called; one norm layer serves both."""

    def __init__(self, channels, *, norm_layer, act_layer):
        super().__init__()
        self.bn = norm_layer(channels)
        self.conv1 = tnn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = tnn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.act1, self.act2 = act_layer(), act_layer()

    def forward(self, x):
        y = self.act1(self.bn(self.conv1(x)))
        y = self.bn(self.conv1(y))
        return self.act2(x + y)


class ResidualBlockSimple(tnn.Module):
    """The block seed 003 meant: conv1 -> bn1 -> act -> conv2 -> bn2, plus x, act."""

    def __init__(self, channels, *, norm_layer, act_layer):
        super().__init__()
        self.conv1 = tnn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.bn1 = norm_layer(channels)
        self.conv2 = tnn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.bn2 = norm_layer(channels)
        self.act1, self.act2 = act_layer(), act_layer()

    def forward(self, x):
        y = self.act1(self.bn1(self.conv1(x)))
        return self.act2(x + self.bn2(self.conv2(y)))


class ResidualBlockPreActSeed003(ResidualBlockSeed003):
    """Seed 003's closing listing, its ResNet v2 block as written (He et al. 2016b, fig. 4(e), full
    pre-activation): y = conv1(act(bn(x))), y = conv2(act(bn(y))), x + y with no act after the
    sum. The same layers as the first listing's block (one norm layer serves both places, its
    running statistics see both); only the order changes, as the seed says."""

    def forward(self, x):
        y = self.conv1(self.act1(self.bn(x)))
        y = self.conv2(self.act2(self.bn(y)))
        return x + y


class ResidualBlockPreAct(tnn.Module):
    """The full pre-activation block with a norm layer of its own before each conv (the paper's
    fig. 4(e)): x + conv2(act(bn2(conv1(act(bn1(x))))))."""

    def __init__(self, channels, *, norm_layer, act_layer):
        super().__init__()
        self.bn1 = norm_layer(channels)
        self.conv1 = tnn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.bn2 = norm_layer(channels)
        self.conv2 = tnn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.act1, self.act2 = act_layer(), act_layer()

    def forward(self, x):
        y = self.conv1(self.act1(self.bn1(x)))
        return x + self.conv2(self.act2(self.bn2(y)))


class ResNetSimple(tnn.Module):
    def __init__(self, num_classes, in_channels, input_size, *, norm_layer, act_layer, block, dropout=0.0):
        super().__init__()
        require_min_size("resnet-simple", input_size, 16)
        h, w = input_size
        for _k in range(2):
            h, w = conv_output_size(h, 5) // 2, conv_output_size(w, 5) // 2
        layers = dict(norm_layer=norm_layer, act_layer=act_layer)
        self.conv1 = tnn.Conv2d(in_channels, 16, kernel_size=5)
        self.rblock1 = block(16, **layers)
        self.conv2 = tnn.Conv2d(16, 32, kernel_size=5)
        self.rblock2 = block(32, **layers)
        self.mp = tnn.MaxPool2d(2)
        self.act1, self.act2 = act_layer(), act_layer()
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.fc = tnn.Linear(32 * h * w, num_classes)

    def forward(self, x):
        x = self.rblock1(self.mp(self.act1(self.conv1(x))))
        x = self.rblock2(self.mp(self.act2(self.conv2(x))))
        return self.fc(self.dropout(x.flatten(1)))


@register("googlenet-seed003", "googlenet", "seed 003's GoogLeNet as written: one 1x1 conv shared by three "
          "Inception branches (96,274 parameters)", default_norm="none", default_lr=0.001)
def googlenet_seed003(**kw):
    return GoogLeNetSeed003(**kw)


def _register_simple(name: str, block, description: str) -> None:
    register(name, "resnet-simple", description, default_norm="bn")(
        lambda **kw: ResNetSimple(block=block, **kw))


_register_simple("resnet-simple-seed003", ResidualBlockSeed003, "seed 003's simple ResNet as written: its block "
                 "applies conv1 and one BN twice (the bug, kept)")
_register_simple("resnet-simple", ResidualBlockSimple, "seed 003's simple ResNet (5x5 convs, two ResidualBlocks, "
                 "fc 512) with the block it meant: two convs, two BNs")
_register_simple("resnet-simple-preact-seed003", ResidualBlockPreActSeed003, "seed 003's closing listing: the simple "
                 "ResNet with its ResNet v2 (full pre-activation) block as written, one BN used before both convs")
_register_simple("resnet-simple-preact", ResidualBlockPreAct, "seed 003's simple ResNet with full pre-activation "
                 "blocks (He et al. 2016b fig. 4(e)), a BN of its own before each conv")
