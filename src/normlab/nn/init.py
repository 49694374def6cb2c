"""Weight initialization schemes by name.

Weights of Conv and Linear layers get the scheme; their biases are set to zero (except for
`default`, which keeps torch's own initialization untouched). Norm layers keep weight 1, bias 0.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as tnn

from ..errors import ConfigError, unknown_name


def _fan_in(w: torch.Tensor) -> int:
    return w.shape[1] * (w[0][0].numel() if w.dim() > 2 else 1)


SCHEMES: dict[str, Callable[[torch.Tensor, dict], torch.Tensor]] = {
    "zeros": lambda w, kw: tnn.init.zeros_(w),
    "normal": lambda w, kw: tnn.init.normal_(w, 0.0, kw.get("std", 0.01)),
    "uniform": lambda w, kw: tnn.init.uniform_(w, -kw.get("a", 0.05), kw.get("a", 0.05)),
    "xavier-uniform": lambda w, kw: tnn.init.xavier_uniform_(w),
    "xavier-normal": lambda w, kw: tnn.init.xavier_normal_(w),
    "kaiming-normal": lambda w, kw: tnn.init.kaiming_normal_(w, nonlinearity="relu"),
    "kaiming-uniform": lambda w, kw: tnn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "orthogonal": lambda w, kw: tnn.init.orthogonal_(w),
    # sparse_ works on 2-D tensors: a conv's (out, in, kh, kw) weight is viewed as (out, in*kh*kw),
    # so each column (one input position) keeps ceil((1 - sparsity) * out) non-zeros.
    "sparse": lambda w, kw: tnn.init.sparse_(w.view(w.shape[0], -1), kw.get("sparsity", 0.9),
                                             kw.get("std", 0.01)),
}
NAMES = ("default",) + tuple(SCHEMES)
# The options each scheme reads from "name:key=value,...".
OPTIONS = {"normal": ("std",), "uniform": ("a",), "sparse": ("sparsity", "std")}


def check_init(name: str) -> str:
    """Validate the scheme name and its options (config checks call this before any work)."""
    parse(name)
    return name


def parse(name: str) -> tuple[str, dict]:
    """`normal:std=1` -> ("normal", {"std": 1.0})."""
    base, _, rest = name.partition(":")
    if base not in NAMES:
        raise unknown_name("init scheme", name, NAMES)
    kw = {}
    allowed = OPTIONS.get(base, ())
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        k = k.strip()
        if k not in allowed:
            takes = ", ".join(allowed) if allowed else "no options"
            raise ConfigError(f"init scheme {base!r} has no option {k!r}; it takes {takes} (e.g. normal:std=0.1)")
        try:
            kw[k] = float(v)
        except ValueError:
            raise ConfigError(f"init option {k} of {name!r} must be a number, got {v.strip()!r}") from None
    return base, kw


@torch.no_grad()
def init_weights(model: tnn.Module, name: str = "default") -> tnn.Module:
    base, kw = parse(name)
    if base == "default":
        return model
    fn = SCHEMES[base]
    for m in model.modules():
        if isinstance(m, (tnn.Linear, tnn.Conv1d, tnn.Conv2d, tnn.Conv3d)):
            fn(m.weight, kw)
            if m.bias is not None:
                tnn.init.zeros_(m.bias)
    return model
