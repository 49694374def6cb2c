"""Which layers are which kind of normalization, told by type (never by class name): torch's
layers, normlab's reference layers (nn/norm.py, SyncBatchNorm among them), the tutorials' BN and
the newer layers. Every module that asks "is this a batch norm?" asks here."""

from __future__ import annotations

from typing import Optional

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm as _TorchBatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm as _TorchInstanceNorm

from . import norm as ref
from .newer_norms import BATCH_STATISTICS, LayerNorm2d
from .tutorial import BatchNormTutorial

BATCH = (_TorchBatchNorm, ref._BatchNorm)       # torch's and normlab's BatchNorm{1,2,3}d, SyncBatchNorm
INSTANCE = (_TorchInstanceNorm, ref._InstanceNorm)
GROUP = (nn.GroupNorm, ref.GroupNorm)
LAYER = (nn.LayerNorm, ref.LayerNorm)
TUTORIAL_BATCH = (BatchNormTutorial,)           # the tutorials' BN: its own buffers and momentum convention

# Spatial dims of each fixed-rank class: 0 for BatchNorm1d, whose usual input is (N, C) after a
# Linear (it also takes (N, C, L)).
_DIMS = ((nn.BatchNorm1d, 0), (ref.BatchNorm1d, 0), (nn.BatchNorm2d, 2), (ref.BatchNorm2d, 2),
         (nn.BatchNorm3d, 3), (ref.BatchNorm3d, 3),
         (nn.InstanceNorm1d, 1), (ref.InstanceNorm1d, 1), (nn.InstanceNorm2d, 2), (ref.InstanceNorm2d, 2),
         (nn.InstanceNorm3d, 3), (ref.InstanceNorm3d, 3))


def dims_of(cls: type) -> Optional[int]:
    """The spatial dims a batch or instance norm class is built for; None where it does not say
    (SyncBatchNorm, the newer layers, group and layer norm)."""
    return next((d for base, d in _DIMS if issubclass(cls, base)), None)


def uses_batch_statistics(m: nn.Module) -> bool:
    """Whether a layer normalizes by statistics of the batch in training (so a batch of one has
    none to give): every batch norm, the tutorials', Batch Renorm, Ghost BN, EvoNorm-B0."""
    return isinstance(m, BATCH + TUTORIAL_BATCH + BATCH_STATISTICS)


def family(m: nn.Module) -> str:
    """'bn', 'bn-tutorial', 'in', 'gn', 'ln' for the tutorials' four kinds, '' otherwise; two layers of
    one family hold the same parameters and buffers under the same names."""
    for name, types in (("bn", BATCH), ("bn-tutorial", TUTORIAL_BATCH), ("in", INSTANCE), ("gn", GROUP),
                        ("ln", LAYER + (LayerNorm2d,))):
        if isinstance(m, types):
            return name
    return ""
