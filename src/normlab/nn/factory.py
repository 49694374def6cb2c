"""Choose normalization and activation layers by name.

Models never build a norm layer themselves: they call `make_norm(kind, channels, dims)`, so one
string swaps BatchNorm for GroupNorm in every model, with no argument-order traps.
"""

from __future__ import annotations

import torch.nn as tnn

from ..errors import ConfigError, unknown_name

NORM_KINDS = ("bn", "gn", "ln", "in", "none")
IMPLS = ("native", "reference")

_ACTS = {
    "relu": lambda: tnn.ReLU(inplace=True),
    "sigmoid": tnn.Sigmoid,
    "tanh": tnn.Tanh,
    "gelu": tnn.GELU,
    "silu": tnn.SiLU,
    "leaky-relu": lambda: tnn.LeakyReLU(0.01, inplace=True),
    "elu": lambda: tnn.ELU(inplace=True),
    "identity": tnn.Identity,
}


def check_norm_kind(kind: str) -> str:
    if kind not in NORM_KINDS:
        raise unknown_name("norm", kind, NORM_KINDS)
    return kind


def check_act(name: str) -> str:
    if name not in _ACTS:
        raise unknown_name("activation", name, _ACTS)
    return name


def make_act(name: str) -> tnn.Module:
    return _ACTS[check_act(name)]()


def default_groups(num_channels: int) -> int:
    """32 groups as in Wu & He (2018), or the largest divisor of the channels below that."""
    for g in range(min(32, num_channels), 0, -1):
        if num_channels % g == 0:
            return g
    return 1


def make_norm(kind: str, num_features: int, dims: int = 2, impl: str = "native", **kw) -> tnn.Module:
    """A normalization layer for `num_features` channels of `dims`-D feature maps.

    dims: 0 for (N, C) features after a Linear layer, 1/2/3 for (N, C, L)/(N, C, H, W)/(N, C, D, H, W).
    kind: bn (batch), gn (group; num_groups defaults to `default_groups`), ln (layer norm over
    the channel and spatial dims, as GroupNorm with one group so it works at any input size),
    in (instance), none (identity).
    """
    check_norm_kind(kind)
    if impl not in IMPLS:
        raise unknown_name("norm implementation", impl, IMPLS)
    if dims not in (0, 1, 2, 3):
        raise ConfigError(f"dims must be 0 (features), 1, 2 or 3 (spatial dims), got {dims}")
    mod = tnn
    if impl == "reference":
        from . import norm as mod  # normlab's own layers, same constructor arguments
    if kind == "none":
        return tnn.Identity()
    if kind == "bn":
        cls = {0: mod.BatchNorm1d, 1: mod.BatchNorm1d, 2: mod.BatchNorm2d, 3: mod.BatchNorm3d}[dims]
        return cls(num_features, **kw)
    if kind == "gn":
        groups = kw.pop("num_groups", None) or default_groups(num_features)
        return mod.GroupNorm(groups, num_features, **kw)
    if kind == "ln":
        if dims == 0:
            return mod.LayerNorm(num_features, **kw)
        return mod.GroupNorm(1, num_features, **kw)
    # Instance norm over a single value per channel is undefined, so for features it has no dims.
    if dims == 0:
        raise ConfigError("instance norm needs spatial dims; for (N, C) features use bn, ln or gn")
    kw.setdefault("affine", True)
    cls = {1: mod.InstanceNorm1d, 2: mod.InstanceNorm2d, 3: mod.InstanceNorm3d}[dims]
    return cls(num_features, **kw)
