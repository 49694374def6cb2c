"""Residual networks and their plain and pre-activation siblings.

Sources:
- resnet18/34/50: He et al. (2015), "Deep Residual Learning for Image Recognition", ImageNet
  architecture (Table 1) with torchvision's layout and state_dict keys ("v1.5": the stride of a
  bottleneck sits on its 3x3 conv; projection shortcuts, option B, where the shape changes).
- resnet18-d2l: d2l's "残差网络 (ResNet)" section: the same stages built from its `Residual`
  block with a 1x1-conv shortcut, convs with biases.
- resnet20/32/44/56/110 and plain20..110: the CIFAR-10 nets of He et al. (2015), Section 4.2:
  a 3x3 conv to 16 channels, three stages of n blocks at 16/32/64 channels (depth 6n+2), global
  average pooling, one linear layer. Shortcuts are option A as in the paper (identity, with
  stride-2 subsampling and zero-padded channels where the shape changes), so ResNet-20 has
  0.27M parameters and ResNet-110 1.7M, as the paper's Table 6. The plain nets drop the shortcut.
- preact-resnet20..110: He et al. (2016), "Identity Mappings in Deep Residual Networks", full
  pre-activation (Fig. 4e) with the same CIFAR layout and option-A shortcuts, plus the final
  norm+act before pooling; preact-resnet18: the 18-layer pre-activation net for 32x32 inputs
  (3x3 stem, four stages of 2 blocks, 1x1-conv shortcuts where the shape changes).
"""

from __future__ import annotations

import functools

import torch.nn as tnn

from ..errors import ConfigError, unknown_name
from ..nn.blocks import BLOCK_ORDERS, SHORTCUT_OPS, BasicBlock, Bottleneck, D2LResidual, OrderedBasicBlock, PreActBlock
from .registry import register


def make_stage(block, cin: int, planes: int, n: int, stride: int, **kw) -> tuple[tnn.Sequential, int]:
    """One stage of `n` blocks at `planes` channels: the first takes `cin` channels and `stride`,
    the rest keep the shape. Returns the stage and its output channels."""
    blocks = []
    for j in range(n):
        blocks.append(block(cin, planes, stride if j == 0 else 1, **kw))
        cin = planes * getattr(block, "expansion", 1)
    return tnn.Sequential(*blocks), cin


class ResNet(tnn.Module):
    """ImageNet-style ResNet with torchvision's attribute names (conv1, bn1, layer1..4, fc)."""

    def __init__(self, block, layers, num_classes, in_channels, input_size=None, *, norm_layer, act_layer, dropout=0.0):
        super().__init__()
        self.conv1 = tnn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = act_layer()
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stage, cin = make_stage(block, cin, planes, n, 2 if i > 0 else 1, norm_layer=norm_layer,
                                    act_layer=act_layer)
            setattr(self, f"layer{i + 1}", stage)
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.fc = tnn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(self.avgpool(x).flatten(1)))


@register("resnet18", "resnet", "ResNet-18, ImageNet stem, torchvision-compatible weights",
          default_input=(3, 224, 224))
def resnet18(**kw):
    return ResNet(BasicBlock, (2, 2, 2, 2), **kw)


@register("resnet34", "resnet", "ResNet-34, ImageNet stem, torchvision-compatible weights",
          default_input=(3, 224, 224))
def resnet34(**kw):
    return ResNet(BasicBlock, (3, 4, 6, 3), **kw)


@register("resnet50", "resnet", "ResNet-50 (bottleneck v1.5), torchvision-compatible weights",
          default_input=(3, 224, 224))
def resnet50(**kw):
    return ResNet(Bottleneck, (3, 4, 6, 3), **kw)


