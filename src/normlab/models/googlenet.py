"""GoogLeNet (Inception v1) and the tutorial's two-module version for MNIST.

Sources:
- googlenet-mini: the tutorial "卷积神经网络进阶 (GoogleNet)": conv5x5(10) -> pool -> act ->
  Inception(88) -> conv5x5(20) -> pool -> act -> Inception(88) -> flatten -> linear. The
  tutorial shares one 1x1 conv between three branches; here each branch has its own (see
  `InceptionMini`). A norm layer follows every conv (identity by default, as the tutorial).
- googlenet: Szegedy et al. (2014), "Going Deeper with Convolutions", with torchvision's layout
  and state_dict keys (BatchNorm after every conv, eps 1e-3, a 3x3 conv in the "5x5" branch as
  torchvision has it). `aux_logits=True` adds the two auxiliary heads; their outputs of the last
  training-mode forward pass are kept in `model.aux_outputs` for a custom loss, while forward
  always returns the main logits.
"""

from __future__ import annotations

import torch
import torch.nn as tnn
import torch.nn.functional as F

from ..nn.blocks import ConvNormAct, Inception, InceptionMini
from ..nn.factory import NormLayer
from .registry import conv_output_size, register, require_min_size


class GoogLeNetMini(tnn.Module):
    def __init__(self, num_classes, in_channels, input_size, *, norm_layer, act_layer, dropout=0.0):
        super().__init__()
        require_min_size("googlenet-mini", input_size, 16)
        h, w = input_size
        for _k in range(2):  # conv5x5 (no padding) then 2x2 pooling, twice
            h, w = conv_output_size(h, 5) // 2, conv_output_size(w, 5) // 2
        self.conv1 = tnn.Sequential(tnn.Conv2d(in_channels, 10, 5), norm_layer(10), tnn.MaxPool2d(2), act_layer())
        self.incep1 = InceptionMini(10, norm_layer=norm_layer)
        self.conv2 = tnn.Sequential(tnn.Conv2d(88, 20, 5), norm_layer(20), tnn.MaxPool2d(2), act_layer())
        self.incep2 = InceptionMini(20, norm_layer=norm_layer)
        self.dropout = tnn.Dropout(dropout) if dropout else tnn.Identity()
        self.fc = tnn.Linear(88 * h * w, num_classes)

    def forward(self, x):
        x = self.incep2(self.conv2(self.incep1(self.conv1(x))))
        return self.fc(self.dropout(x.flatten(1)))


@register("googlenet-mini", "googlenet", "the tutorial's GoogLeNet for MNIST: two 88-channel Inception modules",
          default_norm="none", default_lr=0.001, channels_last=True)
def googlenet_mini(**kw):
    return GoogLeNetMini(**kw)


class InceptionAux(tnn.Module):
    def __init__(self, cin, num_classes, cna, dropout=0.7):
        super().__init__()
        self.conv = ConvNormAct(cin, 128, 1, **cna)
        self.fc1 = tnn.Linear(2048, 1024)
        self.fc2 = tnn.Linear(1024, num_classes)
        self.dropout = tnn.Dropout(dropout)

    def forward(self, x):
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4))).flatten(1)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


# (c1, c3 reduce, c3, c5 reduce, c5, pool proj) of Table 1 of the paper.
_CFG = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNet(tnn.Module):
    def __init__(self, num_classes, in_channels, input_size=None, *, norm_layer, act_layer, dropout=0.2,
                 aux_logits=False, kernel5=3):
        super().__init__()
        if isinstance(norm_layer, NormLayer) and norm_layer.kind != "none" and "eps" not in norm_layer.kw:
            norm_layer = norm_layer.with_kw(eps=1e-3)  # torchvision's BasicConv2d eps
        cna = dict(norm_layer=norm_layer, act_layer=act_layer)
        self.conv1 = ConvNormAct(in_channels, 64, 7, 2, 3, **cna)
        self.maxpool1 = tnn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = ConvNormAct(64, 64, 1, **cna)
        self.conv3 = ConvNormAct(64, 192, 3, padding=1, **cna)
        self.maxpool2 = tnn.MaxPool2d(3, 2, ceil_mode=True)
        c = 192
        for name in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
            mod = Inception(c, *_CFG[name], kernel5=kernel5, **cna)
            setattr(self, f"inception{name}", mod)
            c = mod.out_channels
            if name == "3b":
                self.maxpool3 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            if name == "4e":
                self.maxpool4 = tnn.MaxPool2d(2, 2, ceil_mode=True)
        self.aux1 = InceptionAux(512, num_classes, cna) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, cna) if aux_logits else None
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.dropout = tnn.Dropout(dropout)
        self.fc = tnn.Linear(1024, num_classes)
        self.aux_outputs: tuple = ()

    def forward(self, x):
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux = []
        if self.aux1 is not None and self.training:
            aux.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        if self.aux2 is not None and self.training:
            aux.append(self.aux2(x))
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        self.aux_outputs = tuple(aux)
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


@register("googlenet", "googlenet", "GoogLeNet / Inception v1, torchvision-compatible weights",
          default_input=(3, 224, 224), aux_logits=False, kernel5=3)
def googlenet(dropout=0.2, **kw):
    # torchvision's dropout before the classifier; a user's --dropout (0 included) replaces it.
    return GoogLeNet(dropout=dropout, **kw)
