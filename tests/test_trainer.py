"""Optimizers, regularizers, schedules, checkpoints, exact resume, safety."""

import copy
import math
import os
import pickle

import pytest
import torch

import normlab
from normlab.config import make_config
from normlab.train.resolve import resolve_config
from helpers.hooks import StopAfter
from normlab.train.hooks import EMAHook
from normlab.errors import CheckpointError, TrainingError
from normlab import fileio as nio
from normlab.train import checkpoint, regularize
from normlab.train.optim import make_optimizer
from normlab.rundir import RunDir
from normlab.train.schedule import lr_factor
from normlab.train.step import Step

def resolved(*sources):
    """A config as a run uses it: the model's defaults (here lr) filled in."""
    return resolve_config(make_config(*sources))


TINY = dict(dataset="digits", model="mlp", epochs=3, batch_size=64, lr=0.05, optimizer="momentum",
            progress=False, dropout=0.2)
quiet = lambda *a: None  # noqa: E731


def timeless(rows):
    return [{k: v for k, v in r.items() if "second" not in k and "per_s" not in k} for r in rows]


@pytest.mark.parametrize("name, cls, expect", [
    ("sgd", torch.optim.SGD, {"momentum": 0, "nesterov": False}),
    ("momentum", torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
    ("nesterov", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adagrad", torch.optim.Adagrad, {"eps": 1e-8}),
    ("adadelta", torch.optim.Adadelta, {"rho": 0.9, "eps": 1e-6}),
    ("rmsprop", torch.optim.RMSprop, {"alpha": 0.99, "momentum": 0}),
    ("adam", torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-8}),
    ("adamw", torch.optim.AdamW, {"betas": (0.9, 0.999)}),
    ("nadam", torch.optim.NAdam, {"betas": (0.9, 0.999)}),
])
def test_optimizer_names(name, cls, expect):
    model = torch.nn.Linear(3, 2)
    opt = make_optimizer(model, resolved({"optimizer": name, "lr": 0.123, "weight_decay": 0.01}))
    assert type(opt) is cls
    g = opt.param_groups[0]
    assert g["lr"] == 0.123 and g["weight_decay"] == 0.01
    for k, v in expect.items():
        assert g[k] == v, k


def test_no_decay_norm_bias_groups():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = make_optimizer(model, resolved({"optimizer": "sgd", "weight_decay": 0.1, "decay_norm_bias": False}))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and [p.shape for p in decayed["params"]] == [(4, 3), (2, 4)]
    assert plain["weight_decay"] == 0.0 and len(plain["params"]) == 4


def test_weight_decay_equals_l2_for_plain_sgd(tmp_path):
    base = dict(TINY, optimizer="sgd", epochs=1, dropout=0.0)
    a = normlab.train(dict(base, weight_decay=0.05, out=str(tmp_path / "wd")), log=quiet)
    b = normlab.train(dict(base, l2=0.05, out=str(tmp_path / "l2")), log=quiet)
    c = normlab.train(dict(base, out=str(tmp_path / "none")), log=quiet)
    for (k, pa), pb, pc in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                               c.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
    norm = lambda m: sum(p.norm() ** 2 for p in m.parameters())  # noqa: E731
    assert norm(a.model) < norm(c.model)


def test_l1_proximal_gives_exact_zeros():
    torch.manual_seed(0)
    x = torch.randn(256, 20)
    y = (x[:, 0] - 2 * x[:, 1] > 0).long()  # only 2 of 20 features matter
    def fit(l1):
        torch.manual_seed(1)
        model = torch.nn.Linear(20, 2)
        cfg = make_config({"optimizer": "sgd", "lr": 0.1, "l1": l1, "schedule": "constant", "decay_norm_bias": False})
        opt = make_optimizer(model, cfg)
        step = Step(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), cfg)
        for _ in range(300):
            step(x, y)
        return model.weight.detach()
    w = fit(0.05)
    dense = fit(0.0)
    assert (dense == 0).sum() == 0
    zero_cols = (w == 0).all(0)
    assert zero_cols[2:].float().mean() >= 0.8  # irrelevant features are cut exactly to zero
    assert not zero_cols[:2].any()              # the two informative ones survive


