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
