"""Small layers the tutorials use that torch.nn does not have in that form."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter


class LayerNormCHW(LazyModuleMixin, nn.Module):
    """LayerNorm over all of (C, H, W) with an element-wise scale and shift, as seed 004's
    `nn.LayerNorm(feature_maps.size()[1:])`: C*H*W weights and biases, so the layer's shape is
    set by the first input it sees (create_model runs one probe forward to fix it). The norm
    named `ln` is the size-free alternative: GroupNorm(1, C), the same statistics with one
    scale and shift per channel.

    `reference=True` computes the statistics with normlab's tensor-op layer norm instead of torch's kernel.
    """

    cls_to_become = None

    def __init__(self, num_channels: int, eps: float = 1e-5, reference: bool = False):
        super().__init__()
        self.num_channels, self.eps, self.reference = num_channels, eps, reference
        self.weight = UninitializedParameter()
        self.bias = UninitializedParameter()

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params():
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def initialize_parameters(self, x: torch.Tensor) -> None:
        if self.has_uninitialized_params():
            if x.shape[1] != self.num_channels:
                raise ValueError(f"LayerNormCHW({self.num_channels}) got {x.shape[1]} channels")
            with torch.no_grad():
                self.weight.materialize(x.shape[1:])
                self.bias.materialize(x.shape[1:])
                self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(self.weight.shape)
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"LayerNormCHW was built for inputs of shape {shape} (its first input), got "
                             f"{tuple(x.shape[1:])}; use norm 'ln' for a size-free layer norm")
        if self.reference:
            from . import functional as NF

            return NF.layer_norm(x, shape, self.weight, self.bias, self.eps)
        return F.layer_norm(x, shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        shape = "uninitialized" if self.has_uninitialized_params() else tuple(self.weight.shape)
        return f"{self.num_channels}, normalized_shape={shape}, eps={self.eps}"


class NonInvertedDropout(nn.Module):
    """Dropout as seed 002 describes it: in training each unit is zeroed with probability p and
    the rest pass unscaled; at test time every unit is kept and multiplied by 1 - p. Its
    expected training output equals its test output, (1 - p) x, as inverted dropout's
    (torch.nn.Dropout: kept units scaled by 1/(1 - p) in training, identity at test) equals x;
    tests/test_layers.py checks both by enumerating every mask."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x).bernoulli_(1 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.p:
            return x
        return x * self.mask(x) if self.training else x * (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, non-inverted"


def use_non_inverted_dropout(model: nn.Module) -> nn.Module:
    """Replace every torch.nn.Dropout of `model` (in place) by NonInvertedDropout with its p."""
    for name, child in model.named_children():
        if type(child) is nn.Dropout:
            setattr(model, name, NonInvertedDropout(child.p))
        else:
            use_non_inverted_dropout(child)
    return model


class Maxout(nn.Module):
    """Maxout unit (Goodfellow et al. 2013; seed 002's activation list): `pieces` affine maps
    of the input, and the largest of them, for each of `out_features` units."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 2):
        super().__init__()
        if pieces < 1:
            raise ValueError(f"maxout needs at least one piece, got {pieces}")
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(*x.shape[:-1], self.out_features, self.pieces).amax(-1)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"
