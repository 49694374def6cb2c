"""Ablation sweeps: grid expansion, pairing, shards, resume, the report (its statistics: test_paired.py)."""

import base64
import csv
import json
import os
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import normlab
from normlab import ConfigError, NormlabError
from normlab import grid
from normlab.analysis import report, results
from normlab.experiments import jobs, spec, sweep
from normlab.cli import main

BASE = {"dataset": "digits", "model": "mlp", "epochs": 1, "width": 16, "depth": 1, "device": "cpu",
        "batch_size": 128}


def quiet(*_):
    pass


def exp_of(factors, seeds=2, **base):
    return spec.parse_experiment({"base": dict(BASE, **base), "factors": factors, "seeds": seeds})


# ------------------------------------------------------------------ grid
def test_grid_expansion_order_ids_and_configs():
    exp = exp_of({"norm": ["bn", "none"], "dropout": [0.0, 0.5, 0.2]}, seeds=3)
    cells = grid.expand(exp)
    assert [c.factors for c in cells] == [{"norm": n, "dropout": d} for n in ("bn", "none") for d in (0.0, 0.5, 0.2)]
    assert cells[0].id == "norm=bn,dropout=0.0"  # the baseline: first level of every factor
    assert len({c.id for c in cells}) == 6
    jobs = grid.jobs_of(exp)
    assert len(jobs) == 18 and [j.seed for j in jobs[:3]] == [0, 1, 2]
    cfg = grid.cell_config(exp, cells[4], 2, "x")
    assert cfg == dict(BASE, norm="none", dropout=0.5, seed=2, progress=False, out="x")
    assert exp_of({"lr": [0.1]}, seeds=[7, 3]).seeds == [7, 3]


@pytest.mark.parametrize("data,message", [
    ({"base": BASE, "factors": {"nrom": ["bn"]}},
     "unknown factor in experiment: 'nrom'. Did you mean 'norm'?"),
    ({"base": BASE, "factors": {"norm": []}},
     "experiment: factor 'norm' must be a non-empty list of levels, got []"),
    ({"base": dict(BASE, seed=3), "factors": {}},
     "experiment: 'seed' cannot be set in an experiment (give the seeds with the top-level `seeds:` key)"),
    ({"base": BASE, "factors": {"norm": ["bn", "xx"]}},
     "experiment: cell norm=xx: unknown norm 'xx'. Valid choices: bn, brn, evob0, evos0, evos0:G, frn, gbn, gbn:V, gn, gn+ws, gn:G, gn:G+ws, in, in-affine, ln, ln-chw, ln2d, lrn, noisy-bn, none, rms, wn, ws."),
    ({"base": BASE, "seeds": 0}, "experiment: seeds must be a count >= 1 or a list of integers, got 0"),
    ({"base": BASE, "factor": {}}, "unknown key in experiment: 'factor'. Did you mean 'factors'?"),
    ({"base": ["dataset", "digits"]}, "experiment: base and factors must be mappings of option: value"),
])
def test_bad_experiments_are_refused_before_training(data, message):
    with pytest.raises(ConfigError) as err:
        spec.parse_experiment(data)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_shards_partition_the_cells(n):
    exp = exp_of({"norm": ["bn", "gn", "ln"], "dropout": [0.0, 0.5]})
    cells = grid.expand(exp)
    shards = [sweep.shard_cells(cells, i, n) for i in range(1, n + 1)]
    flat = [c.id for s in shards for c in s]
    assert sorted(flat) == sorted(c.id for c in cells)  # every cell in exactly one shard
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert sweep.parse_shard("2/5") == (2, 5)
    for bad in ("0/3", "4/3", "1-3", "a/b"):
        with pytest.raises(ConfigError, match=r"shard must be i/n with 1 <= i <= n, e.g. 1/4, got"):
            sweep.parse_shard(bad)


# ------------------------------------------------------------------ running
def test_paired_seeds_share_initial_weights_and_data_order(tmp_path):
    # eval_batch_size cannot change training, so with paired seeds the two arms must end with
    # bit-identical weights, and two seeds of one arm must not.
    exp = exp_of({"eval_batch_size": [100, 50]}, seeds=2)
    sweep.run_sweep(exp, tmp_path, log=quiet)
    w = {p.name: load_file(p / "weights.safetensors") for p in (tmp_path / "runs").iterdir()}
    a, b = w["eval_batch_size=100-s0"], w["eval_batch_size=50-s0"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(w["eval_batch_size=100-s1"][k], w["eval_batch_size=50-s1"][k]) for k in a)
    assert not torch.equal(a["classifier.weight"], w["eval_batch_size=100-s1"]["classifier.weight"])


