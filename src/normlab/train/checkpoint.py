"""Training state for exact resume, saved atomically and loaded without executing code.

Weights go to safetensors (last.safetensors, best.safetensors). Everything else a resumed run
needs (optimizer and scheduler state, the RNG states of torch, numpy and Python, the data-order
generator, the epoch and step counters) goes to state.pt, written with torch.save but holding
only tensors and plain values, so it loads with `weights_only=True`: a file carrying a pickled
object is refused instead of executed.
"""

from __future__ import annotations

import io
import pickle
import random

import numpy as np
import torch

from ..errors import CheckpointError
from ..fileio import atomic_write_bytes

STATE_FILE = "state.pt"


def rng_state(data_generator: torch.Generator) -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
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


def save_state(path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path) -> dict:
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
