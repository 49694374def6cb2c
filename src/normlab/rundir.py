"""The run directory: what a training run leaves behind, in plain formats.

  config.json          the fully resolved TrainConfig
  preprocess.json      input shape, class names and the normalization fitted on the train split
  metrics.csv          one row per epoch (METRIC_COLUMNS, then test_top5 / val_loss / val_acc
                       where they apply)
  checkpoints/epoch-N/ the last committed epoch (train/checkpoint.py): model, best and EMA weights,
                       state.pt with optimizer, scheduler, RNG states for --resume
  summary.json         final/best accuracy, wall time, parameter count, versions, seed
  weights.safetensors  the model's state_dict
  curves.png           loss and accuracy against epoch
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import CheckpointError, ConfigError
from .fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
                  "epoch_seconds", "elapsed_seconds", "examples_per_s"]
REQUIRED = ("config.json", "preprocess.json", "weights.safetensors")


class RunDir:
    def __init__(self, path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ---- creating
    @classmethod
    def refuse_unusable(cls, path) -> Path:
        """Refuse a --out that is a file or holds an interrupted run, before anything is written."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise ConfigError(f"out: {str(p)!r} exists and is not a directory; choose another --out")
        if p.is_dir() and (p / "config.json").is_file() and not (p / "summary.json").is_file():
            raise ConfigError(f"out: {str(p)!r} holds an interrupted run; continue it with "
                              f"`normlab train --resume {p}` or choose another --out (nothing there was changed)")
        return p

    @classmethod
    def create(cls, path, ignore=()) -> "RunDir":
        p = cls.refuse_unusable(path)
        if p.is_dir() and any(q.name not in ignore for q in p.iterdir()):
            raise ConfigError(f"out: run directory {str(p)!r} already exists and is not empty; "
                              f"choose another --out (nothing there was changed)")
        p.mkdir(parents=True, exist_ok=True)
        return cls(p)

    def write_json(self, name: str, obj) -> None:
        atomic_write_json(self / name, obj)

    def write_metrics(self, rows: list[dict], columns=METRIC_COLUMNS) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in columns})
        atomic_write_text(self / "metrics.csv", buf.getvalue())

    def save_weights(self, state_dict: dict, name: str = "weights.safetensors") -> None:
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
        atomic_write_bytes(self / name, st_save(tensors))

    # ---- reading
    @classmethod
    def open(cls, path, required=REQUIRED) -> "RunDir":
        p = Path(path)
        if not p.is_dir():
            raise CheckpointError(f"run directory {str(p)!r} does not exist")
        missing = [n for n in required if not (p / n).is_file()]
        if missing:
            raise CheckpointError(
                f"{str(p)!r} is not a complete run directory: missing {', '.join(missing)} "
                f"(a run writes these when it finishes; was it interrupted or is this the wrong folder?)")
        return cls(p)

    def read_json(self, name: str) -> dict:
        try:
            return json.loads((self / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{str(self / name)!r} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{str(self / name)!r} is corrupt ({exc}); re-run training") from None

    def read_metrics(self) -> list[dict]:
        p = self / "metrics.csv"
        if not p.is_file():
            return []
        try:
            with p.open(newline="", encoding="utf-8") as f:
                rows = [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
            if any(None in r or not isinstance(r.get("epoch"), int) for r in rows):
                raise ValueError("a row has extra fields or no epoch number")
            return rows
        except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as exc:
            raise CheckpointError(f"{str(p)!r} is damaged ({exc})") from None

    def load_weights(self, name: str = "weights.safetensors") -> dict[str, torch.Tensor]:
        try:
            return st_load((self / name).read_bytes())
        except FileNotFoundError:
            raise CheckpointError(f"{str(self / name)!r} is missing") from None
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise CheckpointError(f"{str(self / name)!r} is corrupt or not a safetensors file: {exc}") from None


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _parse(v: Optional[str]):
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        return float(v)


def link_latest(path) -> None:
    """Point PARENT/latest at a new run folder, so the newest run made without --out is always
    `runs/latest`. A relative symlink, swapped in by rename (a reader never sees it missing);
    where the file system has no symlinks, or a real `latest` is there, nothing is done."""
    path = Path(path)
    link = path.parent / "latest"
    if link.exists() and not link.is_symlink():
        return
    tmp = path.parent / f".latest.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(path.name, tmp)
        os.replace(tmp, link)
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
