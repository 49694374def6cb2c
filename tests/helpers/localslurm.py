"""A private one-node SLURM cluster on this machine, for tests (and for trying the sweep commands).

Everything lives under one folder: its own munge key and socket, its own slurm.conf with free
ports, state and spool folders, pid and log files. Nothing in /etc is read or changed, and no
system service is touched, so two test sessions on one machine (or a system SLURM) do not meet.
Clients reach it through the environment of `LocalSlurm.env` (SLURM_CONF).

Needs root (slurmd launches jobs as their owner) and the Debian packages slurmctld, slurmd,
slurm-client and munge. By hand:

    python3 tests/helpers/localslurm.py /tmp/cluster     # starts it, prints the export, waits; Ctrl-C stops
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")
INSTALL = "apt-get install slurmctld slurmd slurm-client munge"


class SlurmUnavailable(RuntimeError):
    """SLURM cannot run here (not installed, not root): a reason to skip, not a failure."""


def why_unavailable() -> str | None:
    missing = [d for d in DAEMONS if shutil.which(d, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None]
    if missing:
        return f"SLURM is not installed (missing {', '.join(missing)}); on Debian: {INSTALL}"
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (slurmd launches the jobs); run the tests as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def wait_for(predicate, timeout: float, what: str, every: float = 0.5):
    """Poll until predicate() is truthy; the timeout is generous and only bounds a broken run."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class LocalSlurm:
    def __init__(self, root):
        self.root = Path(root)
        self.procs: dict[str, subprocess.Popen] = {}
        self.node = "normlab0"
        self.host = socket.gethostname().split(".")[0]  # slurmctld only runs on a host named in the conf

    # -------------------------------------------------------------- set-up
    def _write_config(self) -> None:
        r = self.root
        for d in ("munge-key", "munge", "state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge-key", 0o700)  # munged refuses a key others can read
        os.chmod(r / "munge", 0o755)      # ...and a socket folder others cannot enter
        (r / "spool" / self.node).mkdir(exist_ok=True)
        key = r / "munge-key" / "munge.key"
        key.write_bytes(os.urandom(128))  # what `mungekey --create` writes, without needing munge >= 0.5.14
        os.chmod(key, 0o600)
        cpus = min(os.cpu_count() or 1, 2)
        self.conf = r / "slurm.conf"
        self.conf.write_text(f"""\
ClusterName=normlabtest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={r / 'munge' / 'socket'}
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}/%n
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=3600
NodeName={self.node} NodeHostname={self.host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")

    @property
    def env(self) -> dict:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def _spawn(self, name: str, argv: list) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env, start_new_session=True)
        log.close()

    def _alive(self, name: str) -> None:
        p = self.procs[name]
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited with {p.returncode} while starting:\n{self.logs()}")

    def start(self, timeout: float = 120) -> "LocalSlurm":
        self._write_config()
        r = self.root
        self._spawn("munged", [_which("munged"), "--foreground", "--force",
                               f"--socket={r / 'munge' / 'socket'}", f"--key-file={r / 'munge-key' / 'munge.key'}",
                               f"--pid-file={r / 'munge' / 'munged.pid'}", f"--seed-file={r / 'munge' / 'seed'}",
                               f"--log-file={r / 'log' / 'munged.log'}"])
        wait_for(lambda: self._alive("munged") or (r / "munge" / "socket").exists(), timeout, "munged's socket")
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.conf)])
        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])

        def node_idle():
            for name in self.procs:
                self._alive(name)
            r = self.run("sinfo", "--noheader", "--format=%t", check=False)
            return r.returncode == 0 and r.stdout.strip() == "idle"

        try:
            wait_for(node_idle, timeout, "the SLURM node to come up idle")
        except Exception:
            self.stop()
            raise
        return self

    # -------------------------------------------------------------- use
    def run(self, *argv, check: bool = True, cwd=None) -> subprocess.CompletedProcess:
        r = subprocess.run([_which(argv[0]), *map(str, argv[1:])], capture_output=True, text=True, env=self.env,
                           cwd=cwd, timeout=120)
        if check and r.returncode:
            raise RuntimeError(f"{' '.join(map(str, argv))} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def sbatch(self, *argv, cwd, env: dict | None = None) -> str:
        """Submit; return the job id."""
        r = subprocess.run([_which("sbatch"), "--parsable", *map(str, argv)], capture_output=True, text=True,
                           env=dict(self.env, **(env or {})), cwd=cwd, timeout=120)
        if r.returncode:
            raise RuntimeError(f"sbatch {' '.join(map(str, argv))} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout.strip().split(";")[0]

    def tasks(self, job: str) -> dict:
        """{array task id: (state, exit code)} of an array job (kept MinJobAge=1 h after the end)."""
        out = self.run("scontrol", "show", "job", "--oneliner", job).stdout
        tasks = {}
        for line in out.splitlines():
            task = re.search(r"\bArrayTaskId=(\S+)", line)
            state = re.search(r"\bJobState=(\S+)", line)
            code = re.search(r"\bExitCode=(\S+)", line)
            tasks[task.group(1) if task else "-"] = (state.group(1), code.group(1))
        return tasks

    def wait_done(self, job: str, timeout: float = 600) -> dict:
        """Wait until no task of the job is pending or running; return tasks()."""
        def done():
            t = self.tasks(job)
            return t if t and not any(s in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED")
                                      for s, _ in t.values()) else None
        return wait_for(done, timeout, f"SLURM job {job} to finish")

    def logs(self) -> str:
        parts = []
        for f in sorted((self.root / "log").glob("*")):
            text = f.read_text(errors="replace")
            parts.append(f"--- {f.name}\n{text[-3000:]}")
        return "\n".join(parts)

    # -------------------------------------------------------------- tear-down
    def stop(self) -> None:
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user=root", check=False)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(60)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":  # pragma: no cover - a developer's helper
    if len(sys.argv) != 2:
        sys.exit("usage: python3 tests/helpers/localslurm.py DIR")
    reason = why_unavailable()
    if reason:
        sys.exit(reason)
    with LocalSlurm(sys.argv[1]) as cluster:
        print(f"export SLURM_CONF={cluster.conf}\n(Ctrl-C stops the cluster)", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
