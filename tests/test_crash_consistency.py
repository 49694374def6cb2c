"""Crash consistency: the process is stopped at every write point in turn (os._exit, like a
kill -9 at that instant), then resumed; the result must be bit-identical to a run that was never
interrupted. Plus a real kill -9 at a random moment, a deterministic Ctrl-C, damaged checkpoints
and a full disk."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import normlab
from normlab import cli, faults
from normlab.train import checkpoint
from helpers.hooks import StopAfter
from normlab.rundir import RunDir

# Small enough that one run takes a fraction of a second; EMA and a validation split so that
# every kind of file an epoch can write is written, and the best epoch is chosen on val_acc.
CFG = dict(dataset="digits", model="mlp", epochs=2, width=16, depth=1, batch_size=256, lr=0.05,
           optimizer="momentum", dropout=0.2, ema=0.9, val_split=0.2, progress=False)
quiet = lambda *a: None  # noqa: E731
TIMING = ("epoch_seconds", "elapsed_seconds", "examples_per_s", "wall_seconds")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the crashing child is a fork of the test")


def timeless(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def outcome(run_dir):
    """What a finished run leaves, timings aside: weights, metrics rows, summary, best weights."""
    run = RunDir(run_dir)
    summary = {k: v for k, v in run.read_json("summary.json").items() if k not in TIMING}
    best = checkpoint.load_last_complete_epoch(run_dir, ema=True).weights(checkpoint.BEST)
    return run.load_weights(), timeless(run.read_metrics()), summary, best


def assert_same(a, b):
    wa, ma, sa, ba = a
    wb, mb, sb, bb = b
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert ba.keys() == bb.keys() and all(torch.equal(ba[k], bb[k]) for k in ba)
    assert ma == mb
    assert sa == sb


def debris(run_dir):
    """Everything a clean finished run should not hold: temporary files/folders, older epochs."""
    left = [p.name for p in run_dir.rglob("*") if p.name.endswith((".tmp", ".old"))]
    epochs = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    return left, epochs


def crash_at(point: int, out) -> int:
    """Train CFG into `out` in a forked child that dies with os._exit at the point-th write
    point; return the child's exit status (faults.CRASH_EXIT when the point was reached)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            torch.set_num_threads(1)
            faults.configure(crash=str(point))
            normlab.train(dict(CFG, out=str(out)), log=quiet)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"the child crashing at point {point} hung")
        time.sleep(0.01)


def finish(out):
    """What a user does after a crash: `normlab train --resume OUT`; where the run saved nothing
    (no config.json) resume says so, and the original command is run again."""
    try:
        normlab.train(None, log=quiet, resume=out)
    except normlab.CheckpointError as exc:
        assert "has no config.json: that run stopped before it saved anything" in str(exc)
        normlab.train(dict(CFG, out=str(out)), log=quiet)
    except normlab.ConfigError as exc:  # killed after summary.json: nothing left to do
        assert "already finished 2 epochs" in str(exc)


