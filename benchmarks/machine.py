"""What the benchmarks measure against: the machine, its matmul peak now, and a model's FLOPs.

    machine_info(device)   CPU model, ISA flags (avx512/amx/bf16), cores, threads, torch
                           version, date (UTC) and the load average before the run
    peaks(device)          FLOP/s of a square matmul measured in this run: fp32 and bf16 on the
                           CPU (and of a large convolution, *_conv); fp32, tf32, fp16 and bf16
                           on CUDA
    forward_flops(...)     2 x the mult-adds that `normlab inspect` counts (convs and linears)

A training step is counted as 3 forward passes (the backward pass computes the gradients of the
inputs and of the weights, each as many mult-adds as the forward), as usual (e.g. Kaplan et al.
2020: 6 x parameters x tokens). Norms, activations, pooling and the optimizer count zero, so the
fraction of peak is a fraction of the useful matmul/conv work, a lower bound of the busy time.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import time

import torch

from normlab import machine

TRAIN_FORWARDS = 3  # forward + backward (input grads + weight grads), in forward-pass units


def cpu_model() -> str:
    return machine.cpu_model()


def cpu_flags() -> dict:
    """The ISA features that decide fp32/bf16 speed: AVX-512, its BF16 extension, AMX."""
    isa = set(machine.cpu_isa())
    return {"avx2": "avx2" in isa, "avx512f": "avx512f" in isa, "avx512_bf16": "avx512_bf16" in isa,
            "amx_bf16": "amx_bf16" in isa, "amx_tile": "amx_tile" in isa,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def machine_info(device: torch.device) -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    info = {"cpu_model": cpu_model(), "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "platform": platform.platform(), "device": str(device),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average_before": [round(x, 2) for x in load] if load else None}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def load_average() -> list | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(dtype: torch.dtype, device: torch.device, n: int, seconds: float = 0.4, rounds: int = 5) -> float:
    """Best of `rounds` timings of back-to-back n x n matmuls (the best, since a busy neighbour
    only ever slows a round down)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    best = 0.0
    for _ in range(rounds):
        t0, k = time.perf_counter(), 0
        while True:
            a @ b
            k += 1
            _sync(device)
            dt = time.perf_counter() - t0
            if dt >= seconds / rounds:
                break
        best = max(best, 2 * n ** 3 * k / dt)
    return best


def conv_flops(dtype: torch.dtype, device: torch.device, seconds: float = 0.4, rounds: int = 5) -> float:
    """Best-of-rounds FLOP/s of a 3x3 convolution, 256 -> 256 channels on 16 x 28x28 maps in
    channels_last (oneDNN's direct kernel). Where torch's fp32 matmul is not the fastest kernel
    (on this project's AMD CPU the convolution runs 2.4x faster), the matmul understates the
    machine."""
    x = torch.randn(16, 256, 28, 28, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * 16 * 256 * 28 * 28 * 256 * 9
    with torch.inference_mode():
        for _ in range(2):
            torch.nn.functional.conv2d(x, w, padding=1)
        _sync(device)
        best = 0.0
        for _ in range(rounds):
            t0, k = time.perf_counter(), 0
            while True:
                torch.nn.functional.conv2d(x, w, padding=1)
                k += 1
                _sync(device)
                dt = time.perf_counter() - t0
                if dt >= seconds / rounds:
                    break
            best = max(best, flops * k / dt)
    return best


def peaks(device: torch.device, quick: bool = False) -> dict:
    """Matmul FLOP/s per precision, measured now (2048^3 on a CPU, 8192^3 on a GPU)."""
    if device.type == "cuda":
        out = {}
        prev = torch.backends.cuda.matmul.allow_tf32
        try:
            for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                                      ("fp16", torch.float16, False), ("bf16", torch.bfloat16, False)):
                torch.backends.cuda.matmul.allow_tf32 = tf32
                out[name] = matmul_flops(dtype, device, 8192, seconds=1.0)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
        return out
    seconds = 0.5 if quick else 2.0
    # fp32/bf16: the matmul, the reference of every fraction; *_conv: a large convolution, for
    # the reader to see whether the matmul understates the machine (fractions above 100%)
    out = {"fp32": matmul_flops(torch.float32, device, 2048, seconds),
           "fp32_conv": conv_flops(torch.float32, device, seconds)}
    flags = cpu_flags()
    if flags["avx512_bf16"] or flags["amx_bf16"]:
        out.update(bf16=matmul_flops(torch.bfloat16, device, 2048, seconds),
                   bf16_conv=conv_flops(torch.bfloat16, device, seconds))
    else:  # emulated bf16: one 2048^3 matmul takes most of a minute, and there is no peak to speak of
        out.update(bf16=math.nan, bf16_conv=math.nan)
    return out


if __name__ == "__main__":
    # python benchmarks/machine.py: the machine and its peaks now, as the benchmarks see them
    import json

    cpu = torch.device("cpu")
    print(json.dumps({**machine_info(cpu), "peak_flops": peaks(cpu)}, indent=1))


def forward_flops(model: torch.nn.Module, input_shape) -> int:
    """FLOPs of one image's forward pass: 2 x `normlab inspect`'s mult-adds."""
    from normlab.analysis.layer_table import summarize

    return 2 * summarize(model, tuple(input_shape), batch=1).mult_adds


def format_peaks(p: dict) -> str:
    return ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in p.items())
