"""`--deterministic`: ask torch for deterministic kernels, for the length of one run.

On a CPU normlab's runs repeat bit for bit without it. On CUDA some kernels that a training step
uses add in an order that varies between runs (cuDNN's convolution weight gradients chosen by its
heuristics, atomics in index_add/scatter-style backward passes, cuBLAS with a split workspace), so
two runs, or a run and its resumption, can differ in the last bits and drift apart from there.
`torch.use_deterministic_algorithms` picks deterministic versions; cuBLAS needs a fixed workspace
configuration, set through its environment variable before its first use in the process.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch


def enable(device: torch.device) -> None:
    if device.type == "cuda":
        # read by cuBLAS when it makes a handle; torch refuses deterministic matmuls without it
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op with no deterministic kernel warns (naming itself) instead of killing the run
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@contextmanager
def restored():
    """Undo `enable` when the run ends, so a later run in the same process is not slowed."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
