"""Where a run computes: the device a config names, and its autocast context."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from .errors import ConfigError
from .machine import cpu_has_bf16


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device: mps was asked for but is not available here; use --device cpu or auto")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device: unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return dev


def precision_on(precision: str, device: torch.device) -> str:
    """`--precision auto` made what it is on `device` (so config.json records what ran); any
    other precision as it is."""
    return auto_precision(device) if precision == "auto" else precision


def auto_precision(device: torch.device) -> str:
    """What --precision auto means on `device`: bf16 where the hardware has it, else fp32."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str, cache: bool = True):
    """Mixed precision context; autocast keeps batch/group/layer norm in fp32 by itself.
    `cache=False` while a CUDA graph is recorded (the cast weights must not outlive it)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, cache_enabled=cache)
