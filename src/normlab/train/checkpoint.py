"""Training state for exact resume, saved atomically and loaded without executing code.

Weights go to safetensors (model, best and EMA weights of each epoch). Everything else a resumed run
needs (optimizer and scheduler state, the RNG states of torch, numpy and Python, the data-order
generator, the epoch and step counters, the metrics rows so far) goes to state.pt, written with torch.save but holding
only tensors and plain values, so it loads with `weights_only=True`: a file carrying a pickled
object is refused instead of executed.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import CheckpointError
from ..faults import point as fault_point
from ..fileio import fsync_dir, remove_temps

STATE_FILE = "state.pt"


def rng_state(data_generator: torch.Generator) -> dict:
    np_state: Any = np.random.get_state()  # the legacy tuple: (name, keys, pos, has_gauss, cached)
    py_state = random.getstate()
    state: dict[str, object] = {
        "torch": torch.get_rng_state(),
        "data": data_generator.get_state(),
        # numpy's state as plain values: (name, key array as a list, pos, has_gauss, cached)
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, data_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    data_generator.set_state(state["data"])
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_state(path, required=()) -> dict:
    """state.pt loaded without executing code; `required` keys checked so a damaged or foreign
    file is a one-line CheckpointError, not a KeyError later."""
    state = _load_state(path)
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{str(path)!r} is damaged or not a normlab state file: it lacks "
                              f"{', '.join(missing)}; this run cannot be resumed exactly: train it again")
    return state


def _load_state(path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{str(path)!r} is missing: this run has no saved training state to resume") from None
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {str(path)!r}: it carries pickled Python objects, which could run code "
            f"when loaded; normlab loads only tensors and plain values (weights_only=True). "
            f"Detail: {str(exc).splitlines()[0]}") from None
    except Exception as exc:
        raise CheckpointError(f"{str(path)!r} is corrupt or not a normlab state file: {exc}") from None


# ---------------------------------------------------------------- one commit point per epoch
# Everything an epoch leaves (weights, best weights, EMA, optimizer/scheduler/RNG state and the
# metrics rows so far) is written into a hidden temporary folder, which is then renamed to
# RUN/checkpoints/epoch-NNNN: that rename is the commit point. A folder with that name is
# complete by construction; anything else under checkpoints/ is debris of a killed write and is
# removed by the next run that holds the run's lock. metrics.csv at the top of the run is
# rewritten from the committed rows after each commit, and repaired from them on resume.
CHECKPOINTS = "checkpoints"
MODEL, BEST, EMA_FILE = "model.safetensors", "best.safetensors", "ema.safetensors"
STATE_KEYS = ("epoch", "step", "elapsed", "optimizer", "scheduler", "rng", "best_score", "best_epoch", "rows")
_EPOCH = re.compile(r"^epoch-(\d+)$")


@dataclass
class EpochCheckpoint:
    epoch: int
    path: Path
    state: dict

    def weights(self, name: str = MODEL) -> dict:
        return _read_weights(self.path / name)


def epoch_dir(run, epoch: int) -> Path:
    return Path(run) / CHECKPOINTS / f"epoch-{epoch:04d}"


def commit_epoch(run, epoch: int, model: dict, state: dict, best: Optional[dict] = None,
                 ema: Optional[dict] = None) -> Path:
    """Write epoch `epoch` of the run at `run` and make it visible in one rename.

    `model`, `best`, `ema` are state_dicts (`best` only when this epoch is the new best: else the
    previous epoch's best weights are hard-linked in); `state` holds STATE_KEYS. On return the
    epoch is committed, metrics.csv agrees with it and earlier epochs are gone. A failed write
    raises CheckpointError; the previously committed epoch is then untouched."""
    ck = Path(run) / CHECKPOINTS
    final = epoch_dir(run, epoch)
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"commit_epoch: state lacks {missing}")
    if final.exists():
        raise CheckpointError(f"{str(final)!r} exists already; refusing to overwrite a committed epoch")
    tmp, doing = ck / f".{final.name}.{secrets.token_hex(4)}.tmp", "creating its folder"
    try:
        ck.mkdir(exist_ok=True)
        tmp.mkdir()
        fault_point("commit mkdir")
        files = {MODEL: model, **({EMA_FILE: ema} if ema is not None else {}), **({BEST: best} if best else {})}
        for name, sd in files.items():
            doing = f"writing {name}"
            _write_new(tmp / name, _safetensors_bytes(sd))
            fault_point(f"commit {name}")
        doing = f"writing {BEST}"
        if not best:
            previous = last_epoch_dir(run)
            if previous is None or not (previous / BEST).is_file():
                raise CheckpointError(f"no best weights to carry into epoch {epoch} (the previous epoch is missing)")
            _link_or_copy(previous / BEST, tmp / BEST)
            fault_point(f"commit {BEST} link")
        buf = io.BytesIO()
        torch.save(state, buf)
        doing = f"writing {STATE_FILE}"
        _write_new(tmp / STATE_FILE, buf.getvalue())
        fault_point(f"commit {STATE_FILE}")
        fsync_dir(tmp)
        fault_point("commit before-rename")
        doing = "renaming it into place"
        os.rename(tmp, final)
        fault_point("commit after-rename")
        fsync_dir(ck)
        fault_point("commit synced")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        before = last_epoch_dir(run)
        kept = f"epoch {_epoch_of(before)} in {str(before)!r} is intact" if before else "no epoch had been saved yet"
        reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
        err = CheckpointError(f"saving epoch {epoch} failed {doing} in {str(ck)!r}: {reason}; nothing earlier was "
                              f"lost ({kept}); free some space or fix the folder's permissions, then "
                              f"`normlab train --resume {run}`")
        err.errno = exc.errno  # the machine's failure, not the run's (a sweep retries it)
        raise err from None
    after_commit(run, state)
    return final


def after_commit(run, state: dict) -> None:
    """metrics.csv rewritten from the committed rows, then the older epochs and debris removed.
    Both are derived from the last committed epoch, so a crash part-way is repaired by resume."""
    write_metrics_csv(run, state["rows"], state.get("columns"))
    fault_point("commit metrics.csv")
    remove_debris(run, keep=state["epoch"])
    fault_point("commit cleaned")


def last_epoch_dir(run) -> Optional[Path]:
    ck = Path(run) / CHECKPOINTS
    if not ck.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in ck.iterdir() if (m := _EPOCH.match(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


def load_last_complete_epoch(run, ema: bool = False) -> Optional[EpochCheckpoint]:
    """The last committed epoch of the run, checked in full; None if no epoch was committed.

    Raises CheckpointError with what to do if that epoch's files are damaged (which no crash of
    normlab's can cause: only an outside hand)."""
    path = last_epoch_dir(run)
    if path is None:
        return None
    epoch = int(_EPOCH.match(path.name).group(1))  # type: ignore[union-attr]  # last_epoch_dir matched it
    need = [MODEL, BEST, STATE_FILE] + ([EMA_FILE] if ema else [])
    missing = [n for n in need if not (path / n).is_file()]
    if missing:
        raise CheckpointError(f"{str(path)!r} lacks {', '.join(missing)} (changed by hand?); this run cannot "
                              f"be resumed exactly: train it again with a new --out")
    state = load_state(path / STATE_FILE, required=STATE_KEYS)
    if state["epoch"] != epoch or [r.get("epoch") for r in state["rows"]] != list(range(1, epoch + 1)):
        raise CheckpointError(f"{str(path / STATE_FILE)!r} does not describe epoch {epoch} (changed by hand?); "
                              f"this run cannot be resumed exactly: train it again with a new --out")
    return EpochCheckpoint(epoch, path, state)


def remove_debris(run, keep: Optional[int] = None) -> list[str]:
    """Remove what killed writes left (temporary files and folders) and every committed epoch
    but `keep`. Only for a run whose lock this process holds."""
    run = Path(run)
    removed = remove_temps(run) if run.is_dir() else []
    ck = run / CHECKPOINTS
    if not ck.is_dir():
        return removed
    for p in sorted(ck.iterdir()):
        m = _EPOCH.match(p.name)
        if m and (keep is None or int(m.group(1)) == keep):
            continue
        if m:  # renamed away first, so a crash mid-delete never leaves a half epoch under a complete name
            gone = ck / f".{p.name}.{secrets.token_hex(4)}.old"
            os.rename(p, gone)
            p = gone
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p.name)
    return removed


def write_metrics_csv(run, rows: list, columns=None) -> None:
    from ..rundir import METRIC_COLUMNS, RunDir

    RunDir(run).write_metrics(rows, columns or METRIC_COLUMNS)


def _epoch_of(path: Optional[Path]) -> Optional[int]:
    if path is None:
        return None
    m = _EPOCH.match(path.name)
    assert m is not None, path  # only folders named epoch-N are ever passed here
    return int(m.group(1))


def _safetensors_bytes(sd: dict) -> bytes:
    from safetensors.torch import save as st_save

    return st_save({k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()})


def _read_weights(path: Path) -> dict:
    from safetensors.torch import load as st_load

    try:
        return st_load(path.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{str(path)!r} is missing") from None
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{str(path)!r} is corrupt or not a safetensors file: {exc}") from None


def _write_new(path: Path, data: bytes) -> None:
    """A new file inside the (still hidden) epoch folder: no rename needed, the folder's is the commit."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # the best weights are unchanged: share them, no copy
    except OSError:
        shutil.copyfile(src, dst)
