"""Building blocks of the residual, dense and inception families.

Blocks take `norm_layer` (a callable `num_channels -> nn.Module`) and `act_layer` (a callable
`() -> nn.Module`) by keyword, as torchvision's blocks take `norm_layer`; names such as "gn"
are resolved into these callables once, in `create_model` (see nn/factory.py). Attribute names
follow torchvision where a torchvision model uses the block (BasicBlock, Bottleneck, DenseLayer,
Transition, Inception), so state_dicts are interchangeable.
"""

from __future__ import annotations

import torch
import torch.nn as tnn
import torch.nn.functional as F

from .factory import fresh_act


def _relu():
    return tnn.ReLU(inplace=True)


def _defaults(norm_layer, act_layer):
    """torchvision's defaults: BatchNorm2d and an in-place ReLU."""
    return norm_layer or tnn.BatchNorm2d, act_layer or _relu


def conv3x3(cin: int, cout: int, stride: int = 1, bias: bool = False) -> tnn.Conv2d:
    return tnn.Conv2d(cin, cout, 3, stride, 1, bias=bias)


def conv1x1(cin: int, cout: int, stride: int = 1, bias: bool = False) -> tnn.Conv2d:
    return tnn.Conv2d(cin, cout, 1, stride, 0, bias=bias)