def test_resume_runs_only_unfinished_runs_and_shards_merge(tmp_path):
    exp = exp_of({"norm": ["bn", "none"]}, seeds=2)
    first = sweep.run_sweep(exp, tmp_path, shard=(1, 2), log=quiet)
    assert first.ran == ["norm=bn-s0", "norm=bn-s1"] and not first.skipped
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok", "missing", "missing"]
    # A worker killed mid-run leaves a run directory without summary.json.
    (tmp_path / "runs" / "norm=bn-s1" / "summary.json").unlink()
    kept = (tmp_path / "runs" / "norm=bn-s0" / "summary.json").stat().st_mtime_ns
    second = sweep.run_sweep(exp, tmp_path, log=quiet)  # no shard: everything unfinished
    assert sorted(second.ran) == ["norm=bn-s1", "norm=none-s0", "norm=none-s1"]
    assert second.skipped == ["norm=bn-s0"] and not second.failed
    assert (tmp_path / "runs" / "norm=bn-s0" / "summary.json").stat().st_mtime_ns == kept
    third = sweep.run_sweep(exp, tmp_path, log=quiet)
    assert not third.ran and len(third.skipped) == 4
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert list(rows[0])[:4] == ["cell", "norm", "seed", "status"]
    for r in rows:
        s = json.load(open(tmp_path / r["run_dir"] / "summary.json"))
        assert float(r["final_test_acc"]) == s["final_test_acc"] and int(r["parameters"]) == s["parameters"]
    other = exp_of({"norm": ["bn", "gn"]}, seeds=2)
    with pytest.raises(ConfigError, match="holds a sweep of a different experiment \\(factors differ\\)"):
        sweep.run_sweep(other, tmp_path, log=quiet)


def test_a_diverging_run_is_recorded_not_fatal(tmp_path):
    exp = exp_of({"lr": [0.01, 1e20]}, seeds=1, optimizer="sgd", norm="none", init="normal:std=3")
    out = sweep.run_sweep(exp, tmp_path, log=quiet)
    assert out.ran == ["lr=0.01-s0"] and [n for n, _ in out.failed] == ["lr=1e+20-s0"]
    with pytest.raises(NormlabError) as direct:  # the trainer's own message is what gets recorded
        from normlab import train
        train(grid.cell_config(exp, grid.expand(exp)[1], 0, str(tmp_path / "direct")), log=quiet)
    s = report.write_report(tmp_path)
    assert s["failed"] == [("lr=1e+20", 0, str(direct.value).replace(str(tmp_path / "direct"),
                                                                      str(tmp_path / "runs" / "lr=1e+20-s0")))]
    assert "failed" in (tmp_path / "report.md").read_text()
    assert sweep.run_sweep(exp, tmp_path, log=quiet).skipped == ["lr=0.01-s0", "lr=1e+20-s0"]


