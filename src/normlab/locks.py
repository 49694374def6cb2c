"""Exclusive locks that name their owner and vanish with it.

A lock is an advisory `flock` on a small file that holds the owner's pid. The kernel drops the
lock when the owner exits, however it exits (kill -9 included), so a lock is never stale and
never needs a timeout; the pid is only there to tell the user who holds it. The file itself is
left in place: unlinking a lock file while another process waits on it would let two owners in.
Where flock does not exist (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from .errors import NormlabError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class Locked(NormlabError):
    """Another live process holds the lock."""

    def __init__(self, path, pid):
        self.path, self.pid = Path(path), pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"{str(self.path.parent)!r} is in use by {who} (lock {self.path.name}); "
                         f"wait for it to finish or stop it, then run the command again")


@contextmanager
def hold(path):
    """Hold the lock at `path` for the `with` block; raise Locked at once if someone else has it."""
    path = Path(path)
    if fcntl is None:  # pragma: no cover
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(path, owner(path)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def owner(path):
    """The pid written in a lock file, or None."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
