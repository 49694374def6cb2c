"""Building blocks: normalization layers, the norm/activation factory, initialization."""

from .factory import NORM_KINDS, check_act, check_norm_kind, make_act, make_norm

__all__ = ["NORM_KINDS", "check_act", "check_norm_kind", "make_act", "make_norm"]
