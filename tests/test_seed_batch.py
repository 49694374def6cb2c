"""Seed-batched training (train/seed_batch.py, models/stacked.py) against separate runs.

The reference is the separate run itself: build.build_run + trainer.train_epoch, the code path
`normlab train` takes, one seed at a time. After one (short) epoch every weight and buffer of
every seed must equal its separate run's within 1e-4 relative (a tensor's difference norm over
its norm): float rounding differs between a grouped and a plain convolution, nothing else may.
Epochs are short (val_split holds most images out, or a large batch) so the tests stay fast.
"""

import threading

import pytest
import torch

import normlab
from normlab import faults
from normlab.config import make_config
from normlab.errors import ConfigError
from normlab.experiments.seed_groups import OFF_CPU
from normlab.rundir import RunDir
from normlab.train import checkpoint
from normlab.train.build import build_run
from normlab.train.resolve import resolve_config
from normlab.train.seed_batch import parse_seeds, refusal, train_seeds
from normlab.train.trainer import train_epoch

quiet = lambda *a: None  # noqa: E731
SEEDS = [0, 1, 2]
TOL = 1e-4

# digits (8x8, 1,437 training images); val_split 0.8 leaves 287 to train on (5 steps of 64)
SMALL = {"dataset": "digits", "epochs": 1, "val_split": 0.8, "progress": False, "threads": 1}
# Momentum SGD: the update is linear in the gradient, so a gradient's rounding (about 2e-6 relative
# per step between a grouped and a plain convolution) stays rounding. It still grows with the lr
# over the steps of an epoch (LeNet-BN at lr 0.05: to about 1e-4 in 5 steps), hence 0.02.
SGD = {"optimizer": "momentum", "lr": 0.02}


def separate(cfg: dict, seed: int) -> dict:
    """The separate run's weights after one epoch, by the trainer's own code path."""
    run = build_run(make_config(cfg, {"seed": seed}))
    train_epoch(run.step, run.pipe.train, 1, lambda: None, threading.Event())
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def assert_close(batched: dict, ref: dict, skip=()):
    assert batched.keys() == ref.keys()
    for k in ref:
        if k in skip:
            continue
        if not ref[k].is_floating_point():
            assert torch.equal(batched[k], ref[k]), k
        else:
            assert batched[k].shape == ref[k].shape, k
            assert rel(batched[k], ref[k]) <= TOL, (k, rel(batched[k], ref[k]))


def check_equivalent(cfg: dict, seeds=SEEDS, skip=()):
    results = train_seeds(cfg, seeds, log=quiet)
    assert [r.seed for r in results] == list(seeds)
    for r in results:
        assert r.error is None
        assert_close(r.weights, separate(cfg, r.seed), skip)
    return results


