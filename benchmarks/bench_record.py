"""Writing a benchmark's results: one way for the scripts in benchmarks/ that keep rows of figures.

The machine comes from machine.py (CPU model and flags, cores, torch version, date, load average),
taken before the run so its load average is the one the run started under; the load average at
the end is added here. A load above the core count means the wall-clock figures are not the
code's alone.

    sys.path.insert(0, str(Path(__file__).parent))   # the scripts run as `python benchmarks/X.py`
    from bench_record import machine_info, write_results
    info = machine_info(torch.device("cpu"))          # before the run
    ...
    write_results(path, rows, info, quick=args.quick)
"""

from __future__ import annotations

import json
from pathlib import Path

from machine import load_average, machine_info  # noqa: F401  (machine_info: re-exported for the scripts)


def write_results(path, rows, machine: dict, **meta) -> Path:
    """Write {"meta": machine + load average now + meta, "rows": rows} as JSON to `path` and say so."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": {**machine, "load_average_after": load_average(), **meta}, "rows": rows}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return out
