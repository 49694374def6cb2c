"""A sweep folder read back: its recorded experiment, each run's summary or failure, results.csv.

Runs live in SWEEP_DIR/runs/<cell-id>-s<seed>. A run whose summary.json exists is finished; one
with a failed.json of a result (a diverged loss, a bad option) is finished too; one the machine
stopped (a full disk, out of memory) is not, and the next `normlab compare` trains it again.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Optional

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write_text
from ..grid import Experiment, jobs_of, parse_grid

SUMMARY_COLUMNS = ("final_test_acc", "best_test_acc", "final_test_loss", "final_train_acc",
                   "final_train_loss", "wall_seconds", "parameters")



def read_experiment(out) -> Experiment:
    rec = Path(out) / "experiment.json"
    if not rec.is_file():
        raise ConfigError(f"{str(out)!r} is not a sweep directory (no experiment.json); "
                          f"create one with `normlab compare EXPERIMENT.yaml --out {out}`")
    d = read_experiment_json(rec)
    try:
        return parse_grid(d, source=str(rec))
    except ConfigError as exc:
        raise ConfigError(f"{exc} ({_DAMAGED_EXPERIMENT})") from None


_DAMAGED_EXPERIMENT = ("experiment.json records the sweep's experiment; restore it, or run `normlab compare "
                       "EXPERIMENT.yaml --out DIR` into a new folder")


def read_experiment_json(rec: Path) -> dict:
    try:
        d = json.loads(rec.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{str(rec)!r} is damaged ({exc}); {_DAMAGED_EXPERIMENT}") from None
    if not isinstance(d, dict) or not {"base", "factors", "seeds"} <= set(d):
        raise ConfigError(f"{str(rec)!r} is damaged (it lacks base, factors or seeds); {_DAMAGED_EXPERIMENT}")
    return d


def read_summary(run_dir: Path) -> Optional[dict]:
    """A run's summary.json as a dict; None if there is none; CheckpointError if it is damaged."""
    path = run_dir / "summary.json"
    if path.exists() and not path.is_file():  # a FIFO or a folder in its place: reading would block
        raise CheckpointError(f"{str(path)!r} is damaged (not a regular file)")
    try:
        s = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{str(path)!r} is damaged ({exc})") from None
    if not isinstance(s, dict):
        raise CheckpointError(f"{str(path)!r} is damaged (not a JSON object)")
    return s


def failure_record(run_dir: Path) -> Optional[dict]:
    """failed.json as a dict, None when there is none; a damaged one reads as an error record."""
    p = Path(run_dir) / "failed.json"
    if p.exists() and not p.is_file():
        return {"error": "failed.json is damaged (not a regular file)"}
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"error": f"failed.json is damaged ({exc})"}
    return d if isinstance(d, dict) else {"error": "failed.json is damaged (not a JSON object)"}


def is_finished(run_dir: Path) -> bool:
    """A readable summary.json, or a failed.json of a result (not of the machine): a damaged
    summary, or a run the machine stopped, is not a finished run."""
    if (run_dir / "failed.json").is_file():
        return (failure_record(run_dir) or {}).get("kind") != "machine"
    try:
        return read_summary(run_dir) is not None
    except CheckpointError:
        return False


def collect(out) -> list[dict]:
    """One row per run of the grid, finished or not: factors, seed, status, summary metrics."""
    out = Path(out)
    exp = read_experiment(out)
    rows = []
    for job in jobs_of(exp):
        run_dir = out / "runs" / job.name
        row = {"cell": job.cell.id, **job.cell.factors, "seed": job.seed, "status": "missing", "error": ""}
        row.update({k: None for k in SUMMARY_COLUMNS})
        row["run_dir"] = str(Path("runs") / job.name)
        try:
            s = read_summary(run_dir)
        except CheckpointError as exc:  # one damaged run must not sink the whole report
            row["status"] = "damaged"
            row["error"] = (f"{exc}; `normlab compare` on this folder finishes that run again from its "
                            f"checkpoint (or retrains it)")
            s = None
        if s is not None:
            row["status"] = "ok"
            row.update({k: s.get(k) for k in SUMMARY_COLUMNS})
        elif row["status"] == "missing" and (run_dir / "failed.json").is_file():
            rec = failure_record(run_dir) or {}
            row["status"] = "machine" if rec.get("kind") == "machine" else "failed"
            row["error"] = str(rec.get("error", ""))
        rows.append(row)
    return rows


def results_columns(exp: Experiment) -> list[str]:
    return ["cell", *exp.factors, "seed", "status", *SUMMARY_COLUMNS, "run_dir", "error"]


def write_results(out) -> Path:
    exp = read_experiment(out)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=results_columns(exp), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in collect(out):
        w.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    path = Path(out) / "results.csv"
    atomic_write_text(path, buf.getvalue())
    return path


def finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