CASES = {
    "mlp-bn": {"model": "mlp", "width": 32, "depth": 2, "norm": "bn"},
    "mlp-gn": {"model": "mlp", "width": 32, "depth": 2, "norm": "gn:4"},
    "mlp-ln": {"model": "mlp", "width": 32, "depth": 2, "norm": "ln"},
    "mlp-none-dropout": {"model": "mlp", "width": 32, "depth": 2, "norm": "none", "hidden_dropout": 0.3, "dropout": 0.2},
    "mlp-tutorial-bn": {"model": "mlp", "width": 32, "depth": 2, "norm": "bn", "norm_impl": "tutorial"},
    "logistic": {"model": "logistic"},
    "lenet": {"model": "lenet", "resize": "16"},
    "lenet-bn": {"model": "lenet-bn", "resize": "16"},
    "lenet-gn": {"model": "lenet-bn", "resize": "16", "norm": "gn:2"},
    "lenet-ln": {"model": "lenet-bn", "resize": "16", "norm": "ln"},
    "lenet-in": {"model": "lenet-bn", "resize": "16", "norm": "in-affine", "fc_norm": False},
    "lenet-none": {"model": "lenet-bn", "resize": "16", "norm": "none"},
    "lenet-tutorial-bn": {"model": "lenet-bn", "resize": "16", "norm_impl": "tutorial"},
    "digitnet": {"model": "digitnet", "width": 8},
    # the newer norms (nn/newer_norms.py): mlp and lenet-bn as the claims use them, digitnet for a
    # channels_last separate run (the leaderboard's)
    "mlp-rms": {"model": "mlp", "width": 32, "depth": 2, "norm": "rms"},
    "lenet-rms": {"model": "lenet-bn", "resize": "16", "norm": "rms"},
    "digitnet-rms": {"model": "digitnet", "width": 8, "norm": "rms"},
    "lenet-ln2d": {"model": "lenet-bn", "resize": "16", "norm": "ln2d"},
    "mlp-noisy-bn": {"model": "mlp", "width": 32, "depth": 2, "norm": "noisy-bn"},
    "lenet-noisy-bn": {"model": "lenet-bn", "resize": "16", "norm": "noisy-bn"},
    "digitnet-noisy-bn": {"model": "digitnet", "width": 8, "norm": "noisy-bn"},
    "mlp-gbn": {"model": "mlp", "width": 32, "depth": 2, "norm": "gbn:16"},
    "lenet-gbn": {"model": "lenet-bn", "resize": "16", "norm": "gbn:24"},
    "mlp-brn": {"model": "mlp", "width": 32, "depth": 2, "norm": "brn"},
    "lenet-brn": {"model": "lenet-bn", "resize": "16", "norm": "brn"},
    "lenet-frn": {"model": "lenet-bn", "resize": "16", "norm": "frn", "fc_norm": False},
    "lenet-evos0": {"model": "lenet-bn", "resize": "16", "norm": "evos0:2", "fc_norm": False},
    "lenet-evob0": {"model": "lenet-bn", "resize": "16", "norm": "evob0", "fc_norm": False},
    "lenet-lrn": {"model": "lenet-bn", "resize": "16", "norm": "lrn", "fc_norm": False},
    "digitnet-lrn": {"model": "digitnet", "width": 8, "norm": "lrn"},
    "lenet-ws": {"model": "lenet-bn", "resize": "16", "norm": "ws"},
    "lenet-gn-ws": {"model": "lenet-bn", "resize": "16", "norm": "gn:2+ws"},
    "mlp-wn": {"model": "mlp", "width": 32, "depth": 2, "norm": "wn"},
    "lenet-wn": {"model": "lenet-bn", "resize": "16", "norm": "wn"},
    # max-norm that binds (unit rows above 0.5 within the epoch): each unit's row is renormed, not a
    # seed's whole matrix (what the stacked renorm did until a claim's numbers moved)
    "mlp-max-norm": {"model": "mlp", "width": 32, "depth": 2, "norm": "none", "max_norm": 0.5},
    "lenet-max-norm": {"model": "lenet-bn", "resize": "16", "max_norm": 0.5},
    # the recurrent nets (models/rnn.py) as the ln-recurrent claim trains them, and an LSTM
    "gru-ln": {"model": "gru-rows", "width": 16, "norm": "ln"},
    "gru-bn": {"model": "gru-rows", "width": 16, "norm": "bn"},
    "gru-none-dropout": {"model": "gru-rows", "width": 16, "norm": "none", "dropout": 0.3},
    "lstm-ln": {"model": "lstm-rows", "width": 16, "norm": "ln"},
}


@pytest.mark.parametrize("name", list(CASES))
def test_one_epoch_equals_separate_runs(name):
    """Momentum SGD: each seed's weights, BN statistics included, are its separate run's."""
    check_equivalent({**SMALL, **SGD, **CASES[name]})