class ZeroPadShortcut(tnn.Module):
    """Option A of He et al. (2015): subsample by taking every `stride`-th pixel and pad the new
    channels with zeros, so the shortcut has no parameters."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, cout - cin

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        if self.extra:
            front = self.extra // 2
            x = F.pad(x, (0, 0, 0, 0, front, self.extra - front))
        return x


def projection(cin, cout, stride, norm_layer) -> tnn.Sequential:
    """Option B: 1x1 conv + norm, used where the shape changes (torchvision's `downsample`)."""
    return tnn.Sequential(conv1x1(cin, cout, stride), norm_layer(cout))


def make_shortcut(kind: str, cin: int, cout: int, stride: int, norm_layer):
    """None when the shape does not change (identity); else option A ("zero-pad"), B ("conv": 1x1
    conv + norm) or the tutorial's 3x3 conv + norm ("conv3x3")."""
    if stride == 1 and cin == cout:
        return None
    if kind == "zero-pad":
        return ZeroPadShortcut(cin, cout, stride)
    if kind == "conv3x3":
        return tnn.Sequential(conv3x3(cin, cout, stride), norm_layer(cout))
    return projection(cin, cout, stride, norm_layer)


SHORTCUT_OPS = ("identity", "scale", "gate", "conv1x1", "dropout")
SHORTCUT_SCALE = 0.5     # He et al. (2016) fig. 2(b): constant scaling by 0.5
SHORTCUT_DROPOUT = 0.5   # fig. 2(f): dropout 0.5 on the shortcut
GATE_BIAS = -6.0         # fig. 2(c): the gate's bias starts at -6 (the paper's best, 1 - g near 1)


class ShortcutGate(tnn.Module):
    """Exclusive gating (He et al. 2016, fig. 2(c)): g = sigmoid(conv1x1(x) + b), the block's sum
    becomes g * F(x) + (1 - g) * x."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = tnn.Conv2d(channels, channels, 1, bias=True)
        tnn.init.constant_(self.conv.bias, GATE_BIAS)  # type: ignore[arg-type]  # bias=True above

    def forward(self, x, residual):
        g = torch.sigmoid(self.conv(x))
        return g * residual + (1 - g) * x


def _op(kind: str, channels: int):
    """What He et al. (2016) fig. 2 puts on an identity shortcut (a block whose shape does not
    change): nothing ("identity"), x * 0.5 ("scale"), exclusive gating ("gate"), a 1x1 conv
    ("conv1x1") or dropout 0.5 ("dropout"). None for the identity."""
    if kind not in SHORTCUT_OPS:
        from ..errors import unknown_name

        raise unknown_name("shortcut op", kind, SHORTCUT_OPS)
    if kind == "identity":
        return None
    if kind == "scale":
        return Scale(SHORTCUT_SCALE)
    if kind == "gate":
        return ShortcutGate(channels)
    if kind == "conv1x1":
        return conv1x1(channels, channels, bias=True)
    return tnn.Dropout(SHORTCUT_DROPOUT)


class Scale(tnn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor

    def extra_repr(self):
        return f"factor={self.factor}"


class BasicBlock(tnn.Module):
    """Two 3x3 convs, each followed by norm; act after the sum (He et al. 2015, Fig. 2).

    `shortcut=False` drops the identity path: the "plain" nets of the degradation experiment.
    """

    expansion = 1

    def __init__(self, cin, planes, stride=1, *, norm_layer=None, act_layer=None, shortcut_kind="conv",
                 shortcut=True, shortcut_op="identity"):
        super().__init__()
        norm_layer, act_layer = _defaults(norm_layer, act_layer)
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = act_layer()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.use_shortcut = shortcut
        # torchvision calls the projection `downsample`; keep the name for state_dict compatibility.
        self.downsample = make_shortcut(shortcut_kind, cin, planes, stride, norm_layer) if shortcut else None
        # He et al. (2016) fig. 2's variants act on identity shortcuts only (a projection stays as it is)
        self.shortcut_op = _op(shortcut_op if shortcut and self.downsample is None else "identity", planes)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.use_shortcut:
            if isinstance(self.shortcut_op, ShortcutGate):
                out = self.shortcut_op(x, out)
            else:
                skip = x if self.downsample is None else self.downsample(x)
                out = out + (skip if self.shortcut_op is None else self.shortcut_op(skip))
        return self.relu(out)


class Bottleneck(tnn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's "v1.5"), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, cin, planes, stride=1, *, norm_layer=None, act_layer=None, shortcut_kind="conv",
                 shortcut=True):
        super().__init__()
        norm_layer, act_layer = _defaults(norm_layer, act_layer)
        cout = planes * self.expansion
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv3 = conv1x1(planes, cout)
        self.bn3 = norm_layer(cout)
        self.relu = act_layer()
        self.use_shortcut = shortcut
        self.downsample = make_shortcut(shortcut_kind, cin, cout, stride, norm_layer) if shortcut else None

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.use_shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class PreActBlock(tnn.Module):
    """Full pre-activation block of He et al. (2016), Fig. 4(e): norm -> act -> conv, twice, and
    nothing on the identity path; where the shape changes the shortcut is taken after the first
    norm+act, as in the paper's code."""

    expansion = 1

    def __init__(self, cin, planes, stride=1, *, norm_layer=None, act_layer=None, shortcut_kind="conv",
                 shortcut=True):
        super().__init__()
        norm_layer, act_layer = _defaults(norm_layer, act_layer)
        self.bn1 = norm_layer(cin)
        self.act1 = fresh_act(act_layer)
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn2 = norm_layer(planes)
        self.act2 = act_layer()
        self.conv2 = conv3x3(planes, planes)
        self.shortcut = None
        if stride != 1 or cin != planes:
            self.shortcut = (ZeroPadShortcut(cin, planes, stride) if shortcut_kind == "zero-pad"
                             else conv1x1(cin, planes, stride))

    def forward(self, x):
        pre = self.act1(self.bn1(x))
        # Projection shortcuts read the pre-activated input, as in the paper's code.
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + skip


class D2LResidual(tnn.Module):
    """Seed 000's (d2l "残差网络") `Residual` block: conv3x3 -> norm -> act -> conv3x3 -> norm,
    plus an optional 1x1 conv on the shortcut, act after the sum. Convs keep their biases as in
    d2l; conv1/conv2 and bn1/bn2 are distinct layers, as d2l has them."""

    def __init__(self, cin, cout, use_1x1conv=False, stride=1, *, norm_layer=None, act_layer=None):
        super().__init__()
        norm_layer, act_layer = _defaults(norm_layer, act_layer)
        self.conv1 = conv3x3(cin, cout, stride, bias=True)
        self.conv2 = conv3x3(cout, cout, bias=True)
        self.conv3 = conv1x1(cin, cout, stride, bias=True) if use_1x1conv else None
        self.bn1 = norm_layer(cout)
        self.bn2 = norm_layer(cout)
        self.act1 = act_layer()
        self.act2 = act_layer()

    def forward(self, x):
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.conv3 is not None:
            x = self.conv3(x)
        return self.act2(y + x)


# ------------------------------------------------------------------ dense
class DenseLayer(tnn.Module):
    """norm -> act -> [1x1 conv to bn_size*growth -> norm -> act] -> 3x3 conv to `growth`.

    bn_size=None gives the plain DenseNet layer (d2l's conv_block, no bottleneck). The output is
    only the new `growth` channels; DenseBlock concatenates.
    """

    def __init__(self, cin, growth, bn_size=4, *, norm_layer=None, act_layer=None, dropout=0.0, bias=False):
        super().__init__()
        norm_layer, act_layer = _defaults(norm_layer, act_layer)
        self.norm1 = norm_layer(cin)
        self.relu1 = fresh_act(act_layer)
        if bn_size:
            self.conv1 = conv1x1(cin, bn_size * growth, bias=bias)
            self.norm2 = norm_layer(bn_size * growth)
            self.relu2 = act_layer()
            self.conv2 = conv3x3(bn_size * growth, growth, bias=bias)
        else:
            self.conv1 = conv3x3(cin, growth, bias=bias)
        self.bottleneck = bool(bn_size)
        self.drop_rate = float(dropout)

    def forward(self, x):
        out = self.conv1(self.relu1(self.norm1(x)))
        if self.bottleneck:
            out = self.conv2(self.relu2(self.norm2(out)))
        if self.drop_rate:
            out = F.dropout(out, self.drop_rate, self.training)
        return out


class DenseBlock(tnn.ModuleDict):
    """`num_layers` DenseLayers; each sees the concatenation of the input and all earlier outputs.
    Layers are named denselayer1..N as in torchvision."""

    def __init__(self, num_layers, cin, growth, **layer_kw):
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(cin + i * growth, growth, **layer_kw)
        self.out_channels = cin + num_layers * growth

    def forward(self, x):
        feats = [x]
        for layer in self.values():
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


class Transition(tnn.Sequential):
    """norm -> act -> 1x1 conv (compress channels) -> 2x2 average pool (halve the size)."""

    def __init__(self, cin, cout, *, norm_layer=None, act_layer=None, bias=False):
        super().__init__()
        norm_layer, act_layer = _defaults(norm_layer, act_layer)
        self.add_module("norm", norm_layer(cin))
        self.add_module("relu", fresh_act(act_layer))
        self.add_module("conv", conv1x1(cin, cout, bias=bias))
        self.add_module("pool", tnn.AvgPool2d(2, 2))


# ------------------------------------------------------------------ inception
class ConvNormAct(tnn.Module):
    """conv (no bias) -> norm -> act: torchvision's BasicConv2d (keys conv.*, bn.*)."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0, *, norm_layer=None, act_layer=None):
        super().__init__()
        norm_layer, act_layer = _defaults(norm_layer, act_layer)
        self.conv = tnn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = norm_layer(cout)
        self.act = act_layer()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Inception(tnn.Module):
    """Inception v1 module (Szegedy et al. 2014): 1x1 | 1x1->3x3 | 1x1->"5x5" | pool->1x1, concat.

    torchvision's GoogLeNet uses a 3x3 conv in the "5x5" branch (a known deviation kept for weight
    compatibility); `kernel5=5` gives the paper's 5x5.
    """

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool_proj, kernel5=3, **cna):
        super().__init__()
        self.branch1 = ConvNormAct(cin, c1, 1, **cna)
        self.branch2 = tnn.Sequential(ConvNormAct(cin, c3r, 1, **cna), ConvNormAct(c3r, c3, 3, padding=1, **cna))
        self.branch3 = tnn.Sequential(ConvNormAct(cin, c5r, 1, **cna),
                                      ConvNormAct(c5r, c5, kernel5, padding=kernel5 // 2, **cna))
        self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, 1, 1, ceil_mode=True), ConvNormAct(cin, pool_proj, 1, **cna))
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionMini(tnn.Module):
    """Seed 003's Inception module for MNIST: avgpool->1x1(24) | 1x1(16) | 1x1(16)->5x5(24)
    | 1x1(16)->3x3(24)->3x3(24), concatenated to 88 channels, no activation inside.

    The seed applies one shared 1x1 conv in three branches (`InceptionSeed003` keeps that); here
    each branch has its own 1x1 conv, as in Inception v1. A norm layer follows every conv.
    """

    out_channels = 88

    def __init__(self, cin, *, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or (lambda c: tnn.Identity())

        def cn(ci, co, k):
            return tnn.Sequential(tnn.Conv2d(ci, co, k, padding=k // 2), norm_layer(co))

        self.pool_proj = cn(cin, 24, 1)
        self.branch1x1 = cn(cin, 16, 1)
        self.branch5x5 = tnn.Sequential(cn(cin, 16, 1), cn(16, 24, 5))
        self.branch3x3 = tnn.Sequential(cn(cin, 16, 1), cn(16, 24, 3), cn(24, 24, 3))

    def forward(self, x):
        pooled = self.pool_proj(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([pooled, self.branch1x1(x), self.branch5x5(x), self.branch3x3(x)], 1)


# ------------------------------------------------------------------ ResNet v2 orderings
BLOCK_ORDERS = ("original", "bn-after-add", "relu-before-add", "relu-preact", "full-preact")


class OrderedBasicBlock(tnn.Module):
    """The five arrangements of norm and act in a two-conv residual block compared by He et al.
    (2016), "Identity Mappings in Deep Residual Networks", Fig. 4 (each `+` adds the shortcut):

      (a) original          conv-N-act-conv-N  +  act
      (b) bn-after-add      conv-N-act-conv    +  N-act
      (c) relu-before-add   conv-N-act-conv-N-act  +
      (d) relu-preact       act-conv-N-act-conv-N  +
      (e) full-preact       N-act-conv-N-act-conv  +

    (a) is BasicBlock (same parameters and names) and (e) PreActBlock with an identity shortcut;
    the shortcut reads the block's input `x` in every arrangement (a projection is 1x1 conv +
    norm for a-c, as BasicBlock's, and a bare 1x1 conv for d-e, as PreActBlock's).
    """

    expansion = 1

    def __init__(self, cin, planes, stride=1, *, order="original", norm_layer=None, act_layer=None,
                 shortcut_kind="conv", shortcut=True):
        super().__init__()
        if order not in BLOCK_ORDERS:
            from ..errors import unknown_name

            raise unknown_name("block order", order, BLOCK_ORDERS)
        norm_layer, act_layer = _defaults(norm_layer, act_layer)
        self.order = order
        self.conv1 = conv3x3(cin, planes, stride)
        self.conv2 = conv3x3(planes, planes)
        # the channels each norm sees, in its position of the arrangement
        n1, n2 = (cin, planes) if order == "full-preact" else (planes, planes)
        self.bn1 = norm_layer(n1)
        self.bn2 = norm_layer(n2)
        # Pre-activation arrangements must not overwrite `x`, which the shortcut still reads.
        self.act1 = fresh_act(act_layer) if order in ("relu-preact", "full-preact") else act_layer()
        self.act2 = act_layer()
        self.downsample = None
        if shortcut and order in ("relu-preact", "full-preact"):
            if stride != 1 or cin != planes:  # as PreActBlock: no norm on a pre-activation projection
                self.downsample = (ZeroPadShortcut(cin, planes, stride) if shortcut_kind == "zero-pad"
                                   else conv1x1(cin, planes, stride))
        elif shortcut:
            self.downsample = make_shortcut(shortcut_kind, cin, planes, stride, norm_layer)
        self.use_shortcut = shortcut

    def _residual(self, x):
        o = self.order
        if o == "full-preact":
            return self.conv2(self.act2(self.bn2(self.conv1(self.act1(self.bn1(x))))))
        if o == "relu-preact":
            return self.bn2(self.conv2(self.act2(self.bn1(self.conv1(self.act1(x))))))
        y = self.conv2(self.act1(self.bn1(self.conv1(x))))
        if o == "original":
            return self.bn2(y)
        if o == "relu-before-add":
            return self.act2(self.bn2(y))
        return y  # bn-after-add: the norm comes after the sum

    def forward(self, x):
        out = self._residual(x)
        if self.use_shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        if self.order == "original":
            return self.act2(out)
        if self.order == "bn-after-add":
            return self.act2(self.bn2(out))
        return out
