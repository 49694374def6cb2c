"""Worker processes for parallel sweeps: each dies with its parent, Ctrl-C and SIGTERM stop them all.

Worker processes die with the parent (parent-death signal, and a watch on the parent's pid where
that signal does not exist); Ctrl-C or SIGTERM stop them, keep what finished and let the sweep
write results.csv.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from . import jobs
from .jobs import KILLED, record_killed


def _worker_init(threads: int, parent: int) -> None:
    import torch

    jobs.IN_WORKER = True
    torch.set_num_threads(threads)
    # Ctrl-C reaches the whole process group; the parent decides what stops (it sends SIGTERM,
    # which the trainer turns into a stop at the next step).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """Make this process end when `parent` does, even after a kill -9 of the parent.

    Linux: the kernel sends SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG). Elsewhere,
    and for a parent that died before the prctl, a daemon thread watches the parent's pid.
    A worker killed this way loses at most its current epoch: checkpoints commit atomically."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="normlab-parent-watch").start()


def stop_workers(procs, grace: float = 5.0) -> None:
    """SIGTERM every worker (the trainer stops at the next step), SIGKILL those still alive
    after `grace` seconds; return when all are gone."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()


@contextmanager
def signals_interrupt():
    """SIGTERM, like SIGINT, raises KeyboardInterrupt in the parent, so both end in the same
    orderly stop (workers stopped, results written) instead of a silent death."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_parallel(work, jobs: int, record) -> None:
    """Train the units of `work` (seed_groups.units: one run, or one seed batch) `jobs` at a time."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from .seed_groups import run_unit

    # spawn: a fresh interpreter per worker, safe with torch's threads (fork is not).
    # An executor, not multiprocessing.Pool: when a worker dies (killed, out of memory) a
    # Pool waits forever for its task, while the executor fails the pending runs at once.
    pool = ProcessPoolExecutor(min(jobs, len(work)), mp_context=mp.get_context("spawn"),
                               initializer=_worker_init, initargs=(1, os.getpid()))
    killed = []
    try:
        futures = {pool.submit(run_unit, unit): unit for unit in work}
        for fut in as_completed(futures):
            names, cfgs, _ = futures[fut]
            try:
                results = fut.result()
            except BrokenProcessPool:  # killed: the machine's doing, not a result
                results = [(n, "machine", KILLED, 0.0) for n in names]
                killed += [Path(c["out"]) for c in cfgs]
            for name, status, err, secs in results:
                record(name, status, err, secs)
    except BaseException:
        workers = mp.active_children()
        pool.shutdown(wait=False, cancel_futures=True)
        stop_workers(workers)
        raise
    finally:
        pool.shutdown(wait=True)
    for out in killed:  # once every worker is gone, and with it the locks of the runs it held
        record_killed(out)