@pytest.mark.parametrize("model", ["resnet20", "preact-resnet20"])
def test_cifar_resnets_within_their_own_rounding(model):
    """A 20-layer net amplifies rounding: the separate run itself moves by 1e-4 to 5e-4 when only
    its float rounding changes (the other memory layout, or another thread count). So here the
    bar is that floor, measured: each seed's weights are at most twice as far from its separate
    run as that run is from itself trained in the other layout (or within 1e-4).
    (The BN biases, values near 1e-3 after 5 steps, differ by about 1% in both comparisons.)"""
    cfg = {**SMALL, **SGD, "model": model, "lr": 0.01}
    own_layout = resolve_config(make_config(cfg)).channels_last
    for r in train_seeds(cfg, [0, 1], log=quiet):
        ref, other = separate(cfg, r.seed), separate({**cfg, "channels_last": not own_layout}, r.seed)
        for k in ref:
            if ref[k].is_floating_point():
                floor = rel(other[k], ref[k])
                assert rel(r.weights[k], ref[k]) <= max(TOL, 2 * floor), (k, rel(r.weights[k], ref[k]), floor)
            else:
                assert torch.equal(r.weights[k], ref[k]), k


def test_adam_mlp_bit_identical():
    """An MLP's stacked step is the separate runs' to the bit on a CPU (the batched matmuls'
    backward is written per seed, as F.linear's), so Adam, which divides by the gradient's own
    size and so turns rounding noise in near-zero gradients into whole steps, agrees exactly too."""
    cfg = {**SMALL, "model": "mlp", "width": 32, "depth": 2, "norm": "bn", "optimizer": "adam", "lr": 0.01}
    results = train_seeds(cfg, SEEDS, log=quiet)
    for r in results:
        ref = separate(cfg, r.seed)
        assert all(torch.equal(r.weights[k], ref[k]) for k in ref)


def test_adam_lenet_bn():
    """The claims' LeNet-BN with Adam. The conv and Linear biases right before a batch norm have a
    gradient of exactly zero in exact arithmetic (the norm subtracts them again); in float it is
    rounding noise, which Adam scales up to steps of about lr, so those biases are noise in any
    run, and so are the running means that average them in. Every other tensor must agree, and
    so must the function the net trains (train mode: batch statistics, where those biases cancel)."""
    cfg = {**SMALL, "model": "lenet-bn", "resize": "16", "optimizer": "adam", "lr": 1e-3}
    noise = {"features.0.bias", "features.4.bias", "fc.0.bias", "fc.3.bias",
             "features.1.running_mean", "features.5.running_mean", "fc.1.running_mean", "fc.4.running_mean"}
    x = torch.randn(16, 1, 16, 16)
    for r in train_seeds(cfg, SEEDS, log=quiet):
        ref = separate(cfg, r.seed)
        assert_close(r.weights, ref, skip=noise)
        a, b = (normlab.models.create_model("lenet-bn", input_size=(16, 16)) for _ in range(2))
        a.load_state_dict(r.weights)
        b.load_state_dict(ref)
        assert rel(a.train()(x).detach(), b.train()(x).detach()) <= TOL


def test_no_leak_between_seeds():
    """A seed's result depends on nothing of the others': with dropout and batch norm, seed 1
    trained beside seeds 0 and 2, alone, and beside two other seeds in the other order gives the
    same weights (its init, data order, dropout masks and BN statistics are its own); and a seed
    whose loss is made to differ (another lr cannot be given per seed, so a different seed is
    the perturbation) leaves its neighbours' results unchanged."""
    cfg = {**SMALL, **SGD, "model": "mlp", "width": 32, "depth": 2, "norm": "bn", "hidden_dropout": 0.3}
    together = {r.seed: r.weights for r in train_seeds(cfg, [0, 1, 2], log=quiet)}
    alone = train_seeds(cfg, [1], log=quiet)[0].weights
    other = {r.seed: r.weights for r in train_seeds(cfg, [7, 1, 5], log=quiet)}
    for k in alone:
        assert torch.equal(together[1][k], alone[k]) or rel(together[1][k], alone[k]) <= TOL, k
        assert torch.equal(other[1][k], alone[k]) or rel(other[1][k], alone[k]) <= TOL, k
    # and the seeds differ from each other (nothing was copied from one seed to another)
    assert not torch.equal(together[0]["features.1.weight"], together[1]["features.1.weight"])
    assert not torch.equal(together[1]["features.2.running_mean"], other[5]["features.2.running_mean"])


