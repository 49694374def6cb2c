"""A sweep on a real SLURM cluster: a private one-node cluster (munged, slurmctld, slurmd) runs the
array job of docs/distributed.md (scripts/slurm/compare-array.sbatch); the merged report must equal
a local `normlab compare` of the same grid, every run trained exactly once, also when an array
task is killed mid-cell and resubmitted.

Skipped where SLURM cannot start (not installed, not root), unless NORMLAB_REQUIRE_SLURM=1 (CI
sets it), where that is a failure. Nothing waits on the clock: every wait polls a state with a
generous timeout that only bounds a broken run."""

import csv
import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from normlab import grid
from normlab.experiments import spec, sweep

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm" / "compare-array.sbatch"
HANG = ROOT / "tests" / "helpers" / "hang_normlab.py"
_spec = importlib.util.spec_from_file_location("localslurm", ROOT / "tests" / "helpers" / "localslurm.py")
localslurm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(localslurm)

EXP = ROOT / "scripts" / "slurm" / "smoke.yaml"  # 2x2 cells x 2 seeds of a tiny model
SHARDS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = localslurm.why_unavailable()
    if reason:
        if os.environ.get("NORMLAB_REQUIRE_SLURM") == "1":
            pytest.fail(f"NORMLAB_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    with localslurm.LocalSlurm(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def normlab_cmd(*args, cwd):
    return subprocess.run([sys.executable, "-m", "normlab", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The reference: the same grid by one `normlab compare` on this machine."""
    d = tmp_path_factory.mktemp("local")
    r = normlab_cmd("compare", EXP, "--out", "sweep", cwd=d)
    assert r.returncode == 0, r.stderr[-3000:]
    return d / "sweep"


def put_normlab_on_path(d: Path, *argv) -> dict:
    """A `normlab` command first on PATH (what an activated venv gives): runs argv + its arguments."""
    (d / "bin").mkdir()
    shim = d / "bin" / "normlab"
    shim.write_text("#!/bin/sh\nexec " + " ".join(f"'{a}'" for a in argv) + ' "$@"\n')
    shim.chmod(0o755)
    return {"PATH": f"{d / 'bin'}:{os.environ['PATH']}"}


def without_seconds(report_md: str) -> str:
    """report.md minus its timing column (wall seconds differ between any two runs) and the
    minute the report was written (two reports a minute apart are the same report)."""
    lines, drop = [], None
    report_md = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "DATE UTC", report_md)
    for line in report_md.splitlines():
        if not line.startswith("|"):
            drop = None
            lines.append(line)
            continue
        cells = line.split("|")
        if drop is None:
            drop = cells.index(" seconds ") if " seconds " in cells else -1
        if drop >= 0:
            del cells[drop]
        lines.append("|".join(cells))
    return "\n".join(lines)


def results(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "results.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in csv.DictReader(f)]


def assert_same_report(sweep_dir: Path, local: Path):
    rows = results(sweep_dir)
    names = [Path(r["run_dir"]).name for r in rows]
    assert len(names) == len(set(names)) == 8 and all(r["status"] == "ok" for r in rows), rows
    assert sorted(p.name for p in (sweep_dir / "runs").iterdir()) == sorted(names)  # no stray run folder
    assert rows == results(local)
    assert without_seconds((sweep_dir / "report.md").read_text()) == without_seconds((local / "report.md").read_text())
    assert "| seconds |" in (local / "report.md").read_text()  # the column dropped above still exists


def trained(d: Path) -> list[str]:
    """Every run name an array task logged as trained, over all task logs."""
    return [m for f in sorted(d.glob("normlab-compare-*.out"))
            for m in re.findall(r"^  (\S+): done in", f.read_text(), re.M)]


def shard_runs(i: int) -> list[str]:
    exp = spec.load_experiment(EXP)
    return [j.name for j in grid.jobs_of(exp, sweep.shard_cells(grid.expand(exp), i, SHARDS))]


def report(d: Path):
    r = normlab_cmd("report", "sweep", cwd=d)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_array_job_equals_a_local_compare(cluster, local_sweep, tmp_path):
    env = put_normlab_on_path(tmp_path, sys.executable, "-m", "normlab")
    # the line of docs/distributed.md, with N=2
    job = cluster.sbatch("--array=1-2", SCRIPT, EXP, "sweep", SHARDS, cwd=tmp_path, env=env)
    tasks = cluster.wait_done(job)
    logs = "".join(f.read_text() for f in tmp_path.glob("*.out"))
    assert tasks == {"1": ("COMPLETED", "0:0"), "2": ("COMPLETED", "0:0")}, logs + cluster.logs()
    assert sorted(trained(tmp_path)) == sorted(shard_runs(1) + shard_runs(2))  # each run once, by its shard
    assert sorted(trained(tmp_path)) == sorted(p.name for p in (local_sweep / "runs").iterdir())
    report(tmp_path)
    assert_same_report(tmp_path / "sweep", local_sweep)


def test_a_task_killed_mid_cell_is_resubmitted_without_duplicate_or_missing_runs(cluster, local_sweep, tmp_path):
    # compare trains a cell's seeds together (seed batching, on by default for the mlp): the task
    # is killed in the middle of its second cell, after the first cell's two runs finished
    runs = shard_runs(2)
    done, killed = runs[:2], runs[2:]
    marker = tmp_path / "hung.pid"
    env = put_normlab_on_path(tmp_path, sys.executable, HANG)
    env.update(HANG_TASK="2", HANG_MARKER=str(marker), HANG_AFTER=str(tmp_path / "sweep" / "runs" / killed[0]))
    job = cluster.sbatch("--array=1-2", SCRIPT, EXP, "sweep", SHARDS, cwd=tmp_path, env=env)
    pid = int(localslurm.wait_for(lambda: marker.is_file() and marker.read_text(), 600, "task 2 to reach its hang"))
    sweep_runs = tmp_path / "sweep" / "runs"
    assert all((sweep_runs / r / "summary.json").is_file() for r in done)
    assert all((sweep_runs / r).is_dir() and not (sweep_runs / r / "summary.json").exists() for r in killed)
    os.kill(pid, signal.SIGKILL)  # the worker dies as under the OOM killer
    tasks = cluster.wait_done(job)
    assert tasks["1"] == ("COMPLETED", "0:0") and tasks["2"] == ("FAILED", "0:9"), tasks

    partial = report(tmp_path)
    assert "2 runs of the grid have not finished" in partial.stderr
    status = {Path(r["run_dir"]).name: r["status"] for r in results(tmp_path / "sweep")}
    assert {n for n, s in status.items() if s != "ok"} == set(killed)

    # resubmit the lost task by hand: the same line, --array=its id
    again = cluster.sbatch("--array=2", SCRIPT, EXP, "sweep", SHARDS, cwd=tmp_path, env=env)
    assert cluster.wait_done(again) == {"2": ("COMPLETED", "0:0")}
    log = (tmp_path / f"normlab-compare-{again}_2.out").read_text()
    assert "2 runs to train, 2 already finished (shard 2/2" in log
    assert sorted(trained(tmp_path)) == sorted(shard_runs(1) + shard_runs(2))  # the killed runs counted once
    report(tmp_path)
    assert_same_report(tmp_path / "sweep", local_sweep)


def test_a_wrong_submission_fails_its_task_with_the_reason(cluster, tmp_path):
    env = put_normlab_on_path(tmp_path, sys.executable, "-m", "normlab")
    no_n = cluster.sbatch("--array=1", SCRIPT, EXP, "sweep", cwd=tmp_path, env=env)
    past_n = cluster.sbatch("--array=3", SCRIPT, EXP, "sweep", SHARDS, cwd=tmp_path, env=env)
    assert cluster.wait_done(no_n) == {"1": ("FAILED", "2:0")}
    assert cluster.wait_done(past_n) == {"3": ("FAILED", "2:0")}
    assert "usage: sbatch --array=1-N compare-array.sbatch EXPERIMENT SWEEP_DIR N" in \
        (tmp_path / f"normlab-compare-{no_n}_1.out").read_text()
    assert "normlab compare: error: shard must be i/n with 1 <= i <= n, e.g. 1/4, got '3/2'" in \
        (tmp_path / f"normlab-compare-{past_n}_3.out").read_text()
    assert not (tmp_path / "sweep" / "runs").exists() or not any((tmp_path / "sweep" / "runs").iterdir())
