"""Where a benchmark ran and how its results are written: one helper for the scripts in benchmarks/.

A figure without its machine cannot be compared with anything, so every results file carries the
CPU model, cores, torch version, date and the load average (the machine is often shared: a load
above the core count means the wall-clock figures are not the code's alone).

    sys.path.insert(0, str(Path(__file__).parent))   # the scripts run as `python benchmarks/X.py`
    from bench_record import load_average, write_results
    write_results(path, rows, quick=args.quick, load_average_start=load_average())
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list:
    """1, 5 and 15 minute load averages (uptime's), or None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine() -> dict:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": usable,
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average": load_average()}


def write_results(path, rows, **meta) -> Path:
    """Write {"meta": machine + meta, "rows": rows} as JSON to `path` (folders made) and say so."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": {**machine(), **meta}, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return out