def test_bn_statistics_are_per_seed():
    """The stacked batch norm over S*C channels never pools seeds: feeding seed 0 a batch scaled
    by 100 leaves seed 1's running statistics what its own batch gives."""
    from normlab.models.stacked import SeedStacked

    torch.manual_seed(0)
    models = [normlab.models.create_model("lenet-bn", input_size=(16, 16)) for _ in range(2)]
    ref = [torch.nn.Module.state_dict(m) for m in models]
    stacked = SeedStacked(models)
    x = torch.randn(2, 8, 1, 16, 16)
    x[0] *= 100
    stacked.train()(x)
    models[1].train()(x[1])
    got = stacked.net.features[1].running_mean.view(2, -1)[1]
    assert torch.allclose(got, models[1].features[1].running_mean, rtol=1e-5, atol=1e-6)
    assert ref  # the templates were read before training


@pytest.mark.parametrize("norm", ["lrn", "rms", "ln2d", "evos0:2", "frn", "evob0", "gbn:4", "brn", "ws"])
def test_newer_norms_never_pool_seeds(norm):
    """A layer whose statistics span channels (lrn's window, rms and ln2d over C, EvoNorm-S0's
    groups) or the batch (gbn, brn, evob0) takes none from another seed: seed 0's input scaled by
    1,000 leaves seed 1's logits what its own model gives, in the stacked model's channels_last
    too (one epoch's weights cannot show it for lrn: its window barely moves at these values)."""
    from normlab.models.stacked import SeedStacked

    torch.manual_seed(0)
    models = [normlab.models.create_model("lenet-bn", norm=norm, fc_norm=False, input_size=(16, 16))
              for _ in range(2)]
    x = torch.randn(2, 8, 1, 16, 16)
    x[0] *= 1000
    for layout in (False, True):
        stacked = SeedStacked(models, channels_last=layout).train()
        got = stacked(x)[1]
        assert rel(got.detach(), models[1].train()(x[1]).detach()) <= 1e-5, layout


RESUME_CFG = {**SMALL, **SGD, "model": "mlp", "width": 16, "depth": 1, "norm": "bn", "epochs": 2, "dropout": 0.2}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("sb")
    outs = [root / f"s{s}" for s in (0, 1)]
    return train_seeds(RESUME_CFG, [0, 1], outs, root / ".seed-batch", log=quiet), outs


def test_run_folders_load(uninterrupted):
    """Each seed's folder is a run folder: normlab.load and evaluate_run read it and give its own
    test accuracy; the summary says it was trained seed-batched, with how many seeds."""
    results, outs = uninterrupted
    for r, out in zip(results, outs):
        sm = RunDir(out).read_json("summary.json")
        assert sm["seed_batch"]["enabled"] and sm["seed_batch"]["seeds"] == 2 and sm["seed"] == r.seed
        assert normlab.evaluate_run(out)["test_acc"] == sm["final_test_acc"]
        assert normlab.load(out).config.seed == r.seed
        assert [row["epoch"] for row in RunDir(out).read_metrics()] == [1, 2]
        assert checkpoint.load_last_complete_epoch(out).epoch == 2


def _crashing_child(point: str, outs, group) -> int:
    import os

    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            torch.set_num_threads(1)
            faults.configure(crash=point)
            train_seeds(RESUME_CFG, [0, 1], outs, group, log=quiet)
            code = 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


