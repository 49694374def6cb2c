"""AlexNet and VGG: d2l's chapters between LeNet and NiN.

Sources:
- alexnet: Krizhevsky et al. (2012) in torchvision's single-tower form (64/192/384/256/256
  channels, adaptive 6x6 pooling, a 4096-4096 head with dropout 0.5); with norm "none" (the
  default) its state_dict keys are torchvision's (features.0, features.3, ..., classifier.6).
- vgg11, vgg16: Simonyan & Zisserman (2015), configurations A and D, with torchvision's layout;
  norm "none" (the default) has torchvision's vgg11/vgg16 keys, norm "bn" its vgg11_bn/vgg16_bn
  keys (a BatchNorm after every conv).
- alexnet-small, vgg11-small: small-input variants for 28-96 px (normlab's own adaptation, in
  the spirit of the CIFAR versions of both nets). alexnet-small: 3x3 convs at stride 1 with the
  same channel counts, 2x2 max pooling after the first, second and fifth conv, adaptive 3x3
  pooling, a 1024-1024 head. vgg11-small: configuration A at a quarter of the width (16..128
  channels, d2l's `ratio = 4`), four 2x2 poolings and global average pooling in place of the
  fifth, a 512-512 head.
A norm given by name or callable follows every conv (none by default, as the papers).
"""

from __future__ import annotations

import torch.nn as tnn

from .registry import register, require_min_size

# conv channels, "M" = 2x2 max pooling (torchvision's cfgs "A" and "D")
VGG_CFG = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


def _conv(layers, cin, cout, kernel, stride, padding, norm_layer, act_layer):
    """conv -> norm -> act, leaving out an identity norm so the indices stay torchvision's."""
    layers.append(tnn.Conv2d(cin, cout, kernel, stride, padding))
    norm = norm_layer(cout)
    if not isinstance(norm, tnn.Identity):
        layers.append(norm)
    layers.append(act_layer())


def _head(n_in, hidden, num_classes, dropout, act_layer, vgg=False):
    """torchvision's classifiers: AlexNet's dropout -> linear -> act (twice) -> linear; VGG's
    linear -> act -> dropout (twice) -> linear."""
    if vgg:
        return tnn.Sequential(tnn.Linear(n_in, hidden), act_layer(), tnn.Dropout(dropout),
                              tnn.Linear(hidden, hidden), act_layer(), tnn.Dropout(dropout),
                              tnn.Linear(hidden, num_classes))
    return tnn.Sequential(tnn.Dropout(dropout), tnn.Linear(n_in, hidden), act_layer(),
                          tnn.Dropout(dropout), tnn.Linear(hidden, hidden), act_layer(),
                          tnn.Linear(hidden, num_classes))


class AlexNet(tnn.Module):
    def __init__(self, num_classes, in_channels, input_size, *, norm_layer, act_layer, dropout=0.5,
                 small=False):
        super().__init__()
        layers: list = []
        blk = dict(norm_layer=norm_layer, act_layer=act_layer)
        if small:
            require_min_size("alexnet-small", input_size, 8)
            pool = lambda: tnn.MaxPool2d(2)  # noqa: E731
            _conv(layers, in_channels, 64, 3, 1, 1, **blk)
        else:
            require_min_size("alexnet", input_size, 63)  # 11x11/4 conv and three 3x3/2 poolings
            pool = lambda: tnn.MaxPool2d(3, 2)  # noqa: E731
            _conv(layers, in_channels, 64, 11, 4, 2, **blk)
        layers.append(pool())
        _conv(layers, 64, 192, 3 if small else 5, 1, 1 if small else 2, **blk)
        layers.append(pool())
        _conv(layers, 192, 384, 3, 1, 1, **blk)
        _conv(layers, 384, 256, 3, 1, 1, **blk)
        _conv(layers, 256, 256, 3, 1, 1, **blk)
        layers.append(pool())
        self.features = tnn.Sequential(*layers)
        side = 3 if small else 6
        self.avgpool = tnn.AdaptiveAvgPool2d((side, side))
        self.classifier = _head(256 * side * side, 1024 if small else 4096, num_classes, dropout, act_layer)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


class VGG(tnn.Module):
    def __init__(self, num_classes, in_channels, input_size, *, norm_layer, act_layer, cfg, dropout=0.5,
                 small=False):
        name = cfg + ("-small" if small else "")
        super().__init__()
        layers: list = []
        c = in_channels
        cfg = list(VGG_CFG[cfg])
        if small:
            require_min_size(name, input_size, 16)
            cfg = [v if v == "M" else v // 4 for v in cfg[:-1]]  # quarter width; global pooling for the last M
        else:
            require_min_size(name, input_size, 32)
        for v in cfg:
            if v == "M":
                layers.append(tnn.MaxPool2d(2, 2))
            else:
                _conv(layers, c, v, 3, 1, 1, norm_layer, act_layer)
                c = v
        self.features = tnn.Sequential(*layers)
        side = 1 if small else 7
        self.avgpool = tnn.AdaptiveAvgPool2d((side, side))
        self.classifier = _head(c * side * side, 512 if small else 4096, num_classes, dropout, act_layer, vgg=True)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@register("alexnet", "alexnet-vgg", "AlexNet (torchvision layout and keys), 224 px",
          default_norm="none", default_input=(3, 224, 224), default_lr=0.001)
def alexnet(dropout=0.5, **kw):
    return AlexNet(dropout=dropout, **kw)


@register("alexnet-small", "alexnet-vgg", "AlexNet for 28-96 px: 3x3 convs, 2x2 pooling, 1024-1024 head",
          default_norm="none", default_lr=0.001)
def alexnet_small(dropout=0.5, **kw):
    return AlexNet(dropout=dropout, small=True, **kw)


@register("vgg11", "alexnet-vgg", "VGG-11 (configuration A; torchvision keys, vgg11_bn's with --norm bn), 224 px",
          default_norm="none", default_input=(3, 224, 224), default_lr=0.001)
def vgg11(dropout=0.5, **kw):
    return VGG(cfg="vgg11", dropout=dropout, **kw)


@register("vgg16", "alexnet-vgg", "VGG-16 (configuration D; torchvision keys, vgg16_bn's with --norm bn), 224 px",
          default_norm="none", default_input=(3, 224, 224), default_lr=0.001)
def vgg16(dropout=0.5, **kw):
    return VGG(cfg="vgg16", dropout=dropout, **kw)


@register("vgg11-small", "alexnet-vgg", "VGG-11 at a quarter width for 28-96 px, global pooling, 512-512 head",
          default_norm="none", default_lr=0.001)
def vgg11_small(dropout=0.5, **kw):
    return VGG(cfg="vgg11", dropout=dropout, small=True, **kw)