def test_l1_penalty_is_the_tutorials_term_and_leaves_no_exact_zeros():
    # seed 004: Obj = Cost + lambda * sum|w|. One SGD step from w0 moves by -lr * (dCost/dw + l1 * sign(w)).
    torch.manual_seed(0)
    x, y = torch.randn(64, 20), torch.randint(0, 2, (64,))

    def fit(mode, steps):
        torch.manual_seed(1)
        model = torch.nn.Linear(20, 2)
        cfg = make_config({"optimizer": "sgd", "lr": 0.1, "l1": 0.05, "l1_mode": mode, "schedule": "constant",
                           "decay_norm_bias": False})
        opt = make_optimizer(model, cfg)
        step = Step(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), cfg)
        w0 = model.weight.detach().clone()
        for _ in range(steps):
            step(x, y)
        return w0, model

    w0, model = fit("penalty", 1)
    ref = torch.nn.Linear(20, 2)
    ref.load_state_dict({"weight": w0, "bias": fit("penalty", 0)[1].bias.detach()})
    torch.nn.functional.cross_entropy(ref(x), y).backward()
    want = w0 - 0.1 * (ref.weight.grad + 0.05 * w0.sign())
    torch.testing.assert_close(model.weight.detach(), want)
    w = fit("penalty", 300)[1].weight.detach()
    assert (w == 0).sum() == 0  # the subgradient oscillates around zero and never lands on it
    assert (w.abs() < 0.01).float().mean() > 0.5  # yet most irrelevant weights end up small


def test_soft_threshold_by_hand():
    p = torch.tensor([0.5, -0.05, 0.02, -0.7])
    regularize.l1_proximal([p], l1=1.0, lr=0.1)
    assert p.tolist() == pytest.approx([0.4, 0.0, 0.0, -0.6])


def test_max_norm_holds_after_every_step():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 36, 3))
    cfg = make_config({"optimizer": "sgd", "lr": 1.0, "max_norm": 0.5})
    opt = make_optimizer(model, cfg)
    step = Step(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), cfg)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
    for _ in range(5):
        step(x, y)
        for m in (model[0], model[2]):
            norms = m.weight.detach().flatten(1).norm(dim=1)
            assert (norms <= 0.5 + 1e-6).all()
    assert norms.max() == pytest.approx(0.5, abs=1e-5)  # the large lr pushes rows to the cap


def lrs(schedule, epochs=4, steps=5, **kw):
    cfg = make_config(dict(schedule=schedule, epochs=epochs, **kw))
    f = lr_factor(cfg, steps)
    return [f(s) for s in range(epochs * steps)]


def test_schedules_by_hand():
    assert lrs("constant") == [1.0] * 20
    assert lrs("linear", epochs=1, steps=4) == [1.0, 0.75, 0.5, 0.25]
    assert lrs("cosine", epochs=1, steps=4) == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5,
                                                               (1 + math.cos(3 * math.pi / 4)) / 2])
    assert lrs("step", lr_step=2, lr_gamma=0.5) == pytest.approx([1.0] * 10 + [0.5] * 10)
    assert lrs("multistep", milestones="1,3", lr_gamma=0.1) == pytest.approx([1.0] * 5 + [0.1] * 10 + [0.01] * 5)
    warm = lrs("constant", epochs=2, steps=5, warmup=1)
    assert warm == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0] + [1.0] * 5)


def test_onecycle_matches_torch():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=101, cycle_momentum=False,
                                              anneal_strategy="cos")
    want = []
    for _ in range(101):
        want.append(opt.param_groups[0]["lr"])
        opt.step(), ref.step()
    got = lrs("onecycle", epochs=1, steps=101)
    # torch places the peak at step 0.3 * (total - 1); ours at 0.3 of the way: compare the shape
    assert got[0] == pytest.approx(want[0]) and max(got) == pytest.approx(1.0, abs=1e-3)
    assert got[-1] < 1e-3 and want[-1] < 1e-3
    assert abs(got.index(max(got)) - want.index(max(want))) <= 1


# ---------------------------------------------------------------- resume and checkpoints
def test_resume_is_bit_for_bit(tmp_path):
    full = normlab.train(dict(TINY, out=str(tmp_path / "full")), log=quiet)
    with pytest.raises(KeyboardInterrupt):
        normlab.train(dict(TINY, out=str(tmp_path / "cut")), log=quiet, hooks=[StopAfter(1)])
    assert not (tmp_path / "cut" / "summary.json").exists()
    resumed = normlab.train(None, log=quiet, resume=tmp_path / "cut")
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert timeless(resumed.metrics) == timeless(full.metrics)
    ra = RunDir(tmp_path / "full").read_metrics()
    rb = RunDir(tmp_path / "cut").read_metrics()
    assert timeless(ra) == timeless(rb) and len(rb) == 3