# after the group's first commit, before any seed's; after epoch 2's group commit and seed 0's
# own, before seed 1's; while seed 0's end files are written
@pytest.mark.parametrize("point", ["seed-batch group committed#1", "commit after-rename#5",
                                   "before-rename weights.safetensors#1"])
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the crashing child is a fork")
def test_kill_and_resume_is_bit_identical(uninterrupted, tmp_path, point):
    """A group killed (os._exit, as kill -9) at a commit point resumes, by running it again, to
    exactly the weights and metrics of the uninterrupted seed-batched run; every seed folder
    ends complete."""
    full, _ = uninterrupted
    outs = [tmp_path / f"s{s}" for s in (0, 1)]
    assert _crashing_child(point, outs, tmp_path / ".seed-batch") == faults.CRASH_EXIT
    resumed = train_seeds(RESUME_CFG, [0, 1], outs, tmp_path / ".seed-batch", log=quiet)
    timing = ("epoch_seconds", "elapsed_seconds", "examples_per_s")
    for a, b, out in zip(full, resumed, outs):
        assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
        assert all(torch.equal(a.weights[k], w) for k, w in RunDir(out).load_weights().items())
        strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
        assert strip(b.rows) == strip(a.rows)
        assert (out / "summary.json").is_file() and checkpoint.load_last_complete_epoch(out).epoch == 2


def test_one_seed_folder_resumes_alone(tmp_path):
    """`normlab train --resume` of one seed's folder (trained seed-batched, stopped after epoch 1)
    continues that seed alone, from its own checkpoint: its optimizer state and generators are
    the seed's slice of the group's."""
    cfg = {**SMALL, **SGD, "model": "mlp", "width": 16, "depth": 1, "norm": "bn", "epochs": 1}
    outs = [tmp_path / f"s{s}" for s in (0, 1)]
    train_seeds(cfg, [0, 1], outs, tmp_path / ".seed-batch", log=quiet)
    res = normlab.train({"epochs": 2}, resume=outs[1], log=quiet)
    normlab.train({**cfg, "seed": 1, "out": str(tmp_path / "sep1")}, log=quiet)  # the separate run, likewise
    ref = normlab.train({"epochs": 2}, resume=tmp_path / "sep1", log=quiet)
    w, r = RunDir(outs[1]).load_weights(), RunDir(ref.run_dir).load_weights()
    for k in r:
        assert torch.equal(w[k], r[k]) or rel(w[k], r[k]) <= TOL, k
    assert res.summary["epochs"] == 2


def test_refused_where_it_does_not_apply():
    assert refusal(make_config({"optimizer": "lbfgs"})).startswith("L-BFGS")
    assert refusal(make_config({"batch_classes": 2})).startswith("--batch-classes")
    with pytest.raises(ConfigError, match="seed batching: L-BFGS"):
        train_seeds({**SMALL, "model": "mlp", "optimizer": "lbfgs"}, [0, 1], log=quiet)
    with pytest.raises(ConfigError, match=r"^seed batching: model googlenet-mini with norm none: it has a "
                                          r"GoogLeNetMini block \(''\) that seed batching has no stacked form for"):
        train_seeds({**SMALL, "model": "googlenet-mini", "resize": "16"}, [0, 1], log=quiet)