@pytest.fixture(scope="module", autouse=True)
def quick_curves():
    """curves.png drawn as a tiny stand-in: matplotlib takes most of a tiny run's time, and the
    picture is not what these tests compare (its write point stays where it was)."""
    from normlab.train import hooks

    def stand_in(rows, path, title="", **_):
        path.write_bytes(json.dumps([r["test_acc"] for r in rows]).encode())

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hooks, "plot_curves", stand_in)
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, with the names of the write points it passes, in order."""
    trace = []
    faults.configure(trace=trace)
    try:
        out = tmp_path_factory.mktemp("ref") / "run"
        normlab.train(dict(CFG, out=str(out)), log=quiet)
    finally:
        faults.configure()
    return outcome(out), trace


def test_the_write_points_cover_every_file(reference):
    _, trace = reference
    for name in ("after-rename config.json", "after-rename preprocess.json", "commit mkdir", "commit model.safetensors",
                 "commit ema.safetensors", "commit best.safetensors", "commit state.pt", "commit before-rename",
                 "commit after-rename", "commit synced", "before-rename metrics.csv", "commit cleaned",
                 "before-rename weights.safetensors", "finish curves.png", "before-rename summary.json",
                 "after-rename summary.json"):
        assert name in trace, name
    assert trace.count("commit after-rename") == 2  # one commit per epoch
    assert 30 <= len(trace) <= 60


def test_a_crash_at_every_write_point_resumes_bit_for_bit(reference, tmp_path):
    expected, trace = reference
    for i, name in enumerate(trace, start=1):
        out = tmp_path / f"p{i:02d}"
        assert crash_at(i, out) == faults.CRASH_EXIT, f"point {i} ({name}) was not reached"
        assert not (out / "summary.json").exists() or name == "after-rename summary.json"
        finish(out)
        assert_same(outcome(out), expected)
        left, epochs = debris(out)
        assert left == [] and epochs == ["epoch-0002"], (i, name, left, epochs)


def test_a_real_kill_9_at_a_random_moment(reference, tmp_path):
    expected, _ = reference
    delay = random.Random().uniform(0.0, 1.0)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in CFG.items() if k != "progress"]
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "normlab", "train", *args, "--no-progress", "--threads", "1",
                          "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert p.stdout.readline().startswith("normlab: mlp")  # training has started
    time.sleep(delay)
    p.kill()
    p.communicate()
    finish(out)
    assert_same(outcome(out), expected), f"killed {delay:.3f} s after the start line"


def test_ctrl_c_at_a_known_instant_resumes_bit_for_bit(reference, tmp_path):
    """SIGINT while the child is paused at the start of epoch 2 (faults.py): no race with a timer."""
    expected, _ = reference
    args = [f"--{k.replace('_', '-')}={v}" for k, v in CFG.items() if k != "progress"]
    out, marks = tmp_path / "run", tmp_path / "marks"
    marks.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", NORMLAB_PAUSE_AT="epoch-start#2", NORMLAB_PAUSE_DIR=str(marks))
    p = subprocess.Popen([sys.executable, "-m", "normlab", "train", *args, "--no-progress", "--threads", "1",
                          "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not list(marks.glob("*.paused")):
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stderr
    assert f"interrupted in epoch 2; resume with `normlab train --resume {out}` (continues after epoch 1)" in stdout
    assert checkpoint.load_last_complete_epoch(out, ema=True).epoch == 1
    normlab.train(None, log=quiet, resume=out)
    assert_same(outcome(out), expected)


# ---------------------------------------------------------------- damaged checkpoints, full disk
@pytest.fixture
def cut(tmp_path):
    """A run stopped after its first epoch."""
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        normlab.train(dict(CFG, out=str(out)), log=quiet, hooks=[StopAfter(1)])
    return out


def snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_garbled_metrics_csv_is_rebuilt_from_the_checkpoint(reference, cut):
    (cut / "metrics.csv").write_bytes(b"epoch,train_loss\n\xff\xfe,garbage,more\n")
    normlab.train(None, log=quiet, resume=cut)
    assert_same(outcome(cut), reference[0])


def test_a_state_file_missing_keys_is_one_line_and_changes_nothing(cut, capsys):
    state_file = cut / "checkpoints" / "epoch-0001" / "state.pt"
    state = torch.load(state_file, weights_only=True)
    del state["optimizer"], state["rng"]
    torch.save(state, state_file)
    before = snapshot(cut)
    line = one_line_error(capsys, ["train", "--resume", str(cut)])
    assert line == (f"normlab train: error: {str(state_file)!r} is damaged or not a normlab state file: it lacks "
                    f"optimizer, rng; this run cannot be resumed exactly: train it again")
    assert snapshot(cut) == before


def test_a_missing_weights_file_is_one_line(cut, capsys):
    (cut / "checkpoints" / "epoch-0001" / "model.safetensors").unlink()
    line = one_line_error(capsys, ["train", "--resume", str(cut)])
    assert "epoch-0001' lacks model.safetensors (changed by hand?); this run cannot be resumed exactly" in line


def test_resume_of_a_folder_that_saved_nothing_says_what_to_do(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    line = one_line_error(capsys, ["train", "--resume", str(tmp_path / "empty")])
    assert "has no config.json: that run stopped before it saved anything; start it again with its original" in line
    # and the original command then reuses the folder, debris of a killed write included
    (tmp_path / "empty" / ".config.json.0a1b2c3d.tmp").write_text("{")
    normlab.train(dict(CFG, epochs=1, out=str(tmp_path / "empty")), log=quiet)
    assert not list((tmp_path / "empty").glob("*.tmp"))


def test_the_original_command_on_a_stopped_run_points_to_resume(cut, capsys):
    args = [f"--{k.replace('_', '-')}={v}" for k, v in CFG.items() if k != "progress"]
    before = snapshot(cut)
    line = one_line_error(capsys, ["train", *args, "--out", str(cut)])
    assert f"holds an interrupted run; continue it with `normlab train --resume {cut}`" in line
    assert snapshot(cut) == before


def test_a_full_disk_names_the_file_keeps_the_last_epoch_and_resumes(reference, tmp_path, capsys, monkeypatch):
    real = checkpoint._write_new
    calls = []

    def full_on_epoch_2(path, data):
        calls.append(path.name)
        if "epoch-0002" in path.parent.name and path.name == "state.pt":
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(checkpoint, "_write_new", full_on_epoch_2)
    out = tmp_path / "full"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in CFG.items() if k != "progress"]
    line = one_line_error(capsys, ["train", *args, "--no-progress", "--out", str(out)])
    assert line == (f"normlab train: error: saving epoch 2 failed writing state.pt in {str(out / 'checkpoints')!r}: "
                    f"[Errno 28] No space left on device; nothing earlier was lost (epoch 1 in "
                    f"{str(out / 'checkpoints' / 'epoch-0001')!r} is intact); free some space or fix the folder's "
                    f"permissions, then `normlab train --resume {out}`")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0001"]
    monkeypatch.undo()
    normlab.train(None, log=quiet, resume=out)
    assert_same(outcome(out), reference[0])


def test_one_process_at_a_time_writes_a_run(cut, capsys):
    from normlab import locks

    with locks.hold(cut / ".lock"):  # as a live `train --resume` of the same folder would
        line = one_line_error(capsys, ["train", "--resume", str(cut)])
    assert line == (f"normlab train: error: {str(cut)!r} is in use by process {os.getpid()} (lock .lock); "
                    f"wait for it to finish or stop it, then run the command again")
    normlab.train(None, log=quiet, resume=cut)  # free again


def test_a_run_without_checkpoints_but_with_results_is_refused_not_retrained(cut, capsys):
    import shutil

    shutil.rmtree(cut / "checkpoints")
    (cut / "state.pt").write_bytes(b"from an older normlab")
    before = snapshot(cut)
    line = one_line_error(capsys, ["train", "--resume", str(cut)])
    assert "has no checkpoints/ folder but results of training" in line and "train it again with a new --out" in line
    assert snapshot(cut) == before


def test_an_epoch_that_does_not_improve_carries_the_best_weights_over(tmp_path):
    """commit_epoch with best=None hard-links the previous epoch's best weights into the new
    epoch (the path a crash test may not reach when every epoch improves)."""
    state = {k: 0 for k in checkpoint.STATE_KEYS}
    w1, w2 = {"w": torch.arange(4.0)}, {"w": torch.ones(4)}
    checkpoint.commit_epoch(tmp_path, 1, w1, dict(state, epoch=1, rows=[{"epoch": 1}]), best=w1)
    trace = []
    faults.configure(trace=trace)
    try:
        checkpoint.commit_epoch(tmp_path, 2, w2, dict(state, epoch=2, rows=[{"epoch": 1}, {"epoch": 2}]), best=None)
    finally:
        faults.configure()
    assert "commit best.safetensors link" in trace
    ckpt = checkpoint.load_last_complete_epoch(tmp_path)
    assert ckpt.epoch == 2 and sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0002"]
    assert torch.equal(ckpt.weights(checkpoint.BEST)["w"], w1["w"])
    assert torch.equal(ckpt.weights(checkpoint.MODEL)["w"], w2["w"])
    assert [r["epoch"] for r in RunDir(tmp_path).read_metrics()] == [1, 2]
