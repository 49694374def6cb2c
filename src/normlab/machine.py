"""What this machine computes with, in the terms that decide a float result bit for bit.

The same fp32 program gives bit-identical numbers only where the same kernels run: oneDNN and
MKL pick their code path from the CPU's instruction sets (AVX2, AVX-512, its BF16/VNNI
extensions, AMX; NEON/SVE on arm64) and differ between vendors and models, and torch's own
kernels change between releases. `description()` records exactly those facts, and
`differences(recorded, here)` says which of them differ, so a test or a report can tell a real
change of numerics from "another machine".
"""

from __future__ import annotations

import os
import platform
import re
from functools import lru_cache
from typing import Optional

import torch

# The instruction-set extensions that oneDNN/MKL dispatch on (x86_64: Linux /proc/cpuinfo "flags";
# arm64: "Features"). Others (virtualisation, power management) do not change a kernel's arithmetic.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512cd",
             "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
             "amx_bf16", "amx_int8", "amx_fp16",
             "asimd", "asimdhp", "asimddp", "sve", "sve2", "bf16", "i8mm", "sme")
# The description's keys that must agree for two machines to compute the same bits. The last two
# are the code paths actually taken: ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA cap them below
# what the CPU has (which is also how a test run imitates an older CPU on a newer one).
MATCH_KEYS = ("arch", "vendor", "cpu_model", "isa", "torch", "onednn", "torch_cpu_capability", "onednn_max_isa")


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first value of each key of /proc/cpuinfo ({} where there is none: macOS, Windows)."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() not in out:
                    out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def cpu_model(info: Optional[dict] = None) -> str:
    info = _cpuinfo() if info is None else info
    return info.get("model name") or info.get("Model name") or platform.processor() or platform.machine()


def cpu_isa(info: Optional[dict] = None) -> list[str]:
    """The ISA extensions of ISA_FLAGS that this CPU has, sorted."""
    info = _cpuinfo() if info is None else info
    have = set((info.get("flags") or info.get("Features") or "").split())
    return sorted(have.intersection(ISA_FLAGS))


def onednn_version() -> str:
    m = re.search(r"(?:MKL-DNN|oneDNN) v([0-9][0-9.]*)", torch.__config__.show())
    return m.group(1) if m else "none"


@lru_cache(maxsize=1)
def description() -> dict:
    """This machine: architecture, CPU vendor and model, ISA extensions, torch and oneDNN."""
    info = _cpuinfo()
    vendor = info.get("vendor_id") or info.get("CPU implementer") or "unknown"
    return {"arch": platform.machine(), "vendor": vendor, "cpu_model": cpu_model(info), "isa": cpu_isa(info),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__.split("+")[0], "onednn": onednn_version(),
            "onednn_max_isa": (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
                               or "ALL").upper()}


def differences(recorded: dict, here: Optional[dict] = None) -> list[str]:
    """What differs between a recorded machine and this one, one phrase each ([] = the same)."""
    here = description() if here is None else here
    out = []
    for key in MATCH_KEYS:
        a, b = recorded.get(key), here.get(key)
        if a == b:
            continue
        if key == "isa" and isinstance(a, list) and isinstance(b, list):
            gone, new = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            out.append("ISA " + ", ".join([f"-{f}" for f in gone] + [f"+{f}" for f in new]))
        else:
            out.append(f"{key} {a!r} here {b!r}")
    return out


def cpu_has_bf16(isa: Optional[list] = None) -> bool:
    """AVX-512 BF16 or AMX: the CPU computes bf16 dot products natively (without them torch
    emulates bf16 and it is slower than fp32)."""
    isa = description()["isa"] if isa is None else isa
    return "avx512_bf16" in isa or "amx_bf16" in isa