def test_norms_without_a_stacked_form_are_refused():
    """The config check and the model check agree: a norm whose layers have a stacked form passes
    both; one without (ln-chw, --norm-impl reference; a parametrization other than weight norm)
    is refused by name, and its seeds train one by one."""
    from normlab.models.stacked import why_not
    from normlab.train.seed_batch import norm_refusal

    def lenet(norm, **kw):
        return {**SMALL, "model": "lenet-bn", "resize": "16", "norm": norm, "fc_norm": False, **kw}

    for norm in ("rms", "ln2d", "brn", "frn", "evob0", "evos0:2", "gbn:8", "noisy-bn", "lrn", "ws", "gn:2+ws", "wn"):
        assert norm_refusal(make_config(lenet(norm))) is None, norm
        assert why_not(normlab.models.create_model("lenet-bn", norm=norm, fc_norm=False, input_size=(16, 16))) is None
    assert norm_refusal(make_config(lenet("ln-chw"))) == "norm ln-chw has no stacked form yet"
    assert norm_refusal(make_config(lenet("gn", norm_impl="reference"))) == "--norm-impl reference has no stacked form"
    assert why_not(normlab.models.create_model("lenet-bn", norm="ln-chw", fc_norm=False, input_size=(16, 16))) == (
        "it has a LayerNormCHW layer ('features.1') that seed batching has no stacked form for")
    spectral = normlab.models.create_model("mlp", width=8, depth=1, input_size=(8, 8))
    torch.nn.utils.parametrizations.spectral_norm(spectral.classifier)
    assert why_not(spectral) == "it has a Linear layer ('classifier') that seed batching has no stacked form for"
    with pytest.raises(ConfigError, match=r"^seed batching: norm ln-chw has no stacked form yet; train the seeds one"):
        train_seeds(lenet("ln-chw"), [0, 1], log=quiet)


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1,5,7") == [1, 5, 7]
    assert parse_seeds("0-1,10") == [0, 1, 10]
    for bad in ("", "a", "3-x", "1,1"):
        with pytest.raises(ConfigError, match="seeds: "):
            parse_seeds(bad)


def test_summary_has_the_separate_runs_keys(uninterrupted, tmp_path):
    results, outs = uninterrupted
    ref = normlab.train({**RESUME_CFG, "seed": 0, "out": str(tmp_path / "sep")}, log=quiet).summary
    mine = RunDir(outs[0]).read_json("summary.json")
    assert set(mine) - set(ref) == {"seed_batch"} and set(ref) <= set(mine)


