"""Named points where a test can stop or pause the process, to prove crash consistency.

Every write that matters (each file of an epoch's checkpoint, each rename, the end-of-run
files) passes a `point("...")`. Normally a point costs one comparison. Tests arm them:

  NORMLAB_CRASH_AT=N        os._exit(CRASH_EXIT) at the N-th point reached (1-based): no
                            finally blocks, no flushing, like a kill -9 at that instant
  NORMLAB_CRASH_AT=NAME#K   the same at the K-th time the point NAME is reached
  NORMLAB_PAUSE_AT=NAME#K   at that point write PAUSE_DIR/<pid>.paused, then wait until the
                            caller's stop event is set (a signal arrived) or forever; lets a
                            test send a signal at a known instant instead of racing a timer
  NORMLAB_PAUSE_DIR=DIR     where the .paused files go (default: the working directory)

`configure()` arms the same in-process (for a forked child) and can record the points reached.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional

CRASH_EXIT = 86  # distinct from signals' 128+n and from normlab's 1/2, so a test can tell

_crash: Optional[tuple] = None   # (name or None, k): None name counts every point
_pause: Optional[tuple] = None
_pause_dir = "."
_trace: Optional[list] = None
_seen: dict = {}
_total = 0


def _parse(spec: Optional[str]) -> Optional[tuple]:
    if not spec:
        return None
    if spec.isdigit():
        return None, int(spec)
    name, _, k = spec.partition("#")
    return name, int(k or 1)


def configure(crash: Optional[str] = None, pause: Optional[str] = None, pause_dir: Optional[str] = None,
              trace: Optional[list] = None) -> None:
    """Arm (or, with no arguments, disarm) the points in this process; counters restart."""
    global _crash, _pause, _pause_dir, _trace, _seen, _total
    _crash, _pause, _trace = _parse(crash), _parse(pause), trace
    _pause_dir = pause_dir or "."
    _seen, _total = {}, 0


def _matches(spec, name: str, k: int) -> bool:
    return spec is not None and (spec[1] == _total if spec[0] is None else spec[0] == name and spec[1] == k)


def point(name: str, stop: Optional[threading.Event] = None) -> None:
    global _total
    if _crash is None and _pause is None and _trace is None:
        return
    _total += 1
    k = _seen[name] = _seen.get(name, 0) + 1
    if _trace is not None:
        _trace.append(name)
    if _matches(_crash, name, k):
        os._exit(CRASH_EXIT)
    if _matches(_pause, name, k):
        marker = Path(_pause_dir) / f"{os.getpid()}.paused"
        marker.write_text(name + "\n")
        wait = stop or threading.Event()
        while not wait.wait(0.05):
            pass


configure(os.environ.get("NORMLAB_CRASH_AT"), os.environ.get("NORMLAB_PAUSE_AT"),
          os.environ.get("NORMLAB_PAUSE_DIR"))