def test_resume_extends_epochs_and_refuses_finished(tmp_path):
    r = normlab.train(dict(TINY, epochs=1, out=str(tmp_path / "r")), log=quiet)
    with pytest.raises(normlab.ConfigError, match="already finished 1 epochs; to train longer pass --epochs N"):
        normlab.train(None, log=quiet, resume=r.run_dir)
    more = normlab.train({"epochs": 2}, log=quiet, resume=r.run_dir)
    assert [row["epoch"] for row in more.metrics] == [1, 2]


# Ctrl-C at a known instant, kills at every write point: tests/test_crash_consistency.py


def test_atomic_write_survives_crash(tmp_path, monkeypatch):
    target = tmp_path / "last.safetensors"
    RunDir(tmp_path).save_weights({"w": torch.ones(3)}, "last.safetensors")
    real_fdopen = os.fdopen

    class Exploding:
        def __init__(self, f):
            self.f = f
        def __enter__(self):
            return self
        def __exit__(self, *a):
            self.f.close()
        def write(self, data):
            self.f.write(data[: len(data) // 2])  # half the bytes reach the disk, then the crash
            raise OSError("disk full")
        def flush(self):
            pass
        def fileno(self):
            return self.f.fileno()

    monkeypatch.setattr(nio.os, "fdopen", lambda fd, mode: Exploding(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="disk full"):
        RunDir(tmp_path).save_weights({"w": torch.zeros(3)}, "last.safetensors")
    monkeypatch.undo()
    assert torch.equal(RunDir(tmp_path).load_weights("last.safetensors")["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temp file left behind


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_checkpoint_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"epoch": 1, "payload": Evil()}, tmp_path / "state.pt", pickle_protocol=2)
    with pytest.raises(CheckpointError, match="refusing to load .*pickled Python objects.*weights_only=True"):
        checkpoint.load_state(tmp_path / "state.pt")
    assert not (tmp_path / "PWNED").exists()


def test_nan_loss_stops_with_epoch_and_step(tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(TrainingError) as e:
        normlab.train(dict(TINY, optimizer="sgd", lr=1e6, schedule="constant", out=str(out)), log=quiet)
    msg = str(e.value)
    assert "the loss became nan at epoch 1, step" in msg or "the loss became inf at epoch 1, step" in msg
    assert "Lower --lr" in msg and str(out) in msg
    assert (out / "config.json").exists() and not (out / "summary.json").exists()


# ---------------------------------------------------------------- lr-find and device options
def test_lr_find_suggests_inside_the_sweep(tmp_path):
    from normlab.train.lr_find import lr_find, plot_lr_find
    res = lr_find(dict(dataset="digits", model="mlp", progress=False), start=1e-5, end=10.0, steps=80)
    lrs, losses = res["lrs"], res["losses"]
    assert lrs[0] == pytest.approx(1e-5)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios))  # exponential sweep
    assert len(lrs) < 80  # stopped once the loss exploded (an MLP does at lr ~ 1-10 with Adam)
    assert 1e-5 < res["suggested_lr"] < lrs[losses.index(min(losses))]  # before the minimum
    plot_lr_find(res, tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"


def test_bf16_and_channels_last_on_cpu(tmp_path):
    # SGD, not Adam: Adam divides the ~0 gradients of the conv biases feeding BN by their own
    # size, turning rounding noise into full-size steps.
    base = dict(dataset="synthetic", model="lenet-bn", epochs=1, progress=False, optimizer="momentum", lr=0.05)
    ref = normlab.train(dict(base, out=str(tmp_path / "ref")), log=quiet)
    cl = normlab.train(dict(base, channels_last=True, out=str(tmp_path / "cl")), log=quiet)
    conv_w = next(p for p in cl.model.parameters() if p.dim() == 4)
    assert conv_w.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(ref.model.state_dict().values(), cl.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=5e-4)  # same math, another summation order
    bf = normlab.train(dict(base, precision="bf16", out=str(tmp_path / "bf")), log=quiet)
    assert bf.summary["final_test_acc"] >= ref.summary["final_test_acc"] - 0.05
    with pytest.raises(normlab.ConfigError, match="fp16 autocast needs a CUDA device"):
        normlab.train(dict(base, precision="fp16", device="cpu", out=str(tmp_path / "fp16")), log=quiet)


def test_channels_last_default_comes_from_the_model_unless_given_or_gn_in():
    from normlab.config import make_config
    from normlab.train.resolve import resolve_config

    def cl(**kw):
        return resolve_config(make_config(kw)).channels_last

    assert cl(model="digitnet") is True and cl(model="resnet20") is True and cl(model="densenet-d2l") is True
    assert cl(model="lenet-bn") is False and cl(model="mlp") is False and cl(model="resnet18-d2l") is False
    assert cl(model="digitnet", channels_last=False) is False and cl(model="lenet-bn", channels_last=True) is True
    # GroupNorm and InstanceNorm are slower on channels_last CPU tensors: NCHW unless asked
    assert cl(model="resnet20", norm="gn") is False and cl(model="resnet20", norm="gn:4") is False
    assert cl(model="resnet20", norm="in") is False and cl(model="resnet20", norm="ln") is True


def test_ema_by_hand():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    cfg = make_config({"optimizer": "sgd", "lr": 0.5, "ema": 0.75})
    opt = make_optimizer(model, cfg)
    step = Step(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), cfg)
    hook = EMAHook(model, cfg.ema)
    w0 = model[0].weight.detach().clone()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    step(x, y)
    hook.on_step_end(None)
    w1 = model[0].weight.detach().clone()
    step(x, y)
    hook.on_step_end(None)
    w2 = model[0].weight.detach().clone()
    want = 0.75 * (0.75 * w0 + 0.25 * w1) + 0.25 * w2
    torch.testing.assert_close(hook.ema.shadow[0].weight, want)
    assert torch.equal(hook.ema.shadow[1].running_mean, model[1].running_mean)


def test_ema_run_resumes_exactly(tmp_path):
    cfg = dict(TINY, ema=0.9, norm="bn")
    full = normlab.train(dict(cfg, out=str(tmp_path / "full")), log=quiet)
    with pytest.raises(KeyboardInterrupt):
        normlab.train(dict(cfg, out=str(tmp_path / "cut")), log=quiet, hooks=[StopAfter(2)])
    resumed = normlab.train(None, log=quiet, resume=tmp_path / "cut")
    assert timeless(resumed.metrics) == timeless(full.metrics)
    saved = RunDir(tmp_path / "cut").load_weights()
    assert all(torch.equal(saved[k], v) for k, v in full.model.state_dict().items())  # the EMA weights
    assert normlab.evaluate_run(tmp_path / "cut")["test_acc"] == full.summary["final_test_acc"]


def test_tensorboard_logs_the_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    r = normlab.train(dict(TINY, epochs=2, tensorboard=True, out=str(tmp_path / "tb")), log=quiet)
    acc = EventAccumulator(str(r.run_dir / "tensorboard"))
    acc.Reload()
    got = [(e.step, e.value) for e in acc.Scalars("test_acc")]
    assert got == [(row["epoch"], pytest.approx(row["test_acc"])) for row in r.metrics]


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_optimizers_match_torch_reference_steps(name):
    """normlab picks torch's fused kernels where the device has them; the updates must match
    the reference (for-loop) implementation to rounding, over several steps."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    ref_model = copy.deepcopy(model)
    cfg = make_config({"optimizer": name, "lr": 0.05, "weight_decay": 0.01})
    opt = make_optimizer(model, cfg)
    assert opt.param_groups[0]["fused"] is True  # this machine's torch has CPU kernels
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    ref = kind(ref_model.parameters(), lr=0.05, weight_decay=0.01, foreach=False)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    for _ in range(5):
        for m, o in ((model, opt), (ref_model, ref)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    for a, b in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fused_only_where_the_device_has_kernels():
    model = torch.nn.Linear(3, 2).to(torch.float64)  # fused kernels do take float64 on CPU
    opt = make_optimizer(model, resolved({"optimizer": "adam"}))
    assert opt.param_groups[0]["fused"] is True
    meta = torch.nn.Linear(3, 2, device="meta")  # not a device with fused kernels
    opt = make_optimizer(meta, resolved({"optimizer": "adam"}))
    assert not opt.param_groups[0]["fused"]
    assert not make_optimizer(model, resolved({"optimizer": "nadam"})).param_groups[0].get("fused")


@pytest.mark.parametrize("check_every", [1, 4])
def test_nan_is_named_at_its_step_when_checked_every_step_or_in_batches(check_every):
    """The GPU path reads the first bad step from the device every few steps; it must still
    name the exact step (6 here), not the step where it looked (8)."""
    import threading

    from normlab.data.loader import DeviceLoader, Normalize
    from normlab.train.trainer import train_epoch

    class FakeStep:
        model = torch.nn.Linear(1, 2)
        calls = 0

        def __call__(self, xb, yb):
            self.calls += 1
            loss = torch.tensor(float("inf") if self.calls == 7 else float("nan") if self.calls == 6 else 1.0)
            return torch.zeros(len(yb), 2), loss

    x = torch.zeros(40, 1, 2, 2, dtype=torch.uint8)
    loader = DeviceLoader(x, torch.zeros(40, dtype=torch.long), 4, Normalize([0.5], [0.2]))

    step = FakeStep()
    with pytest.raises(TrainingError, match=r"^the loss became nan at epoch 3, step 6$"):
        train_epoch(step, loader, 3, lambda: None, threading.Event(), check_every=check_every)
    assert step.calls == (6 if check_every == 1 else 8)


def test_channels_last_with_group_norm_on_cpu_says_it_is_slower(tmp_path):
    lines = []
    normlab.train(dict(TINY, model="lenet-bn", dataset="synthetic", norm="gn", channels_last=True, epochs=1,
                       out=str(tmp_path / "gn")), log=lines.append)
    assert any("--channels-last makes 'gn' layers slower on a CPU" in line for line in lines)
    lines.clear()
    normlab.train(dict(TINY, model="lenet-bn", dataset="synthetic", norm="gn:2", channels_last=True, epochs=1,
                       out=str(tmp_path / "gn2")), log=lines.append)
    assert any("--channels-last makes 'gn:2' layers slower on a CPU" in line for line in lines)  # any group count
    lines.clear()
    normlab.train(dict(TINY, model="lenet-bn", dataset="synthetic", norm="bn", channels_last=True, epochs=1,
                       out=str(tmp_path / "bn")), log=lines.append)
    assert not any("slower" in line for line in lines)


# ---------------------------------------------------------------- one run builder, hooks (issue 13)
def test_lr_find_builds_the_model_for_the_preprocessed_input(tmp_path):
    """lr-find once built its model from the raw 1x8x8 shape while the pipeline fed it 20 PCA
    features, and died in a matmul (`64x20 and 64x256`); it now builds through build_run."""
    from normlab import cli

    plot = tmp_path / "lr.png"
    code = cli.main(["lr-find", "--dataset", "digits", "--model", "mlp", "--preprocess", "pca:20",
                     "--steps", "12", "--no-progress", "--plot", str(plot)])
    assert code == 0 and plot.is_file()


def test_build_run_is_what_training_starts_from(tmp_path):
    """The model lr-find and the trainer start from is one build: same initial weights."""
    from normlab.train.build import build_run

    cfg = dict(TINY, preprocess="pca:20", epochs=1)
    built = build_run(make_config(cfg))
    assert built.cfg.lr == 0.05 and built.cfg.norm == "none" and built.cfg.act == "relu"
    assert next(built.model.parameters()).shape[1] == 20
    again = build_run(make_config(cfg))
    for (k, a), b in zip(built.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k


class Recorder(normlab.Hook):
    def __init__(self):
        self.events = []

    def on_start(self, loop):
        self.events.append("start")

    def on_epoch_start(self, loop):
        self.events.append(f"epoch {loop.epoch}")

    def on_step_end(self, loop):
        if self.events[-1] != "step":
            self.events.append("step")

    def on_train_end(self, loop, stats):
        self.events.append(f"trained {stats['seen']}")

    def on_epoch_end(self, loop, row):
        self.events.append(f"row {row['epoch']}")

    def on_end(self, loop, summary):
        self.events.append(f"end {summary['epochs']}")

    def close(self, loop):
        self.events.append("close")


def test_hooks_are_called_in_order_and_may_stop_the_run(tmp_path):
    rec = Recorder()
    r = normlab.train(dict(TINY, epochs=2, out=str(tmp_path / "a")), log=quiet, hooks=[rec])
    n = rec.events[3].split()[1]  # examples seen in the epoch
    assert rec.events == ["start", "epoch 1", "step", f"trained {n}", "row 1",
                          "epoch 2", "step", f"trained {n}", "row 2", "end 2", "close"]

    class StopNow(normlab.Hook):
        def on_epoch_end(self, loop, row):
            loop.should_stop = True

    r = normlab.train(dict(TINY, epochs=3, out=str(tmp_path / "b")), log=quiet, hooks=[StopNow()])
    assert [row["epoch"] for row in r.metrics] == [1] and r.summary["epochs"] == 1


def test_close_runs_after_an_error(tmp_path):
    import signal

    rec = Recorder()
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        normlab.train(dict(TINY, out=str(tmp_path / "cut")), log=quiet, hooks=[StopAfter(1), rec])
    assert rec.events[-1] == "close" and "end 1" not in "".join(rec.events)
    assert signal.getsignal(signal.SIGINT) is before  # the Signals hook put the handler back


def test_train_signature_has_no_test_switches():
    import inspect

    assert list(inspect.signature(normlab.train).parameters) == ["config", "log", "resume", "hooks"]


def test_precision_auto_is_bf16_only_where_the_hardware_has_it(tmp_path, monkeypatch):
    import json

    from normlab import device as device_mod

    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: False)
    assert device_mod.auto_precision(torch.device("cpu")) == "fp32"
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)
    assert device_mod.auto_precision(torch.device("cpu")) == "bf16"
    assert device_mod.auto_precision(torch.device("meta")) == "fp32"  # neither CPU nor CUDA: never guessed
    r = normlab.train(dict(TINY, precision="auto", epochs=1, out=str(tmp_path / "auto")), log=quiet)
    saved = json.loads((r.run_dir / "config.json").read_text())
    assert saved["precision"] == "bf16"  # the resolved value is what the run records and resumes with
    assert normlab.load(r.run_dir).config.precision == "bf16"


class StepCounter(normlab.Hook):
    """A user's hook with state: the optimizer steps it has seen, and the epochs at their ends."""

    def __init__(self):
        self.steps, self.seen = 0, []

    def on_step_end(self, loop):
        self.steps += 1

    def on_epoch_end(self, loop, row):
        self.seen.append((loop.epoch, self.steps))

    def state_dict(self):
        return {"steps": self.steps, "seen": self.seen}

    def load_state_dict(self, state):
        self.steps, self.seen = state["steps"], [tuple(e) for e in state["seen"]]


def test_a_users_hook_keeps_its_state_across_resume(tmp_path):
    """A hook's state_dict goes into each epoch's checkpoint and comes back on --resume, so the
    resumed counter ends where an uninterrupted run's does."""
    whole = StepCounter()
    normlab.train(dict(TINY, out=str(tmp_path / "whole")), log=quiet, hooks=[whole])
    cut = StepCounter()
    with pytest.raises(KeyboardInterrupt):
        normlab.train(dict(TINY, out=str(tmp_path / "cut")), log=quiet, hooks=[cut, StopAfter(1)])
    resumed = StepCounter()
    normlab.train(None, log=quiet, resume=tmp_path / "cut", hooks=[resumed])
    assert cut.seen == whole.seen[:1] and resumed.seen == whole.seen and resumed.steps == whole.steps
    assert whole.steps == 3 * math.ceil(1438 / 64)  # digits' 1,438 training images, batch 64, 3 epochs


def test_hooks_run_in_their_declared_order(tmp_path):
    """Built-in hooks say their place (`order`), whatever the list's order: a user's hook runs
    before the epoch's checkpoint by default (so its state is in it), one with a later order
    sees the epoch on disk, and summary.json comes after every hook's end."""
    from normlab.train import hooks as H

    events = []

    def committed(loop):
        return checkpoint.epoch_dir(loop.run_dir.path, loop.epoch).is_dir()

    class Default(normlab.Hook):
        def on_epoch_end(self, loop, row):
            events.append(("default", committed(loop)))

    class Late(normlab.Hook):
        order = H.ORDER_CHECKPOINT + 1

        def on_epoch_end(self, loop, row):
            events.append(("late", committed(loop)))

        def on_end(self, loop, summary):
            events.append(("end", (loop.run_dir.path / "summary.json").exists()))

    normlab.train(dict(TINY, epochs=1, out=str(tmp_path / "r")), log=quiet, hooks=[Late(), Default()])
    assert events == [("default", False), ("late", True), ("end", False)]