def test_compare_batches_a_cells_seeds_and_says_where_it_does_not(tmp_path, capsys):
    """`normlab compare`: the mlp cell's seeds are one seed batch (their summaries say so), the
    digitnet cell's are trained one by one with one line saying why (on a CPU: not faster batched);
    --no-seed-batch trains every run alone, to the same weights within rounding."""
    from normlab.cli import main

    yml = tmp_path / "e.yaml"
    yml.write_text("base: {dataset: digits, epochs: 1, val_split: 0.8, width: 8, optimizer: momentum, lr: 0.05}\n"
                   "factors: {model: [mlp, digitnet]}\nseeds: 2\n")
    assert main(["compare", str(yml), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert f"seeds one by one in 1 cell (model=digitnet): {OFF_CPU['digitnet']}" in out
    runs = tmp_path / "a" / "runs"
    assert RunDir(runs / "model=mlp-s1").read_json("summary.json")["seed_batch"]["seeds"] == 2
    assert "seed_batch" not in RunDir(runs / "model=digitnet-s1").read_json("summary.json")
    assert main(["compare", str(yml), "--out", str(tmp_path / "b"), "--no-seed-batch"]) == 0
    assert "seed_batch" not in RunDir(tmp_path / "b" / "runs" / "model=mlp-s1").read_json("summary.json")
    for s in (0, 1):
        a = RunDir(runs / f"model=mlp-s{s}").load_weights()
        b = RunDir(tmp_path / "b" / "runs" / f"model=mlp-s{s}").load_weights()
        assert all(rel(a[k], b[k]) <= TOL for k in b)


def test_seed_batch_options_refused_where_unused(capsys):
    from normlab.cli import main

    assert main(["train", "--seed-batch", "2", "--model", "mlp"]) == 2
    assert capsys.readouterr().err.strip() == ("normlab train: error: --seed-batch and --no-seed-batch say how the "
                                               "seeds of --seeds are trained; add --seeds (e.g. --seeds 0-9) or drop them")
    assert main(["train", "--seeds", "0-1", "--seed", "3"]) == 2
    assert capsys.readouterr().err.strip() == "normlab train: error: --seeds lists the seeds to train; drop --seed"
    from normlab.train.seed_batch import seed_batch_option

    with pytest.raises(ConfigError, match="contradict"):
        seed_batch_option(True, 3)
    assert seed_batch_option(False, None) is True and seed_batch_option(True, None) is False
    assert seed_batch_option(False, 4) == 4


def test_a_failed_seed_is_frozen_and_the_others_go_on():
    """A seed whose loss is not finite fails with its separate run's message (epoch and step),
    and from then on its parameters, BN statistics and optimizer state no longer change, while
    the other seeds' do. (The NaN is injected: a config that diverges for one seed and not another
    would test the data, not the mechanism.)"""
    from contextlib import ExitStack

    from normlab.train.resolve import resolve_config
    from normlab.train.seed_batch import Group

    cfg = {**SMALL, **SGD, "model": "mlp", "width": 16, "depth": 1, "norm": "bn"}
    with ExitStack() as held:
        g = Group([resolve_config(make_config(cfg, {"seed": s})) for s in (0, 1)], [None, None], None, quiet, held)
        batches = iter(g.loader)
        out, losses = g.step(*next(batches))
        g._check_finite(torch.tensor([losses[0].item(), float("nan")]), 3, 7)
        assert [s.status for s in g.seeds] == ["active", "failed"]
        assert "the loss became nan at epoch 3, step 7. Lower --lr" in g.seeds[1].error
        before = {k: v.clone() for k, v in g.model.net.state_dict().items()}
        mom = {id(p): st["momentum_buffer"].clone() for p, st in g.optimizer.state.items()}
        for _ in range(2):
            g.step(*next(batches))
            g.freezer.hold()
        after = g.model.net.state_dict()
        for k, v in after.items():
            if v.dim() == 0:
                continue
            n = v.shape[0] // 2
            assert torch.equal(v.narrow(0, n, n), before[k].narrow(0, n, n)), k  # seed 1: frozen
        assert not torch.equal(after["features.1.weight"][0], before["features.1.weight"][0])  # seed 0 trains
        for p, st in g.optimizer.state.items():
            n = p.shape[0] // 2
            assert torch.equal(st["momentum_buffer"].narrow(0, n, n), mom[id(p)].narrow(0, n, n))


def test_a_speed_claims_seeds_are_trained_one_by_one_whatever_seed_batch_says(tmp_path, monkeypatch):
    """rms-vs-ln measures each layer's training speed, a separate run's: a seed batch's speed
    (both norms stack) is another measure, so the claims runner trains that experiment's seeds one
    by one and says why; another experiment's mlp cell is still batched."""
    from normlab.experiments import seed_groups
    from normlab.experiments.claims import runner

    seen = {}
    monkeypatch.setattr(runner, "run_pending", lambda todo, jobs, outcome, log, seed_batch, alone: seen.update(
        todo=list(todo), alone=alone))
    exps, _ = runner.plan(["rms-vs-ln", "bn-higher-lr"], quick=True)
    runner.train_cells(exps, tmp_path, 1, None, quiet)
    assert seen["alone"] == {"rms-ln/": "a speed claim: each arm's own training speed is the measure"}
    lines = []
    work = seed_groups.units(seen["todo"], True, lines.append, seen["alone"])
    rms = [u for u in work if u[0][0].startswith("rms-ln/")]
    assert rms and all(len(names) == 1 and group is None for names, _, group in rms)
    assert any(len(names) > 1 for names, _, group in work if not names[0].startswith("rms-ln/"))
    assert any(line.endswith("a speed claim: each arm's own training speed is the measure")
               and "rms-ln/norm=ln" in line for line in lines), lines


def test_runs_of_the_same_name_in_two_folders_never_share_a_seed_batch(tmp_path):
    """The leaderboard keeps runs of the same names per batch size (b2/bn-lr0.001-s100, b8/...):
    their seed batches' checkpoints must be apart, or the second finds the first's epochs."""
    from normlab.experiments import seed_groups

    cfg = {**SMALL, **SGD, "model": "mlp", "width": 8}
    todo = [(f"{b}/bn-s{s}", dict(cfg, batch_size=n, seed=s, out=str(tmp_path / "tune" / b / f"bn-s{s}")))
            for b, n in (("b2", 2), ("b8", 8)) for s in (0, 1)]
    work = seed_groups.units(todo, True, quiet)
    groups = [g for _, _, g in work]
    assert len(groups) == 2 and groups[0] != groups[1]
    assert groups[0] == tmp_path / "tune" / ".seed-batch" / "b2" / "bn-s0_1"
    for unit in work:  # the second batch trains (it found the first's epochs and failed before)
        assert [status for _, status, *_ in seed_groups.run_unit(unit)] == ["done", "done"]
    sweep_run = tmp_path / "sweep" / "runs" / "norm=bn-s0"
    assert seed_groups.batches_of(sweep_run) == tmp_path / "sweep" / ".seed-batch" / "runs"


def test_best_weights_are_each_seeds_own_in_epochs_that_did_not_improve(tmp_path):
    """A seed's best weights (chosen on its validation accuracy) are written in the epoch they
    change and carried (linked) through the epochs that do not improve, as a separate run's: each
    seed's last checkpoint holds its separate run's best weights and best epoch."""
    cfg = {**SMALL, **SGD, "model": "mlp", "width": 16, "depth": 1, "norm": "none", "lr": 1.0, "epochs": 8}
    outs = [tmp_path / f"b{s}" for s in SEEDS]
    train_seeds(cfg, SEEDS, outs, tmp_path / ".group", log=quiet)
    stale = 0
    for s, out in zip(SEEDS, outs):
        normlab.train({**cfg, "seed": s, "out": str(tmp_path / f"sep{s}")}, log=quiet)
        mine = checkpoint.load_last_complete_epoch(out)
        ref = checkpoint.load_last_complete_epoch(tmp_path / f"sep{s}")
        assert mine.state["best_epoch"] == ref.state["best_epoch"]
        assert_close(mine.weights(checkpoint.BEST), ref.weights(checkpoint.BEST))
        stale += mine.state["best_epoch"] < 8
    assert stale >= 1  # at least one seed's best is from an earlier epoch: the linked path ran


@pytest.mark.parametrize("norm", ["bn", "gn:2", "ln", "in-affine", "rms", "ln2d", "brn", "gbn:16", "frn", "evob0",
                                  "evos0:2", "lrn", "noisy-bn", "ws", "gn:2+ws", "wn", "none"])
def test_a_channels_last_stack_stays_channels_last(norm):
    """Every stacked layer of a channels_last seed batch (LeNet's on a CPU) hands the next one a
    channels_last map: one that returned NCHW (the stacked InstanceNorm did) sent every layer
    after it down the slower NCHW kernels (max pooling 10x slower on a CPU)."""
    from normlab.models.stacked import SeedStacked

    kw = {"fc_norm": False} if norm in ("in-affine", "frn", "evob0", "evos0:2", "lrn") else {}
    models = [normlab.create_model("lenet-bn", num_classes=10, in_channels=1, input_size=(16, 16), norm=norm, **kw)
              for _ in range(2)]
    stack = SeedStacked(models, [torch.Generator() for _ in models], channels_last=True, run_channels_last=False)
    nchw = []

    def check(mod, _inp, out):
        if isinstance(out, torch.Tensor) and out.dim() == 4 and not out.is_contiguous(memory_format=torch.channels_last):
            nchw.append(type(mod).__name__)

    for m in stack.modules():
        m.register_forward_hook(check)
    stack(torch.randn(2, 4, 1, 16, 16))
    assert nchw == []


def test_wide_mlps_train_one_by_one_on_a_cpu_where_batching_measured_no_faster():
    from normlab.experiments.seed_groups import WIDE_MLP_WHY, why_not

    base = {"dataset": "digits", "model": "mlp", "device": "cpu"}
    assert why_not({**base, "width": 512}) == why_not({**base, "widths": "64,512"}) == WIDE_MLP_WHY
    assert why_not({**base, "width": 256}) is None and why_not({**base, "widths": "300,100"}) is None
