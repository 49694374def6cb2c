"""A warm `normlab` for running the docs' commands: torch imported once, each command forked from it.

Importing torch takes about 2.5 s of the 3-4 s a short `normlab ...` command costs, and the docs
run about 80 of them. So scripts/doc_commands.py starts one server per page (`serve`), which
imports torch and nothing of normlab, and the page's `normlab` shim is this file's client
(`client`): it hands the server its argv, working directory, environment and its stdin, stdout
and stderr (file descriptors over a Unix socket), the server forks, and the child runs
`python -m normlab ...` there: normlab itself is imported fresh by every command, with that
command's environment, as a cold start would.

The child is the same program as a cold `python -m normlab` except that torch was imported
before the command's environment was set. So the client runs the command cold whenever that could
matter: no server, an environment that differs from the server's in a variable read at import
time (PYTHON*, OMP_*, MKL_*, KMP_*, GOMP_*, TORCH*, PYTORCH_*, CUDA*, LD_*), or a server that is
no longer single-threaded (forking a process with threads is unsafe).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import socket
import struct
import sys

COLD = -1000  # the reply that tells the client to run the command itself
IMPORT_TIME = ("PYTHON", "OMP_", "MKL_", "KMP_", "GOMP_", "TORCH", "PYTORCH_", "CUDA", "LD_")


def _import_time_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME)}


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = conn.recv(n - len(buf))
        if not part:
            raise ConnectionError("client went away")
        buf += part
    return buf


def _fresh_random_state() -> None:
    """A cold interpreter seeds Python's and numpy's global generators from the OS: so must every
    child, or all commands would draw the server's numbers."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()


def _run_command(request: dict, fds: list[int]) -> None:
    """In the forked child: become `python -m normlab ARGS` in the client's place; never returns."""
    import runpy
    import threading
    import traceback

    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = os.getcwd()  # what `python -m` puts first
        _fresh_random_state()
        sys.argv = ["normlab", *request["argv"]]
        try:
            runpy.run_module("normlab", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:  # what an uncaught exception does to a cold interpreter
            traceback.print_exc()
            code = 1
        threading._shutdown()  # join non-daemon threads, as interpreter exit does
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def serve(path: str) -> None:
    import torch  # noqa: F401  (the point of the server: the slow import, once)

    reference = _import_time_env(os.environ)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".tmp")
    server.listen(64)
    os.replace(path + ".tmp", path)  # the socket appears only once it accepts
    waiting: dict[int, socket.socket] = {}  # child pid -> its client's connection
    while True:
        ready, _, _ = select.select([server], [], [], 0.05)
        if ready:
            conn, _ = server.accept()
            try:
                msg, fds, _, _ = socket.recv_fds(conn, 4, 3)
                request = json.loads(_recv_exactly(conn, struct.unpack("!I", msg)[0]))
            except (OSError, ValueError, ConnectionError, struct.error):
                conn.close()
                continue
            alone = len(os.listdir("/proc/self/task")) == 1 if os.path.isdir("/proc/self/task") else False
            if not alone or _import_time_env(request["env"]) != reference or len(fds) != 3:
                try:
                    conn.sendall(struct.pack("!i", COLD))
                except OSError:  # the client is gone: nothing to run
                    pass
                conn.close()
                for fd in fds:
                    os.close(fd)
                continue
            pid = os.fork()
            if pid == 0:
                server.close()
                conn.close()
                _run_command(request, fds)
            for fd in fds:
                os.close(fd)
            waiting[pid] = conn
        for pid in list(waiting):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                conn = waiting.pop(pid)
                try:
                    conn.sendall(struct.pack("!i", os.waitstatus_to_exitcode(status)))
                except OSError:
                    pass
                conn.close()


def start(path, env: dict, wait: float = 60.0):
    """A server on socket `path` (a subprocess.Popen in its own process group), once it accepts;
    after `wait` seconds or if it dies, returned anyway: clients then run their commands cold."""
    import subprocess
    import time

    server = subprocess.Popen([sys.executable, __file__, "serve", str(path)], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait
    while not os.path.exists(path) and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


def stop(server) -> None:
    """End a server and its process group (a command still running goes with it)."""
    import signal

    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait()


def client(path: str, argv: list[str]) -> None:
    def cold():
        os.execv(sys.executable, [sys.executable, "-m", "normlab", *argv])

    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        socket.send_fds(conn, [struct.pack("!I", len(request))], [0, 1, 2])
        conn.sendall(request)
        reply = _recv_exactly(conn, 4)
    except (OSError, ConnectionError):
        cold()
    (code,) = struct.unpack("!i", reply)
    if code == COLD:
        cold()
    if code < 0:  # killed by a signal: die of the same one
        import signal

        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    mode, path, *rest = sys.argv[1:]
    serve(path) if mode == "serve" else client(path, rest)