class ResNetD2L(tnn.Module):
    """d2l's ResNet-18: b1 = conv7x7(64, /2) -> norm -> act -> maxpool3/2, then four stages of two
    Residual blocks (64, 128, 256, 512; the first block of stages 2-4 halves the size and uses a
    1x1-conv shortcut), global average pooling, linear."""

    def __init__(self, num_classes, in_channels, input_size=None, *, norm_layer, act_layer, dropout=0.0):
        super().__init__()
        self.b1 = tnn.Sequential(tnn.Conv2d(in_channels, 64, 7, 2, 3), norm_layer(64), act_layer(),
                                 tnn.MaxPool2d(3, 2, 1))
        cin = 64
        for i, c in enumerate((64, 128, 256, 512)):
            stage, cin = make_stage(_d2l_residual, cin, c, 2, 2 if i > 0 else 1, norm_layer=norm_layer,
                                    act_layer=act_layer)
            setattr(self, f"b{i + 2}", stage)
        self.head = tnn.Sequential(tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Dropout(dropout) if dropout
                                   else tnn.Identity(), tnn.Linear(512, num_classes))

    def forward(self, x):
        for name in ("b1", "b2", "b3", "b4", "b5", "head"):
            x = getattr(self, name)(x)
        return x


def _d2l_residual(cin, c, stride, **layers):
    # d2l's Residual takes a 1x1-conv shortcut exactly where the block changes the shape
    return D2LResidual(cin, c, use_1x1conv=stride != 1, stride=stride, **layers)


@register("resnet18-d2l", "resnet", "d2l's ResNet-18 (Residual blocks with 1x1-conv shortcut)",
          default_input=(1, 96, 96))
def resnet18_d2l(**kw):
    return ResNetD2L(**kw)


