"""Atomic file writes: a crash mid-write leaves the previous file intact.

Write to a temporary file in the same folder (so os.replace stays on one filesystem and is
atomic), flush and fsync it, then replace the target. The temporary file is created with mode
0o666 and the user's umask applies, as for any file a program creates (tempfile.mkstemp would
make every file 0o600, unreadable by a colleague on a shared folder).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Union

from .errors import WriteError
from .faults import point as fault_point

PathLike = Union[str, os.PathLike]
TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what atomic writes leave behind when killed


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise WriteError(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fault_point(f"before-rename {path.name}")
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(path, exc) from None
        raise
    fault_point(f"after-rename {path.name}")


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def fsync_dir(path: PathLike) -> None:
    """Make a rename inside `path` durable (a power cut after it keeps it); a no-op where
    folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temps(folder: PathLike) -> list[str]:
    """Delete the temporary files that killed atomic writes left in `folder`; their names.
    Only for a folder this process owns (holds its lock): a live writer's file would vanish."""
    removed = []
    for p in Path(folder).iterdir():
        if TEMP.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed
