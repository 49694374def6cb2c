"""One run of a sweep, trained while holding its lock, ending in summary.json or failed.json.

Whoever trains a run holds its lock, SWEEP_DIR/.locks/<run>.lock (locks.py): a second `compare`
on the same folder skips the runs another live process is training instead of deleting them.
A run folder without a summary was interrupted and is resumed from its last committed epoch
(bit-identical to training it in one go) or, where it has none, started over.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Optional

from ..analysis.results import is_finished
from ..errors import NormlabError
from ..fileio import atomic_write_json, atomic_write_text
from ..locks import Locked
from ..locks import hold as hold_lock
from ..train import checkpoint
from ..train.trainer import train

# Set in worker processes (workers.py): a Ctrl-C there leaves at once, the parent reports.
IN_WORKER = False

def _silent(*_a, **_k):
    pass


def lock_path(run_dir: Path) -> Path:
    return run_dir.parent.parent / ".locks" / f"{run_dir.name}.lock"


# errno values that say the machine stopped a run (a full disk, a folder it may not write, a
# failing device), not the experiment.
MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO,
                  errno.ENOMEM}


KILLED = ("a worker process died (killed, or out of memory?) before this run finished; "
          "run the same command again to train only the missing runs")


def machine_failure(exc: BaseException) -> Optional[str]:
    """The one-line reason when `exc` comes from the machine (disk full or unwritable, out of
    memory), else None: such a run is not a result of the experiment and is trained again on the
    next `compare`, whereas a diverged loss or a bad option is a result and is kept."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or \
            isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"out of memory ({first})"
    code = getattr(exc, "errno", None)  # OSError, WriteError, and a CheckpointError that records it
    if code in MACHINE_ERRNOS:
        return one_line(exc)
    return None


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, NormlabError) else text


def record_failure(out: Path, record: dict) -> None:
    """failed.json, best effort: on a full disk it may not be writable, and the run is then simply
    not finished (trained again by the next `compare`)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "failed.json", record)
    except OSError:
        pass


def record_killed(out: Path) -> None:
    """Mark a run whose worker died as the machine's failure, unless someone else has taken it
    over meanwhile (its lock) or it finished after all."""
    try:
        with hold_lock(lock_path(out)):
            if out.is_dir() and not is_finished(out):
                record_failure(out, {"error": KILLED, "kind": "machine"})
    except (Locked, OSError):
        pass


def run_job(cfg: dict) -> tuple[str, str, Optional[str], float]:
    """Train one run (in this process or a worker) while holding its lock.

    Returns (out, status, message, seconds) with status "done", "failed" (message: why; a result,
    such as a diverged loss), "machine" (message: why; a full disk, out of memory: not a result,
    trained again by the next `compare`), "skipped" (finished by another process meanwhile) or
    "busy" (message: who is training it). failed.json holds the one-line message; a bug's
    traceback goes to traceback.txt beside it.
    """

    t0 = time.perf_counter()
    out = Path(cfg["out"])
    try:
        with hold_lock(lock_path(out)):
            if is_finished(out):
                return str(out), "skipped", None, 0.0
            try:
                if (out / "failed.json").is_file():  # the machine's failure of an earlier try: try again
                    (out / "failed.json").unlink()
                if _resumable(out):  # interrupted part-way: continue from its last epoch (exact)
                    train({k: cfg[k] for k in ("threads",) if k in cfg}, log=_silent, resume=out)
                else:
                    if out.exists():  # nothing usable in it, and nobody holds it: start that run over
                        shutil.rmtree(out)
                    train(cfg, log=_silent)
                return str(out), "done", None, time.perf_counter() - t0
            except KeyboardInterrupt:
                if IN_WORKER:  # stopped by the parent: leave at once, the parent reports
                    os._exit(130)
                raise
            except Exception as exc:
                why = machine_failure(exc)
                if why is not None:
                    record_failure(out, {"error": why, "kind": "machine"})
                    return str(out), "machine", why, time.perf_counter() - t0
                msg = one_line(exc)
                record = {"error": msg, "kind": "result" if isinstance(exc, NormlabError) else "bug"}
                record_failure(out, record)
                if record["kind"] == "bug":  # one run's bug cannot sink the sweep; its traceback is kept
                    try:
                        atomic_write_text(out / "traceback.txt", traceback.format_exc(limit=8))
                    except OSError:
                        pass
                return str(out), "failed", msg, time.perf_counter() - t0
    except Locked as exc:
        return str(out), "busy", f"being trained by process {exc.pid or '?'}; left alone", 0.0
    except OSError as exc:  # the lock itself could not be taken (its folder full or unwritable)
        return str(out), "machine", f"could not take the run's lock {str(lock_path(out))!r}: {one_line(exc)}", 0.0


def _resumable(out: Path) -> bool:
    """A run folder holding its config and an intact committed epoch: resuming it gives exactly
    what training it again would (train/checkpoint.py), for less."""

    try:
        saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
        return checkpoint.load_last_complete_epoch(out, ema=saved.get("ema") is not None) is not None
    except (OSError, ValueError, AttributeError, NormlabError):
        return False