class CifarResNet(tnn.Module):
    """He et al. (2015) CIFAR net, depth 6n+2: conv3x3(16) -> 3 stages x n blocks (16/32/64) ->
    global average pooling -> linear. `block_order` picks one of He et al. (2016)'s Fig. 4
    arrangements: "original" is BasicBlock; "full-preact" the pre-activation net (PreActBlock,
    the stem a conv alone, a final norm+act); "relu-preact" (blocks that start with act) a stem of
    conv+norm and a final act; the others OrderedBasicBlock. `shortcut=False` gives the plain net;
    `head="avgpool8"` replaces global pooling by seed 001's fixed AvgPool2d(8)."""

    def __init__(self, depth, num_classes, in_channels, *, norm_layer, act_layer, dropout=0.0,
                 shortcut=True, shortcut_kind="zero-pad", block_order="original", head="global",
                 input_size=None, shortcut_op="identity"):
        super().__init__()
        if shortcut_op not in SHORTCUT_OPS:
            raise unknown_name("shortcut op", shortcut_op, SHORTCUT_OPS)
        if shortcut_op != "identity" and block_order != "original":
            raise ConfigError(f"shortcut_op {shortcut_op}: He et al. (2016) fig. 2's shortcut variants are built on "
                              f"the original block; drop --block-order {block_order} or --shortcut-op")
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        if block_order not in BLOCK_ORDERS:
            raise unknown_name("block order", block_order, BLOCK_ORDERS)
        preact = block_order == "full-preact"
        block = PreActBlock if preact else BasicBlock
        if block_order in ("bn-after-add", "relu-before-add", "relu-preact"):
            block = functools.partial(OrderedBasicBlock, order=block_order)
        elif shortcut_op != "identity":
            block = functools.partial(BasicBlock, shortcut_op=shortcut_op)
        self.conv1 = tnn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        # The pre-activation net normalizes inside its first block, so its stem is the conv alone.
        self.bn1 = tnn.Identity() if preact else norm_layer(16)
        self.relu = tnn.Identity() if preact or block_order == "relu-preact" else act_layer()
        cin = 16
        for i, planes in enumerate((16, 32, 64)):
            stage, cin = make_stage(block, cin, planes, n, 2 if i > 0 else 1, norm_layer=norm_layer,
                                    act_layer=act_layer, shortcut_kind=shortcut_kind, shortcut=shortcut)
            setattr(self, f"layer{i + 1}", stage)
        self.final = tnn.Sequential(norm_layer(64), act_layer()) if preact else tnn.Identity()
        if block_order == "relu-preact":
            self.final = act_layer()
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        if head == "avgpool8":
            # Seed 001's AvgPool2d(8) fits only a final map of 8..15 pixels, one output pixel.
            final = [(s + 3) // 4 for s in input_size]  # two stride-2 stages, each rounding up
            if not all(8 <= s <= 15 for s in final):
                raise ConfigError(f"resnet14-tutorial-avgpool8: its AvgPool2d(8) head (seed 001's) needs inputs "
                                  f"of 29 to 60 pixels, "
                                  f"got {input_size[0]}x{input_size[1]}; use 32x32 (--augment pad:2 or --resize 32) "
                                  f"or resnet14-tutorial, which pools globally")
            self.avgpool = tnn.AvgPool2d(8)
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.fc = tnn.Linear(64, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.final(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(self.avgpool(x).flatten(1)))


def _register_cifar(depth):
    n = (depth - 2) // 6

    @register(f"resnet{depth}", "resnet-cifar", f"CIFAR ResNet-{depth} (He et al. 2015, n={n}, option-A shortcuts)",
              default_input=(3, 32, 32), block_order="original", shortcut_op="identity", channels_last=True)
    def _res(**kw):
        return CifarResNet(depth, **kw)

    @register(f"plain{depth}", "resnet-cifar", f"CIFAR plain-{depth}: ResNet-{depth} without shortcuts",
              default_input=(3, 32, 32))
    def _plain(**kw):
        return CifarResNet(depth, shortcut=False, **kw)

    @register(f"preact-resnet{depth}", "preact-resnet", f"CIFAR pre-activation ResNet-{depth} (He et al. 2016)",
              default_input=(3, 32, 32))
    def _pre(**kw):
        return CifarResNet(depth, block_order="full-preact", **kw)


for _d in (20, 32, 44, 56, 110):
    _register_cifar(_d)


@register("resnet14-tutorial", "resnet-cifar",
          "the tutorial's 16/32/64 ResNet with [2,2,2] blocks and 3x3-conv projection shortcuts",
          default_input=(1, 28, 28))
def resnet14_tutorial(**kw):
    """Source: the tutorial's "ResNet" (conv3x3(16), three stages of two ResidualBlocks at 16/32/64
    channels, `downsample` = 3x3 conv + BN where the shape changes). Its fixed AvgPool2d(8) only
    fits 32x32 inputs; global average pooling is the same there and also fits 28x28 MNIST."""
    return CifarResNet(14, shortcut_kind="conv3x3", **kw)


@register("resnet14-tutorial-avgpool8", "resnet-cifar",
          "resnet14-tutorial with seed 001's fixed AvgPool2d(8) head: 29-60 px inputs (32 as the seed)",
          default_input=(1, 32, 32))
def resnet14_tutorial_avgpool8(**kw):
    """Source: seed 001's `ResNet(ResidualBlock, [2, 2, 2])` as written, `self.avg_pool =
    nn.AvgPool2d(8)` included: it trains on Pad(4)+RandomCrop(32) crops, so its last map is 8x8."""
    return CifarResNet(14, shortcut_kind="conv3x3", head="avgpool8", **kw)


class PreActResNet18(tnn.Module):
    """18-layer full pre-activation ResNet for small images: conv3x3(64), stages of two PreActBlocks
    at 64/128/256/512 (1x1-conv shortcuts where the shape changes), final norm+act, pooling, linear."""

    def __init__(self, num_classes, in_channels, input_size=None, *, norm_layer, act_layer, dropout=0.0):
        super().__init__()
        self.conv1 = tnn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        cin = 64
        for i, planes in enumerate((64, 128, 256, 512)):
            stage, cin = make_stage(PreActBlock, cin, planes, 2, 2 if i > 0 else 1, norm_layer=norm_layer,
                                    act_layer=act_layer)
            setattr(self, f"layer{i + 1}", stage)
        self.final = tnn.Sequential(norm_layer(512), act_layer())
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.fc = tnn.Linear(512, num_classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.fc(self.dropout(self.avgpool(self.final(x)).flatten(1)))


@register("preact-resnet18", "preact-resnet", "pre-activation ResNet-18 for 32x32 inputs (He et al. 2016)",
          default_input=(3, 32, 32))
def preact_resnet18(**kw):
    return PreActResNet18(**kw)
