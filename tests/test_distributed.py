"""torchrun with 2 CPU processes (gloo): data-parallel training equals one process on the
global batch; --sync-bn statistics equal one process's; resume works under DDP. Two torchrun
"nodes" on 127.0.0.1 (c10d rendezvous, TCP): the same equality, and a killed or stalled node
makes the other exit with a one-line error instead of hanging."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import normlab
from normlab.rundir import RunDir

BASE = ["--dataset", "digits", "--model", "mlp", "--optimizer", "sgd", "--lr", "0.1", "--no-progress",
        "--threads", "1"]


LATE = Path(__file__).resolve().parent / "helpers" / "late_rank_normlab.py"


def torchrun(tmp_path, name, *args):
    out = tmp_path / name
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        "-m", "normlab", "train", *BASE, "--out", str(out), *args],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return out, r.stdout


def single(tmp_path, name, **kw):
    cfg = dict(dataset="digits", model="mlp", optimizer="sgd", lr=0.1, progress=False, threads=1,
               batch_size=32, out=str(tmp_path / name), **kw)
    return normlab.train(cfg, log=lambda *a: None)


def assert_weights_close(run_dir, model, **tol):
    saved = RunDir(run_dir).load_weights()
    ref = model.state_dict()
    assert saved.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(saved[k], ref[k], **tol, msg=k)


def test_ddp_equals_one_process_on_the_global_batch(tmp_path):
    out, stdout = torchrun(tmp_path, "ddp", "--batch-size", "16", "--epochs", "1", "--norm", "none")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["replicas_identical"] is True
    assert stdout.count("epoch 1/1") == 1  # rank 0 alone prints
    ref = single(tmp_path, "one", epochs=1, norm="none")
    assert_weights_close(out, ref.model, rtol=1e-4, atol=1e-5)
    # train metrics are reduced over both ranks: every training sample was seen once
    rows = RunDir(out).read_metrics()
    assert rows[0]["train_acc"] == pytest.approx(ref.metrics[0]["train_acc"], abs=1e-9)


def test_sync_bn_statistics_equal_one_process(tmp_path):
    out, _ = torchrun(tmp_path, "sync", "--batch-size", "16", "--epochs", "1", "--norm", "bn", "--sync-bn")
    ref = single(tmp_path, "one-bn", epochs=1, norm="bn")
    saved = RunDir(out).load_weights()
    means = [k for k in saved if k.endswith("running_mean") or k.endswith("running_var")]
    assert means
    for k in means:
        torch.testing.assert_close(saved[k], ref.model.state_dict()[k], rtol=1e-4, atol=1e-5, msg=k)
    assert_weights_close(out, ref.model, rtol=1e-4, atol=1e-5)


def test_resume_under_ddp(tmp_path):
    common = ("--batch-size", "16", "--schedule", "constant", "--dropout", "0.3")
    full, _ = torchrun(tmp_path, "full", "--epochs", "2", *common)
    cut, _ = torchrun(tmp_path, "cut", "--epochs", "1", *common)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        "-m", "normlab", "train", "--resume", str(cut), "--epochs", "2", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    a, b = RunDir(full).load_weights(), RunDir(cut).load_weights()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_more_epochs_replans_every_rank_alike(tmp_path):
    """Rank 0 rewrites config.json with the new --epochs when it resumes; a rank that reads the
    file after that must still re-plan the lr schedule from the old count (it once did not, and
    the replicas diverged). The late rank is forced by the helper, not left to chance."""
    cut, _ = torchrun(tmp_path, "cut", "--batch-size", "16", "--epochs", "1")
    env = dict(os.environ, OMP_NUM_THREADS="1", LATE_EPOCHS="2")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        str(LATE), "train", "--resume", str(cut), "--epochs", "2", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "re-planned for 2 epochs (it was 1)" in r.stdout + r.stderr
    assert json.loads((cut / "summary.json").read_text())["replicas_identical"] is True
    single(tmp_path, "one", epochs=1)
    ref = normlab.train(dict(epochs=2), resume=str(tmp_path / "one"), log=lambda *a: None)
    assert_weights_close(cut, ref.model, rtol=1e-4, atol=1e-5)


def test_sync_bn_needs_several_processes():
    with pytest.raises(normlab.ConfigError, match="--sync-bn needs several processes; launch with torchrun"):
        normlab.train(dict(dataset="digits", model="mlp", sync_bn=True, progress=False), log=lambda *a: None)


# ---------------------------------------------------------------- two "nodes" over TCP
HANG = Path(__file__).resolve().parent / "helpers" / "hang_normlab.py"
TWO_NODES = ("--batch-size", "16", "--norm", "bn", "--sync-bn", "--out", "run")


def node(tmp_path, port, rank, *args, entry=("-m", "normlab"), env=None):
    """One "node": its own torchrun (the command of docs/distributed.md), one process."""
    log = open(tmp_path / f"node{rank}.log", "w")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank),
           "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
           "--rdzv-id", "normlab-test", *entry, "train", *BASE, *args]
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))
    log.close()
    return p


def poll(predicate, timeout, what):
    """Wait for a state, not for a time: the timeout only bounds a broken run."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up after {timeout} s waiting for {what}"
        time.sleep(0.2)


