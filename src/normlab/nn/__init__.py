"""Building blocks: normalization layers, the norm/activation factory, initialization."""

from . import functional
from .factory import NORM_KINDS, NormLayer, check_act, check_norm_kind, get_act_layer, get_norm_layer, make_act, make_norm
from .norm import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    Dropout,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    LayerNorm,
)
from .surgery import FrozenBatchNorm, convert_norm, freeze_bn, fuse_bn
from .sync_bn import SyncBatchNorm

__all__ = [
    "NORM_KINDS",
    "NormLayer",
    "get_act_layer",
    "get_norm_layer",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "Dropout",
    "FrozenBatchNorm",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "LayerNorm",
    "SyncBatchNorm",
    "check_act",
    "check_norm_kind",
    "convert_norm",
    "freeze_bn",
    "functional",
    "fuse_bn",
    "make_act",
    "make_norm",
]
