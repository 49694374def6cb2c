"""torchrun with 2 CPU processes (gloo): data-parallel training equals one process on the
global batch; --sync-bn statistics equal one process's; resume works under DDP."""

import json
import os
import subprocess
import sys

import pytest
import torch

import normlab
from normlab.rundir import RunDir

BASE = ["--dataset", "digits", "--model", "mlp", "--optimizer", "sgd", "--lr", "0.1", "--no-progress",
        "--threads", "1"]


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


def test_sync_bn_needs_several_processes():
    with pytest.raises(normlab.ConfigError, match="--sync-bn needs several processes; launch with torchrun"):
        normlab.train(dict(dataset="digits", model="mlp", sync_bn=True, progress=False), log=lambda *a: None)