def listening(port) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def two_nodes(tmp_path, *args, node1_env=None):
    """Node 0 first, node 1 once node 0's rendezvous store listens (so the store is on node 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a = node(tmp_path, port, 0, *args)
    poll(lambda: a.poll() is not None or listening(port), 300, "node 0's rendezvous store")
    assert a.poll() is None, (tmp_path / "node0.log").read_text()[-3000:]
    b = node(tmp_path, port, 1, *args, **({"entry": (str(HANG),), "env": node1_env} if node1_env else {}))
    return a, b


def stop(p: subprocess.Popen):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(60)


def exit_code(p: subprocess.Popen, timeout: float, log: Path) -> int:
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(p)
        pytest.fail(f"still running after {timeout} s (hangs?):\n{log.read_text()[-3000:]}")


def test_two_nodes_with_sync_bn_equal_one_process_on_the_global_batch(tmp_path):
    a, b = two_nodes(tmp_path, "--epochs", "1", *TWO_NODES)
    try:
        for rank, p in enumerate((a, b)):
            log = tmp_path / f"node{rank}.log"
            assert exit_code(p, 600, log) == 0, log.read_text()[-4000:]
    finally:
        stop(a), stop(b)
    out = tmp_path / "run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["replicas_identical"] is True
    ref = single(tmp_path, "one-bn", epochs=1, norm="bn")  # batch 32 = 2 nodes x 16
    saved, want = RunDir(out).load_weights(), ref.model.state_dict()
    assert any(k.endswith("running_var") for k in saved)
    # float32 sums in another order (two partial sums all-reduced): equal to rounding, not bitwise
    for k in want:
        torch.testing.assert_close(saved[k], want[k], rtol=1e-4, atol=1e-5, msg=k)


def lost_node(tmp_path, *args):
    """Node 1 trains epoch 1, then (its first forward once run/metrics.csv exists) stalls; returns
    (node 0, node 1, node 1's worker pid)."""
    marker = tmp_path / "node1-stalled.pid"
    a, b = two_nodes(tmp_path, "--epochs", "3", *TWO_NODES, *args,
                     node1_env={"HANG_MARKER": str(marker), "HANG_AFTER": str(tmp_path / "run" / "metrics.csv")})
    try:
        poll(lambda: marker.is_file() or a.poll() is not None or b.poll() is not None, 600, "node 1 to stall")
        assert marker.is_file(), (tmp_path / "node0.log").read_text()[-3000:] + (tmp_path / "node1.log").read_text()[-3000:]
    except BaseException:
        stop(a), stop(b)
        raise
    return a, b, int(marker.read_text())


def test_a_killed_node_makes_the_other_exit_with_a_one_line_error(tmp_path):
    a, b, worker = lost_node(tmp_path)
    try:
        os.kill(worker, signal.SIGKILL)  # the node dies: its worker and its torchrun
        os.killpg(b.pid, signal.SIGKILL)
        # no --dist-timeout: node 0 learns it from the closed connection, at once
        log = tmp_path / "node0.log"
        assert exit_code(a, 300, log) != 0
    finally:
        stop(a), stop(b)
    text = log.read_text()
    assert re.search(r"^normlab train: error: rank [01] of 2 lost the connection to another process "
                     r"\(it died, or its node did\): Connection closed by peer", text, re.M), text[-4000:]
    assert "--resume RUN_DIR" in text
    assert not re.search(r"^\[rank\d\]: Traceback", text, re.M)  # ours is one line (torchrun's own report follows)
    assert re.search(r"exitcode\s*: 1 ", text)  # a lost peer is not bad input: 1, not 2


def test_a_stalled_node_makes_the_other_exit_after_dist_timeout(tmp_path):
    a, b, worker = lost_node(tmp_path, "--dist-timeout", "30")
    try:
        log = tmp_path / "node0.log"
        assert exit_code(a, 600, log) != 0  # node 1 is alive but silent: only the timeout ends the wait
    finally:
        stop(a), stop(b)
        try:
            os.kill(worker, signal.SIGKILL)
        except ProcessLookupError:
            pass
    text = log.read_text()
    assert re.search(r"^normlab train: error: rank [01] of 2 waited longer than --dist-timeout \(30 s\) for "
                     r"another process", text, re.M), text[-4000:]


def test_dist_timeout_must_be_positive():
    with pytest.raises(normlab.ConfigError, match="dist_timeout: must be > 0"):
        normlab.train(dict(dataset="digits", model="mlp", dist_timeout=0, progress=False), log=lambda *a: None)


def test_lost_peer_errors_are_named_and_others_pass_through(monkeypatch):
    from normlab.train import distributed as D

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = D.Dist(rank=1, world=2)
    closed = RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
                          "[127.0.0.1]:5. This is typically caused by a remote worker crashing. GLHF!")
    err = D.lost_peer(closed, d)
    assert isinstance(err, normlab.NormlabError) and err.exit_code == 1
    assert str(err).startswith("rank 1 of 2 lost the connection to another process (it died, or its node did): "
                               "Connection closed by peer [127.0.0.1]:5. The other processes' output says why")
    timed_out = RuntimeError("[/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 60000ms for recv "
                             "operation to complete")
    monkeypatch.setattr(D, "_timeout_s", 60.0)
    assert str(D.lost_peer(timed_out, d)).startswith(
        "rank 1 of 2 waited longer than --dist-timeout (60 s) for another process (stalled, or unreachable): "
        "Timed out waiting 60000ms for recv operation to complete. ")
    monkeypatch.setattr(D, "_timeout_s", None)
    assert "the collective timeout (torch's default, 30 minutes; --dist-timeout sets it)" in str(D.lost_peer(timed_out, d))
    # any other runtime error, or one process alone, keeps its own traceback
    assert D.lost_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied (16x64 and 32x10)"), d) is None
    assert D.lost_peer(closed, D.Dist()) is None


def test_ranks_agree_on_a_default_run_folder(tmp_path):
    """Without --out each rank would name its own folder from the clock; rank 1 starting a
    second later would name another one. Rank 0's name is given to all."""
    script = tmp_path / "two.py"
    script.write_text(
        "import os, time, normlab\n"
        "if os.environ['RANK'] == '1':\n"
        "    time.sleep(1.2)  # the clock's second has moved on for rank 1\n"
        "r = normlab.train({'dataset': 'digits', 'model': 'mlp', 'epochs': 1, 'progress': False, 'threads': 1},\n"
        "                  log=lambda *a: None)\n"
        "open(f\"rank{os.environ['RANK']}.txt\", 'w').write(str(r.run_dir))\n")  # a file each: printed lines of two ranks can interleave
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        str(script)], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    seen = {rank: (tmp_path / f"rank{rank}.txt").read_text() for rank in ("0", "1")}
    assert seen["0"] == seen["1"], seen
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(["latest", Path(seen["0"]).name])