# ------------------------------------------------------------------ report
class _Checker(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.imgs, self.external, self.links = [], [], [], [], []
        self.text = []

    def handle_data(self, data):
        if self.stack and self.stack[-1] not in ("style", "script"):
            self.text.append(data)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for k in ("src", "href"):
            if k in a and (":" in a[k].split("/")[0] and not a[k].startswith("data:")):
                self.external.append(a[k])  # another site or scheme; relative links to run files are fine
        if tag == "a":
            self.links.append(a.get("href", ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_cli_compare_report_html_is_self_contained(tmp_path, capsys):
    yml = tmp_path / "e.yaml"
    yml.write_text("name: demo\nbase: {dataset: digits, model: mlp, epochs: 2, width: 16, depth: 1, device: cpu}\n"
                   "factors: {norm: [bn, none]}\nseeds: 2\n")
    out = tmp_path / "sweep"
    assert main(["compare", str(yml), "--out", str(out), "--shard", "1/2"]) == 0
    assert "2 runs of the grid are not finished yet" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    assert "warning: 2 runs of the grid have not finished" in capsys.readouterr().err
    assert "Incomplete: 2 runs have not finished" in (out / "report.md").read_text()
    assert main(["compare", str(yml), "--out", str(out), "--shard", "2/2"]) == 0
    md = (out / "report.md").read_text()
    assert "Incomplete" not in md and "| norm=none | 2 |" in md and "![learning curves by norm](curves-norm.png)" in md
    assert (out / "curves-norm.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    html = (out / "report.html").read_text()
    chk = _Checker()
    chk.feed(html)
    chk.close()
    assert html.startswith("<!DOCTYPE html>") and not chk.errors and not chk.stack
    assert not chk.external and len(chk.imgs) == 1
    # a phone can read it: viewport, tables scroll in their own box, no raw Markdown left over
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert html.count('<div class="scroll"') == html.count("<table>") >= 4 and ".scroll{overflow-x:auto" in html
    assert "`" not in "".join(chk.text) and "**" not in "".join(chk.text)
    # each cell links to its config (written beside the report) and each run to its folder
    assert "configs/norm=none.yaml" in chk.links and "runs/norm=none-s1/config.json" in chk.links
    cfg = yaml.safe_load((out / "configs" / "norm=none.yaml").read_text())
    assert cfg["norm"] == "none" and cfg["seed"] == [0, 1] and cfg["width"] == 16 and "out" not in cfg
    assert all((out / link).exists() for link in chk.links if link.startswith(("configs/", "runs/")))
    assert "torch " + torch.__version__ in html and "Runs trained on cpu" in html
    png = base64.b64decode(chk.imgs[0].removeprefix("data:image/png;base64,"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png == (out / "curves-norm.png").read_bytes()
    # The table's numbers are those of results.csv.
    rows = [r for r in csv.DictReader(open(out / "results.csv")) if r["norm"] == "none"]
    accs = np.array([float(r["final_test_acc"]) for r in rows])
    assert f"{100 * accs.mean():.2f} ± {100 * accs.std(ddof=1):.2f}" in html  # in %
    # the gap comes from the clean train accuracy (eval mode, training split), not the running one
    clean = [normlab.evaluate_run(out / r["run_dir"], split="train")["train_acc"] for r in rows]
    gaps = 100 * np.array([c - float(r["final_test_acc"]) for c, r in zip(clean, rows)])
    assert f"{gaps.mean():.2f} ± {gaps.std(ddof=1):.2f}" in html
    assert f"{100 * np.mean(clean):.2f} ± {100 * np.std(clean, ddof=1):.2f}" in html
    cached = json.loads((out / "train_eval.json").read_text())
    assert [cached[r["run_dir"]]["train_acc"] for r in rows] == clean
    # differences.csv: the paired difference in accuracy points; 2 seeds are too few for a verdict
    base = {r["seed"]: float(r["final_test_acc"]) for r in csv.DictReader(open(out / "results.csv"))
            if r["norm"] == "bn"}
    d = 100 * np.array([float(r["final_test_acc"]) - base[r["seed"]] for r in rows])
    [diff] = list(csv.DictReader(open(out / "differences.csv")))
    assert (diff["cell"], diff["baseline"], diff["unit"], diff["n"]) == ("norm=none", "norm=bn", "accuracy points", "2")
    assert float(diff["mean_difference"]) == pytest.approx(d.mean())
    half = 12.706204736174703 * d.std(ddof=1) / np.sqrt(2)  # t(0.975, 1)
    assert (float(diff["low"]), float(diff["high"])) == pytest.approx((d.mean() - half, d.mean() + half))
    assert diff["verdict"] == "too few seeds" and diff["p_holm"] == "" and "no verdict (n &lt; 3)" in html
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a sweep directory (no experiment.json)" in capsys.readouterr().err


def test_every_shipped_experiment_file_is_valid():
    from pathlib import Path

    files = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))
    assert {f.stem for f in files} >= {"bn-vs-none", "weight-decay", "plain-vs-residual", "dropout", "norms"}
    for f in files:
        exp = spec.load_experiment(f)
        assert exp.factors and len(exp.seeds) >= 3, f.name


def test_dry_run_lists_the_resnet_v2_orders_runs_and_writes_nothing(tmp_path, capsys):
    from pathlib import Path

    exp_file = Path(__file__).parent.parent / "experiments" / "resnet-v2-orders.yaml"
    out = tmp_path / "sweep"
    (out / "runs" / "block_order=original-s1").mkdir(parents=True)
    (out / "runs" / "block_order=original-s1" / "failed.json").write_text("{}")  # counts as finished
    assert main(["compare", str(exp_file), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"resnet-v2-orders: 5 cells x 3 seeds = 15 runs under {out}/runs (1 finished, 14 to train); "
                        f"nothing trained (--dry-run)")
    assert lines[1].startswith("base: dataset=digits, model=resnet56, epochs=15,")
    orders = ["original", "bn-after-add", "relu-before-add", "relu-preact", "full-preact"]  # He et al. fig. 4 (a)-(e)
    runs = [line.split() for line in lines[2:]]
    assert [r[0] for r in runs] == [f"block_order={o}-s{s}" for o in orders for s in range(3)]
    assert [r[1] for r in runs] == ["to", "finished"] + ["to"] * 13
    assert sorted(p.name for p in out.rglob("*")) == ["block_order=original-s1", "failed.json", "runs"]


ALL_FOUR = ["norm=bn-s0", "norm=bn-s1", "norm=none-s0", "norm=none-s1"]


def start_compare(tmp_path, epochs, batch_size, **popen):
    """`normlab compare --jobs 2` of a 2 x 2 grid in its own process group; (yml, out, process)."""
    import subprocess
    import sys

    yml = tmp_path / "e.yaml"
    yml.write_text(f"base: {{dataset: digits, model: mlp, epochs: {epochs}, width: 16, depth: 1, device: cpu, "
                   f"batch_size: {batch_size}}}\nfactors: {{norm: [bn, none]}}\nseeds: 2\n")
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "normlab", "compare", str(yml), "--out", str(out), "--jobs", "2"],
                            start_new_session=True, **popen)
    return yml, out, proc


def wait_for(path_glob, out, proc, seconds=600):  # generous: a loaded machine is slow, not stuck
    import time

    deadline = time.monotonic() + seconds
    while not list(out.glob(path_glob)) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_unlocked(out, seconds=60):
    """Until every run lock of the sweep is free: a process killed with SIGKILL releases its
    locks when the kernel has finished tearing it down, a moment after kill() returns."""
    import time

    from normlab import locks

    deadline = time.monotonic() + seconds
    for path in out.glob(".locks/*.lock"):
        while True:
            try:
                with locks.hold(path):
                    break
            except locks.Locked:
                assert time.monotonic() < deadline, f"{path} still held by {locks.owner(path)}"
                time.sleep(0.05)


def test_a_killed_sweep_resumes_where_it_stopped(tmp_path):
    import signal
    import subprocess

    # Two worker processes; the kill takes the parent and both workers down mid-sweep.
    yml, out, proc = start_compare(tmp_path, 2, 16, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "runs" / "norm=bn-s0" / "summary.json"
    wait_for("runs/norm=bn-s0/summary.json", out, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_unlocked(out)
    done_before = sorted(p.parent.name for p in out.glob("runs/*/summary.json"))
    assert first.exists() and len(done_before) < 4
    exp = spec.load_experiment(yml)
    resumed = sweep.run_sweep(exp, out, log=quiet)
    assert resumed.skipped == done_before
    assert sorted(resumed.ran + resumed.skipped) == ALL_FOUR
    assert all(r["status"] == "ok" for r in results.collect(out))


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="finds the worker processes through Linux's /proc")
def test_a_dead_worker_fails_its_runs_instead_of_hanging_and_a_rerun_finishes(tmp_path):
    import signal
    import subprocess

    yml, out, proc = start_compare(tmp_path, 3, 8, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def workers():
        kids = []
        for task in os.listdir(f"/proc/{proc.pid}/task"):
            with open(f"/proc/{proc.pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
        cmd = lambda pid: open(f"/proc/{pid}/cmdline", "rb").read()  # noqa: E731
        return [k for k in kids if b"spawn_main" in cmd(k) and b"resource_tracker" not in cmd(k)]

    wait_for("runs/*/config.json", out, proc)
    victims = workers()
    assert victims, "no worker process found"
    os.kill(victims[0], signal.SIGKILL)
    try:
        log, _ = proc.communicate(timeout=120)  # multiprocessing.Pool would hang here forever
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("compare hung after a worker died")
    assert proc.returncode == 1
    assert "a worker process died" in log and "run the same command again" in log and "Traceback" not in log
    assert "NOT FINISHED, stopped by the machine, not a result" in log and "FAILED" not in log
    statuses = [r["status"] for r in results.collect(out)]
    assert "machine" in statuses and "failed" not in statuses  # the killed run is no result
    exp = spec.load_experiment(yml)
    resumed = sweep.run_sweep(exp, out, log=quiet)
    assert sorted(resumed.ran + resumed.skipped) == ALL_FOUR
    assert resumed.ran and all(r["status"] == "ok" for r in results.collect(out))


# ------------------------------------------------------------------ workers live and die with the parent
def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids, seconds=60):
    import time

    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def paused_compare(tmp_path, yml, out, marks):
    """`normlab compare --jobs 2` whose workers pause at the start of their first epoch (faults.py);
    returns (process, worker pids) once both workers are inside training."""
    import subprocess
    import sys
    import time

    marks.mkdir(exist_ok=True)
    for m in marks.iterdir():
        m.unlink()
    env = dict(os.environ, NORMLAB_PAUSE_AT="epoch-start#1", NORMLAB_PAUSE_DIR=str(marks))
    proc = subprocess.Popen([sys.executable, "-m", "normlab", "compare", str(yml), "--out", str(out), "--jobs", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list(marks.glob("*.paused"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc, [int(m.name.split(".")[0]) for m in marks.glob("*.paused")]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="tells a live process from a zombie through /proc")
def test_sigterm_and_kill9_of_the_parent_take_the_workers_along(tmp_path):
    import signal
    import subprocess

    yml = tmp_path / "e.yaml"
    yml.write_text("base: {dataset: digits, model: mlp, epochs: 2, width: 16, depth: 1, device: cpu, "
                   "batch_size: 128}\nfactors: {lr: [0.05, 0.1, 0.2]}\nseeds: 1\n")
    out, marks = tmp_path / "sweep", tmp_path / "marks"
    exp = spec.load_experiment(yml)
    assert sweep.run_sweep(exp, out, shard=(1, 3), log=quiet).ran == ["lr=0.05-s0"]

    # Ctrl-C (SIGINT to the whole process group), then SIGTERM to the parent alone: either way it
    # stops both workers, keeps the finished run and writes the report of it.
    for send in (lambda pid: os.killpg(pid, signal.SIGINT), lambda pid: os.kill(pid, signal.SIGTERM)):
        proc, workers = paused_compare(tmp_path, yml, out, marks)
        send(proc.pid)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("compare did not stop")
        assert proc.returncode == 130, err
        assert "interrupted; 1 of 3 runs are finished and kept" in err and "Traceback" not in err
        assert wait_gone(workers) == []
        rows = list(csv.DictReader(open(out / "results.csv")))
        assert [r["status"] for r in rows] == ["ok", "missing", "missing"]
        assert "Incomplete: 2 runs have not finished" in (out / "report.md").read_text()
        assert not list(out.glob("runs/*/failed.json"))

    # kill -9 of the parent alone: no worker outlives it, and a rerun finishes everything.
    proc, workers = paused_compare(tmp_path, yml, out, marks)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert wait_gone(workers) == []
    wait_unlocked(out)
    rerun = sweep.run_sweep(exp, out, log=quiet)
    assert sorted(rerun.ran) == ["lr=0.1-s0", "lr=0.2-s0"] and not rerun.busy and not rerun.failed
    assert [r["status"] for r in results.collect(out)] == ["ok"] * 3
    assert not list(out.glob("runs/*/failed.json"))


@pytest.mark.skipif(os.name != "posix", reason="run locks are flock(2) locks")
def test_a_rerun_leaves_a_run_that_another_live_process_holds(tmp_path):
    import subprocess
    import sys

    exp = exp_of({"norm": ["bn", "none"]}, seeds=1)
    sweep.prepare_sweep_dir(exp, tmp_path)
    busy = tmp_path / "runs" / "norm=none-s0"
    busy.mkdir(parents=True)
    (busy / "config.json").write_text("{}")  # a run in progress, as far as anyone can tell
    lock = jobs.lock_path(busy)
    lock.parent.mkdir(parents=True, exist_ok=True)
    # Another process, speaking the lock protocol of normlab.locks: flock plus its pid in the file.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode())\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        lines = []
        first = sweep.run_sweep(exp, tmp_path, log=lines.append)
        assert first.ran == ["norm=bn-s0"] and first.busy == ["norm=none-s0"]
        assert f"  norm=none-s0: being trained by process {holder.pid}; left alone" in lines
        assert sorted(p.name for p in busy.iterdir()) == ["config.json"]  # not deleted, not retrained
    finally:
        holder.stdin.close()
        holder.wait()
    second = sweep.run_sweep(exp, tmp_path, log=quiet)
    assert second.ran == ["norm=none-s0"] and second.skipped == ["norm=bn-s0"]
    assert [r["status"] for r in results.collect(tmp_path)] == ["ok", "ok"]


# ------------------------------------------------------------------ the machine's failures are not results
def test_a_full_disk_in_a_run_is_not_a_result_and_the_next_compare_trains_it(tmp_path, monkeypatch, capsys):
    import errno

    from normlab.train import checkpoint

    yml = tmp_path / "e.yaml"
    yml.write_text(yaml.safe_dump({"base": BASE, "factors": {"lr": [0.05, 0.1]}, "seeds": 1}))
    out = tmp_path / "s"
    real = checkpoint._write_new

    def full_for_the_second_lr(path, data):
        if "lr=0.1-s0" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "_write_new", full_for_the_second_lr)
        assert main(["compare", str(yml), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert ("normlab compare: 1 runs were stopped by the machine (disk full, out of memory, killed), not by the "
            "experiment: lr=0.1-s0; they are not results; run the same command again to train them") in err
    assert "Traceback" not in err and "FAILED" not in err
    rec = json.loads((out / "runs" / "lr=0.1-s0" / "failed.json").read_text())
    assert rec["kind"] == "machine" and "\n" not in rec["error"]
    assert rec["error"].startswith("saving epoch 1 failed writing ") and "[Errno 28] No space left on device" in rec["error"]
    rows = {r["cell"]: r for r in results.collect(out)}
    assert rows["lr=0.1"]["status"] == "machine" and rows["lr=0.05"]["status"] == "ok"
    s = report.summarize(results.read_experiment(out), list(rows.values()))
    assert s["failed"] == [] and [c for c, _, _ in s["machine"]] == ["lr=0.1"]
    md = (out / "report.md").read_text()
    assert "**Not finished: 1 runs were stopped by the machine, not by the experiment**" in md
    assert "Run lr=0.1 seed 0 stopped by the machine: saving epoch 1 failed" in md and " failed: " not in md
    # space freed: the same command trains that run (it is not "0 runs to train") and the report is whole
    assert main(["compare", str(yml), "--out", str(out)]) == 0
    assert "normlab compare: 1 runs to train, 1 already finished" in capsys.readouterr().out
    assert all(r["status"] == "ok" for r in results.collect(out))
    assert not (out / "runs" / "lr=0.1-s0" / "failed.json").exists()
    assert "stopped by the machine" not in (out / "report.md").read_text()


@pytest.mark.parametrize("exc, kind", [
    (lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "machine"),
    (lambda: MemoryError(), "machine"),
    (lambda: OSError(28, "No space left on device"), "machine"),
    (lambda: ZeroDivisionError("a bug"), "bug"),
    (lambda: normlab.errors.TrainingError("the loss became nan at step 3"), "result"),
])
def test_each_failure_is_told_apart_and_recorded_in_one_line(tmp_path, monkeypatch, exc, kind):
    def boom(cfg, log=None, resume=None):
        raise exc()

    monkeypatch.setattr(jobs, "train", boom)  # the one training call of a sweep's run
    exp = exp_of({"lr": [0.05]}, seeds=1)
    o = sweep.run_sweep(exp, tmp_path, log=quiet)
    rec = json.loads((tmp_path / "runs" / "lr=0.05-s0" / "failed.json").read_text())
    assert rec["kind"] == kind and "\n" not in rec["error"] and "Traceback" not in rec["error"]
    assert (o.machine if kind == "machine" else o.failed)[0][0] == "lr=0.05-s0"
    assert not (o.failed if kind == "machine" else o.machine)
    assert (tmp_path / "runs" / "lr=0.05-s0" / "traceback.txt").is_file() == (kind == "bug")
    assert results.is_finished(tmp_path / "runs" / "lr=0.05-s0") == (kind != "machine")
    if kind == "bug":
        assert rec["error"] == "ZeroDivisionError: a bug"
        assert "Traceback" in (tmp_path / "runs" / "lr=0.05-s0" / "traceback.txt").read_text()


def test_a_lock_that_cannot_be_taken_is_the_machines_failure(tmp_path, monkeypatch):
    import contextlib
    import errno

    @contextlib.contextmanager
    def unwritable(path):
        raise OSError(errno.EROFS, "Read-only file system")
        yield

    monkeypatch.setattr(jobs, "hold_lock", unwritable)
    o = sweep.run_sweep(exp_of({"lr": [0.05]}, seeds=1), tmp_path, log=quiet)
    assert not o.failed and o.machine[0][0] == "lr=0.05-s0"
    assert "could not take the run's lock" in o.machine[0][1] and "Read-only file system" in o.machine[0][1]
