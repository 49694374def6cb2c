"""The exact claims against hand counts, the verdict rule, and `normlab claims --only`."""

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as st

import normlab
from normlab.experiments import claims
from normlab.cli import main
from normlab.errors import ConfigError

from normlab.analysis import results
from normlab.experiments import seed_groups, spec, sweep
from normlab.analysis.claims import exact, lr_sweep, measures


def test_inception_mult_adds_match_hand_count():
    # Inception (3a) on 28x28x192, per output pixel (784 of them), 5x5 kernel:
    # with reductions: 1x1 192*64 + 1x1 192*96 + 3x3 96*128*9 + 1x1 192*16 + 5x5 16*32*25 + pool 1x1 192*32
    hw = 28 * 28
    with_red = hw * (192 * 64 + 192 * 96 + 96 * 128 * 9 + 192 * 16 + 16 * 32 * 25 + 192 * 32)
    naive = hw * (192 * 64 + 192 * 128 * 9 + 192 * 32 * 25 + 192 * 32)
    assert with_red == 128_049_152 and naive == 308_281_344
    m = claims.inception_mult_adds(**claims.INCEPTION_3A)
    assert m["with_1x1"] == with_red
    assert m["without_1x1"] == naive
    r = claims.claim_inception(True)
    assert r["verdict"] == claims.HOLDS


def test_small_inception_config_hand_count():
    m = claims.inception_mult_adds(cin=4, c1=2, c3r=1, c3=3, c5r=1, c5=2, pool_proj=2, hw=5)
    assert m["with_1x1"] == 25 * (4 * 2 + 4 * 1 + 1 * 3 * 9 + 4 * 1 + 1 * 2 * 25 + 4 * 2)
    assert m["without_1x1"] == 25 * (4 * 2 + 4 * 3 * 9 + 4 * 2 * 25 + 4 * 2)


def test_norm_train_eval_claim_holds_with_exact_numbers():
    r = claims.claim_norm_modes(True)
    n = r["numbers"]
    assert n["bn"]["running_buffers"] == ["running_mean", "running_var"]
    assert n["bn"]["max_abs_diff"] > 1.0  # batch mean 3 vs running mean 0.3 after one update
    for k in ("ln", "in", "gn"):
        assert n[k] == {"running_buffers": [], "max_abs_diff": 0.0}
    assert r["verdict"] == claims.HOLDS


@pytest.mark.parametrize("lo,hi,direction,expected", [
    (0.1, 0.5, +1, claims.HOLDS),
    (-0.5, -0.1, -1, claims.HOLDS),
    (-0.5, -0.1, +1, claims.FAILS),
    (0.1, 0.5, -1, claims.FAILS),
    (-0.1, 0.2, +1, claims.INCONCLUSIVE),
    (-0.1, 0.2, -1, claims.INCONCLUSIVE),
    (0.0, 0.2, +1, claims.INCONCLUSIVE),  # touching 0 is not excluding it
    (float("nan"), 0.2, +1, claims.INCONCLUSIVE),
])
def test_verdict_rule(lo, hi, direction, expected):
    assert claims.verdict_from_ci(lo, hi, direction) == expected


def test_compare_arms_on_synthetic_samples():
    base = [0.10, 0.12, 0.11, 0.09, 0.10]
    assert claims.compare_arms(base, [b + 0.5 for b in base], +1)["verdict"] == claims.HOLDS
    r = claims.compare_arms(base, [b - 0.5 for b in base], +1)
    assert r["verdict"] == claims.FAILS and r["effect"] == pytest.approx(-0.5)
    mixed = [b + d for b, d in zip(base, [0.3, -0.3, 0.2, -0.2, 0.0])]
    assert claims.compare_arms(base, mixed, +1)["verdict"] == claims.INCONCLUSIVE


def test_unknown_claim_name_is_a_clear_error():
    with pytest.raises(ConfigError) as e:
        claims.select("inception")
    assert str(e.value) == ("unknown claim 'inception'. Did you mean 'inception-1x1'? Valid choices: "
                            + ", ".join(sorted(claims.CLAIMS)) + ".")


def test_cli_claims_only_writes_report(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["claims", "--quick", "--out", str(out), "--only", "inception-1x1,norm-train-eval"]) == 0
    doc = json.loads((out / "claims.json").read_text())
    assert [c["name"] for c in doc["claims"]] == ["inception-1x1", "norm-train-eval"]
    assert all(c["verdict"] == "holds" for c in doc["claims"])
    md = (out / "claims.md").read_text()
    assert "128,049,152" in md and "308,281,344" in md and "**holds**" in md
    rows = parse_table((out / "claims.html").read_text()).rows[1:]
    assert [(r[0][0], r[5][0], r[1]) for r in rows] == [
        ("inception-1x1", claims.CLAIMS["inception-1x1"].text, ("holds", "holds")),
        ("norm-train-eval", claims.CLAIMS["norm-train-eval"].text, ("holds", "holds"))]
    assert rows[0][2][0] == "0.415 x mult-adds (with / without 1x1)"  # 128,049,152 / 308,281,344
    assert doc["claims"][0]["effect"] == pytest.approx(128_049_152 / 308_281_344)


def test_gn_interpolates_counts_the_seeds_example():
    # seed 004: 5 maps of 10 channels: LN 5 means, IN 50, GN with 2 groups 10 (as many as BN)
    x = torch.zeros(5, 10, 4, 4)
    assert [exact.group_stats(k, x, 2) for k in ("ln", "gn", "in", "bn")] == [5, 10, 50, 10]
    r = exact.claim_gn_interpolates(True)
    d = r["numbers"]["max_abs_diff"]
    assert d["gn(1) vs ln"] < 1e-12 and d["gn(10) vs in"] < 1e-12 and d["gn(2) vs by hand"] < 1e-12
    assert d["gn(2) vs ln"] > 0.1 and d["gn(2) vs in"] > 0.1
    assert r["verdict"] == claims.HOLDS


def test_all_of_combines_predictions():
    H, F, I = claims.HOLDS, claims.FAILS, claims.INCONCLUSIVE
    assert claims.all_of([H, H]) == H
    assert claims.all_of([H, I]) == I
    assert claims.all_of([I, F]) == F and claims.all_of([H, F]) == F
    assert claims.all_of([]) == I


# ---------------------------------------------------------------- trained claims, with a fake runner
class FakeRunner:
    """Stands in for sweep.run_job (the sweep runner's one training call): records each config
    and leaves what a run leaves, summary.json from `table(config)` (a str is a failure message,
    written to failed.json as the real runner does), and optionally weights.safetensors."""

    def __init__(self, table, weights=None):
        self.table, self.weights, self.calls = table, weights, []

    def __call__(self, config):
        from safetensors.torch import save_file

        self.calls.append(dict(config))
        out = Path(config["out"])
        out.mkdir(parents=True, exist_ok=True)
        s = self.table(config)
        if isinstance(s, str):
            (out / "failed.json").write_text(json.dumps({"error": s}))
            return str(out), "failed", s, 0.0
        (out / "summary.json").write_text(json.dumps({"wall_seconds": 0.25, **s}))
        if self.weights:
            save_file(self.weights(config), str(out / "weights.safetensors"))
        return str(out), "done", None, 0.0


@pytest.fixture
def fake(monkeypatch):
    def install(table, weights=None):
        f = FakeRunner(table, weights)
        monkeypatch.setattr(sweep, "run_job", f)
        # a cell's seeds trained as one seed batch: the fake stands in for each of its runs
        monkeypatch.setattr(seed_groups, "run_group",
                            lambda names, cfgs, group: [(n, *f(c)[1:]) for n, c in zip(names, cfgs)])
        return f
    return install


def quiet(*_a, **_k):
    pass


def run(tmp_path, only, quick=True, **kw):
    return claims.run_claims(tmp_path / "rep", quick=quick, only=only, log=quiet, **kw)


def strip(cfg, *keys):
    return {k: v for k, v in cfg.items() if k not in ("seed", "out", *keys)}


def assert_paired(calls, key, levels, seeds):
    """Every level of `key` ran on exactly the seeds 0..seeds-1, and the configs differ only
    in `key`, the seed and the run folder."""
    groups = {}
    for c in calls:
        groups.setdefault(c[key], []).append(c)
    assert sorted(groups, key=str) == sorted(levels, key=str)
    for level, cs in groups.items():
        assert sorted(c["seed"] for c in cs) == list(range(seeds)), level
    first = strip(calls[0], key)
    assert all(strip(c, key) == first for c in calls)
    assert all(c["threads"] == 1 and c["progress"] is False for c in calls)
    assert len({c["out"] for c in calls}) == len(calls)  # a fresh run folder each


def test_difference_of_drops_on_hand_numbers():
    d = claims.difference_of_drops([0.9, 0.8], [0.5, 0.6], [0.95, 0.9], [0.9, 0.9])
    assert d == pytest.approx([(0.9 - 0.5) - (0.95 - 0.9), (0.8 - 0.6) - 0.0])
    with pytest.raises(ValueError) as e:
        claims.difference_of_drops([1, 2], [1], [1, 2], [1, 2])
    assert str(e.value) == "need four samples paired by seed (equally long), got lengths [2, 1, 2, 2]"


GN_TABLE = {("bn", 32): 0.90, ("bn", 2): 0.60, ("gn:2", 32): 0.85, ("gn:2", 2): 0.84}


@pytest.mark.parametrize("quick,seeds,epochs", [(True, 3, 1), (False, 5, 2)])
def test_gn_batch_size_pairs_four_cells_and_takes_the_difference_of_drops(fake, tmp_path, quick, seeds, epochs):
    # BN at batch 2 loses 0.01 more per seed, so the per-seed effect is 0.29 + 0.01 * seed.
    f = fake(lambda c: {"final_test_acc": GN_TABLE[c["norm"], c["batch_size"]]
                        - (0.01 * c["seed"] if (c["norm"], c["batch_size"]) == ("bn", 2) else 0.0),
                        "final_train_acc": 0.0})
    r = run(tmp_path, "gn-batch-size", quick)["claims"][0]
    assert len(f.calls) == 4 * seeds
    cells = {(c["norm"], c["batch_size"]) for c in f.calls}
    assert cells == set(GN_TABLE)
    for cell in cells:
        assert sorted(c["seed"] for c in f.calls if (c["norm"], c["batch_size"]) == cell) == list(range(seeds))
    assert all(strip(c, "norm", "batch_size", "epochs") == strip(f.calls[0], "norm", "batch_size", "epochs")
               for c in f.calls)
    assert f.calls[0]["dataset"] == "mnist5k" and f.calls[0]["model"] == "lenet-bn"
    assert f.calls[0]["optimizer"] == "adam" and f.calls[0]["lr"] == 1e-3
    # equal optimizer steps on all 4,000 training images: 4,000 / 2 x epochs = 4,000 / 32 x (16 x epochs)
    assert all("val_split" not in c for c in f.calls)
    assert {(c["batch_size"], c["epochs"]) for c in f.calls} == {(2, epochs), (32, 16 * epochs)}
    per_seed = [29 + s for s in range(seeds)]  # in accuracy points
    assert r["unit"] == "accuracy points"
    assert r["arm"] == pytest.approx([30 + s for s in range(seeds)])  # BN's drop
    assert r["baseline"] == pytest.approx([1.0] * seeds)  # GN's drop
    assert r["numbers"]["effect_per_seed"] == pytest.approx(per_seed)
    assert r["effect"] == pytest.approx(sum(per_seed) / seeds)
    half = st.t.ppf(0.975, seeds - 1) * np.std(per_seed, ddof=1) / np.sqrt(seeds)  # paired t interval
    assert r["ci"] == pytest.approx([np.mean(per_seed) - half, np.mean(per_seed) + half])
    assert r["verdict"] == claims.HOLDS
    assert r["numbers"]["cells"]["gn@32"] == pytest.approx(85.0)
    assert r["train_seconds"] == pytest.approx(0.25 * 4 * seeds)


LENET32 = {"bn": 0.95, "gn:2": 0.93, "ln": 0.90, "in-affine": 0.96}


def test_gn_against_ln_and_in_compares_conv_only_norms(fake, tmp_path):
    # GN beats LN (+0.03) but loses to IN (-0.03): "GN beats both" does not hold; GN trails BN.
    # IN has no form after a Linear layer, so GN, LN and IN are all compared with norms after the
    # convolutions only (fc_norm off); GN against BN keeps them everywhere (lenet-b32's cells).
    f = fake(lambda c: {"final_test_acc": LENET32[c["norm"]] + 0.001 * c["seed"] - 0.01 * (c.get("fc_norm") is False)})
    doc = run(tmp_path, "gn-beats-ln-in,gn-behind-bn")
    conv = sorted((c["norm"], c["seed"]) for c in f.calls if c.get("fc_norm") is False)
    full = sorted((c["norm"], c["seed"]) for c in f.calls if c.get("fc_norm") is not False)
    assert conv == sorted((n, s) for n in ("gn:2", "ln", "in-affine") for s in range(3))
    assert full == sorted((n, s) for n in ("gn:2", "bn") for s in range(3))
    between, behind = doc["claims"]
    preds = between["numbers"]["predictions"]
    assert preds["GN - IN"]["effect"] == pytest.approx(-3) and preds["GN - IN"]["verdict"] == claims.FAILS
    assert preds["GN - LN"]["effect"] == pytest.approx(3) and preds["GN - LN"]["verdict"] == claims.HOLDS
    assert between["verdict"] == claims.FAILS and "norms after the two convolutions only" in between["setting"]
    assert behind["effect"] == pytest.approx(2) and behind["verdict"] == claims.HOLDS  # accuracy points


DEPTH_TRAIN = {"plain20": 0.99, "plain56": 0.30, "resnet20": 1.00, "resnet56": 0.97, "preact-resnet56": 0.98}


def depth_table(c):
    # Test accuracy deliberately ordered the other way, so measuring it instead of training
    # accuracy would flip the verdict.
    train = DEPTH_TRAIN[c["model"]] - 0.02 * c["seed"] * (c["model"] == "plain56")
    return {"final_train_acc": train, "final_test_acc": 1.0 - train, "final_train_loss": 1.0 - train}


def test_plain_vs_residual_depth_is_measured_on_training_accuracy(fake, tmp_path):
    f = fake(depth_table)
    r = run(tmp_path, "plain-vs-residual-depth")["claims"][0]
    assert_paired(f.calls, "model", ["plain20", "plain56", "resnet20", "resnet56"], 3)
    assert f.calls[0]["dataset"] == "digits" and f.calls[0]["epochs"] == 3
    # (99 - (30 - 2 s)) - (100 - 97) = 66 + 2 s accuracy points
    assert r["numbers"]["effect_per_seed"] == pytest.approx([66, 68, 70])
    assert r["effect"] == pytest.approx(68) and r["unit"] == "accuracy points"
    assert r["verdict"] == claims.HOLDS
    assert r["numbers"]["per_seed"]["plain56"] == pytest.approx([30, 28, 26])


def test_preact_reuses_the_resnet56_runs_of_the_depth_claim(fake, tmp_path):
    f = fake(depth_table)
    doc = run(tmp_path, "plain-vs-residual-depth,preact-vs-original")
    # 4 models x 3 seeds for the depth claim, then only preact-resnet56's 3 runs: resnet56 is shared.
    assert sorted((c["model"], c["seed"]) for c in f.calls) == sorted(
        (m, s) for m in DEPTH_TRAIN for s in range(3))
    pre = doc["claims"][1]
    assert pre["baseline"] == pytest.approx([3] * 3) and pre["arm"] == pytest.approx([2] * 3)
    assert pre["effect"] == pytest.approx(-1) and pre["verdict"] == claims.FAILS
    assert pre["numbers"]["also"]["final train loss"]["effect"] == pytest.approx(-0.01)
    assert_paired([c for c in f.calls if c["model"] in ("resnet56", "preact-resnet56")], "model",
                  ["resnet56", "preact-resnet56"], 3)


def test_bn_lenet_early_switches_only_the_norm(fake, tmp_path):
    f = fake(lambda c: {"final_test_acc": 0.1 if c["norm"] == "none" else 0.8 + 0.01 * c["seed"],
                        "final_train_loss": 2.3 if c["norm"] == "none" else 1.5})
    r = run(tmp_path, "bn-lenet-early", quick=False)["claims"][0]
    assert_paired(f.calls, "norm", ["none", "bn"], 5)
    c = f.calls[0]
    assert (c["model"], c["dataset"], c["epochs"], c["optimizer"], c["lr"], c["schedule"]) == \
        ("lenet-bn", "mnist5k", 1, "adam", 1e-3, "constant")
    assert r["effect"] == pytest.approx(72) and r["verdict"] == claims.HOLDS
    assert r["numbers"]["also"]["train loss over the first epoch"]["effect"] == pytest.approx(-0.8)


def test_l1_sparse_counts_exact_zeros_in_the_saved_weights(fake, tmp_path):
    def weights(c):
        w = torch.tensor([[0.0, 0.0], [0.5, 1e-8]]) if c["l1"] else torch.ones(2, 2)
        return {"fc.weight": w, "fc.bias": torch.zeros(2)}  # 1-D tensors are not counted

    f = fake(lambda c: {"final_test_acc": 0.90 if c["l1"] else 0.92}, weights)
    r = run(tmp_path, "l1-sparse")["claims"][0]
    assert_paired(f.calls, "l1", [0.0, 0.3], 3)
    assert r["effect"] == pytest.approx(50)  # percentage points; 1e-8 is small, not zero
    assert r["unit"] == "percentage points of the weights"
    assert r["numbers"]["also"]["final test accuracy"]["effect"] == pytest.approx(-2)


def lr_table(c):
    """No norm trains up to lr 0.072 (seed 0: 0.19) and diverges above; BN trains up to 1.4 and
    sits at chance above."""
    top = {"none": 0.19 if c["seed"] == 0 else 0.072, "bn": 1.4}[c["norm"]]
    if c["lr"] <= top:
        return {"final_test_acc": 0.9}
    return "training stopped: the loss became nan at epoch 1, step 3" if c["norm"] == "none" \
        else {"final_test_acc": 0.1}


def test_bn_higher_lr_finds_the_highest_trainable_rate_and_records_divergence(fake, tmp_path):
    f = fake(lr_table)
    doc = run(tmp_path, "bn-higher-lr")
    r = doc["claims"][0]
    assert len(f.calls) == 2 * 8 * 3 and len(lr_sweep.LR_GRID) == 8
    assert lr_sweep.LR_GRID[-1] / lr_sweep.LR_GRID[0] == pytest.approx(1000)  # three decades
    assert r["numbers"]["highest_lr"]["none"] == pytest.approx([0.19, 0.072, 0.072])
    assert r["numbers"]["highest_lr"]["bn"] == pytest.approx([1.4] * 3)
    per_seed = [math.log10(1.4 / 0.19), math.log10(1.4 / 0.072), math.log10(1.4 / 0.072)]
    assert r["effect"] == pytest.approx(sum(per_seed) / 3) and r["verdict"] == claims.HOLDS
    cells = r["numbers"]["cells"]
    assert cells["none@0.52"]["status"] == ["diverged"] * 3
    assert cells["none@0.19"]["status"] == ["trains", "diverged", "diverged"]
    assert cells["bn@3.7"]["status"] == ["below"] * 3
    assert math.isnan(cells["none@10.0"]["test_acc"][0])
    saved = json.loads((tmp_path / "rep" / "claims.json").read_text())["claims"][0]
    assert saved["figures"] == ["bn-higher-lr.png"] and saved["numbers"]["cells"]["none@1.4"]["status"][0] == "diverged"
    assert (tmp_path / "rep" / "bn-higher-lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "rep" / "bn-higher-lr.svg").read_text().lstrip().startswith("<?xml")
    assert "![bn-higher-lr](bn-higher-lr.png)" in (tmp_path / "rep" / "claims.md").read_text()
    assert r["unit"] == "decades of lr (log10)"
    assert "data:image/png;base64," in (tmp_path / "rep" / "claims.html").read_text()


def test_no_trainable_rate_counts_one_step_below_the_grid():
    step = math.log10(lr_sweep.LR_GRID[1] / lr_sweep.LR_GRID[0])
    assert lr_sweep.highest_trainable(["below"] * 8) == pytest.approx(-2 - step)
    assert lr_sweep.highest_trainable(["trains", "trains", "diverged"] + ["below"] * 5) == pytest.approx(
        math.log10(0.027))


def test_a_rerun_resumes_and_trains_only_unfinished_runs(fake, tmp_path):
    f = fake(lambda c: {"final_test_acc": 0.1 if c["norm"] == "none" else 0.8})
    first = run(tmp_path, "bn-deep-mlp")
    assert len(f.calls) == 6 and first["trained_now"] == 6
    # an interrupted run leaves a folder without summary.json: it is trained again, alone
    victim = tmp_path / "rep" / "runs" / "quick" / "deep-mlp" / "runs" / "norm=bn-s1"
    (victim / "summary.json").unlink()
    second = run(tmp_path, "bn-deep-mlp")
    assert [(c["norm"], c["seed"]) for c in f.calls[6:]] == [("bn", 1)]
    assert second["trained_now"] == 1 and second["resumed"] == 5
    assert second["claims"][0]["effect"] == first["claims"][0]["effect"] == pytest.approx(70)
    # the runs folder is a `normlab compare` sweep folder
    exp = results.read_experiment(tmp_path / "rep" / "runs" / "quick" / "deep-mlp")
    assert exp.factors == {"norm": ["none", "bn"]} and exp.seeds == [0, 1, 2]


def test_shards_split_the_cells_and_the_last_one_writes_the_report(fake, tmp_path):
    f = fake(lambda c: {"final_test_acc": 0.1 if c["norm"] == "none" else 0.8,
                        "final_train_loss": 1.0, "final_train_acc": 0.5})
    only = "bn-deep-mlp,bn-lenet-early"
    part = run(tmp_path, only, shard=(1, 2))
    assert part["missing"] == 6 and not (tmp_path / "rep" / "claims.md").exists()
    one = {(c["model"], c["norm"]) for c in f.calls}
    doc = run(tmp_path, only, shard=(2, 2))
    two = {(c["model"], c["norm"]) for c in f.calls[6:]}
    assert len(f.calls) == 12 and len(one) == len(two) == 2 and not one & two
    assert [c["verdict"] for c in doc["claims"]] == [claims.HOLDS, claims.HOLDS]
    assert (tmp_path / "rep" / "claims.md").is_file()


def test_failed_runs_are_named_and_make_the_claim_inconclusive(fake, tmp_path):
    fake(lambda c: "boom" if (c["norm"], c["seed"]) == ("bn", 2) else {"final_test_acc": 0.1 if c["norm"] == "none" else 0.8})
    r = run(tmp_path, "bn-deep-mlp")["claims"][0]
    assert r["verdict"] == claims.INCONCLUSIVE
    assert r["summary"].endswith("runs that failed: bn seed 2")
    assert math.isnan(r["arm"][2])


def test_cli_rejects_a_bad_shard(tmp_path, capsys):
    assert main(["claims", "--quick", "--only", "inception-1x1", "--shard", "3/2", "--out", str(tmp_path)]) == 2
    assert "shard must be i/n with 1 <= i <= n" in capsys.readouterr().err


# ---------------------------------------------------------------- measures on real runs
def tiny_run(tmp_path, name, **cfg):
    from normlab.train.trainer import train

    base = {"dataset": "synthetic", "model": "lenet-bn", "epochs": 1, "batch_size": 32, "progress": False,
            "threads": 1, "out": str(tmp_path / name)}
    return train({**base, **cfg}, log=quiet)


def test_contrast_change_is_zero_for_in_and_not_for_bn(tmp_path):
    # lenet-bn has no padding, so conv(a x + b) = a conv(x) + b sum(w): IN right after the first
    # conv removes both, and everything after it sees the same features.
    x = torch.randn(6, 1, 4, 4)
    v = measures.affine_views(x, seed=3)
    ratio = v / x
    assert not torch.allclose(ratio[0], ratio[1])  # each image its own change
    tiny_run(tmp_path, "in", norm="in-affine", fc_norm=False)  # the claim's IN arm
    tiny_run(tmp_path, "bn", norm="bn")
    assert measures.contrast_change(tmp_path / "in") == 0.0
    assert measures.contrast_change(tmp_path / "bn") > 0.05


def test_eval_scores_use_the_runs_own_training_split(tmp_path):
    from normlab import api

    res = tiny_run(tmp_path, "r", model="mlp", depth=1, width=32, val_split=0.9, dropout=0.5, epochs=2)
    s = measures.eval_scores(tmp_path / "r")
    ref = api.evaluate_run(tmp_path / "r")  # the test split through `normlab eval`'s code
    assert s["test_acc"] == pytest.approx(ref["test_acc"]) == pytest.approx(res.summary["final_test_acc"])
    assert s["test_loss"] == pytest.approx(ref["test_loss"], rel=1e-5)
    # 80 of synthetic's 800 training images remain after val_split 0.9: accuracy in steps of 1/80
    assert s["train_acc"] * 80 == pytest.approx(round(s["train_acc"] * 80))
    assert measures.eval_loss_gap(tmp_path / "r") == pytest.approx(s["test_loss"] - s["train_loss"])
    assert measures.eval_acc_gap(tmp_path / "r") == pytest.approx(s["train_acc"] - s["test_acc"])


def test_claims_with_jobs_trains_in_workers_and_resumes(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["claims", "--quick", "--only", "bn-deep-mlp", "--jobs", "2", "--out", str(out)]) == 0
    assert "(6 runs trained now, 0 already finished)" in capsys.readouterr().out
    r = json.loads((out / "claims.json").read_text())["claims"][0]
    assert r["verdict"] == claims.HOLDS and r["effect"] > 0.3  # BN ~0.8 against chance
    assert main(["claims", "--quick", "--only", "bn-deep-mlp", "--out", str(out)]) == 0
    assert "(0 runs trained now, 6 already finished)" in capsys.readouterr().out


class TableParser(HTMLParser):
    """The report's table as rows of (cell text, cell class), checking that tags nest."""

    VOID = {"meta", "br", "img", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.rows, self.cell, self.title = [], [], None, ""

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self.cell = ["", dict(attrs).get("class", "")]

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"
        if tag in ("td", "th"):
            self.rows[-1].append(tuple(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[0] += data
        elif self.stack and self.stack[-1] == "title":
            self.title += data


def parse_table(text):
    p = TableParser()
    p.feed(text)
    p.close()
    assert p.stack == []
    return p


def _doc():
    def claim(name, verdict, effect, ci, unit="accuracy points"):
        return {"name": name, "claim": f"{name} <b>&</b>", "verdict": verdict, "effect": effect, "ci": ci,
                "unit": unit, "summary": "max |train-eval| < y", "setting": "uses `digits`", "seconds": 1234.5}

    return {"quick": True, "total_seconds": 12.0, "provenance": "Written here.", "claims": [
        claim("a", claims.HOLDS, 0.5, [0.25, 0.75]), claim("b", claims.FAILS, -0.125, [-0.2, -0.05]),
        claim("c", claims.INCONCLUSIVE, 0.01, [-0.1, 0.1]), claim("d", claims.HOLDS, 0.415, None, "x mult-adds"),
        claim("e", claims.HOLDS, None, None, "")]}


def test_html_report_one_row_per_claim_with_coloured_verdicts():
    text = claims.render_html(_doc())
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text and "src=" not in text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    assert "`" not in text  # the texts' Markdown code spans became <code>, never raw backticks
    p = parse_table(text)
    assert p.title == "The tutorials' claims, measured (--quick run)"
    header, *rows = p.rows
    # the verdict second: on a phone it shows without scrolling sideways
    assert [c[0] for c in header] == ["claim", "verdict", "effect [95% interval] (unit)", "p (Holm)", "n",
                                      "what the tutorials say", "seconds"]
    assert [(r[0][0], r[5][0]) for r in rows] == [(n, f"{n} <b>&</b>") for n in "abcde"]  # escaped, so it is text
    assert [r[1] for r in rows] == [("holds", "holds"), ("does not hold here", "fails"),
                                    ("inconclusive", "inconclusive"), ("holds", "holds"), ("holds", "holds")]
    assert [r[2][0] for r in rows] == ["+0.50 [+0.25, +0.75] accuracy points",
                                       "-0.12 [-0.20, -0.05] accuracy points",
                                       "+0.01 [-0.10, +0.10] accuracy points", "0.415 x mult-adds", "–"]
    assert rows[0][6] == ("1,234.5", "num")  # thousands separators
    assert "<code>a</code>" in text and "<code>digits</code>" in text
    assert '<div class="scroll" tabindex="0" role="region" aria-label="table">' in text  # scrolls in its box
    assert "3 holds, 1 does not hold here, 1 inconclusive; 12 s for the command that wrote this page" in text


def test_markdown_table_escapes_pipes_in_cells():
    doc = {"quick": False, "total_seconds": 3.0, "provenance": "", "claims": [
        {"name": "a", "claim": "c | d", "verdict": claims.HOLDS, "summary": "max |train-eval| 0", "setting": "s",
         "seconds": 1.0, "effect": None, "ci": None}]}
    md = claims.render_markdown(doc)
    assert "| `a` | **holds** | – | – | exact | c \\| d | 1.0 |" in md.splitlines()
    assert "Measured: max |train-eval| 0." in md.splitlines()  # outside a table a pipe stays


def test_a_verdict_from_the_margin_says_so():
    from normlab.analysis.claims import pages as render, verdict

    base = [13.0 + 0.1 * i for i in range(20)]
    arm = [b - 0.05 + (0.3 if i % 2 else -0.3) for i, b in enumerate(base)]  # -0.05 points, sd ~0.3
    t = claims.compare_arms(base, arm, -1, "accuracy points", ("plain", "l2"), "gap", margin=1.0)
    verdict.decide_family([t])
    assert t["verdict"] == claims.FAILS and t["p_holm"] > 0.05 and t["p_margin_holm"] < 1e-6 and t["family"] == 2
    # in words, signs agreeing: the gap falls (the predicted side) by less than the margin
    assert render.verdict_text(t) == "does not hold here: gap falls by less than 1.00 accuracy points (the margin)"
    assert ("margin 1.00 accuracy points (an effect this large on the predicted side would matter; fixed before the "
            "runs): one-sided p < 0.0001 that the effect is smaller, Holm-adjusted < 0.0001") in render.stats_text(t)
    assert "arm better in 10 of 20 seeds" in render.stats_text(t)
    tie = claims.compare_arms([1.0, 2.0, 3.0], [1.0, 2.5, 2.0], +1, "accuracy points")
    verdict.decide_family([tie])
    assert "arm better in 1 of 3 seeds, tied in 1" in render.stats_text(tie)  # never "1.5 of 3"
    assert "= <" not in render.stats_text(t)


def test_differences_csv_matches_a_hand_computation(fake, tmp_path):
    """Two claims, each one comparison of 3 seeds; every column of differences.csv against numbers
    worked out by hand (the t distribution with 2 degrees of freedom has a closed form)."""
    import csv

    bn_deep = {"none": [0.10, 0.10, 0.10], "bn": [0.80, 0.84, 0.82]}       # differences 70, 74, 72 points
    early = {"none": [0.50, 0.52, 0.49], "bn": [0.51, 0.50, 0.52]}         # differences 1, -2, 3 points

    def table(c):
        accs = early if c["model"] == "lenet-bn" else bn_deep
        return {"final_test_acc": accs[c["norm"]][c["seed"]], "final_train_loss": 1.0}

    fake(table)
    run(tmp_path, "bn-deep-mlp,bn-lenet-early,inception-1x1")
    rows = list(csv.DictReader(open(tmp_path / "rep" / "differences.csv")))
    assert list(rows[0]) == ["claim", "cell", "baseline", "metric", "unit", "n", "mean_difference", "low", "high",
                             "method", "p", "p_holm", "prob_better", "verdict", "seeds_needed", "margin",
                             "p_margin_holm"]
    assert all(row["margin"] == row["p_margin_holm"] == "" for row in rows)  # no claim here names a margin
    t975 = 4.302652729911275  # t(0.975, 2 df)

    def p_two_sided(t):  # Student t, 2 df: P(|T| > t) = 1 - t / sqrt(2 + t^2)
        return 1 - abs(t) / math.sqrt(2 + t * t)

    expect = {}
    for name, d in (("bn-deep-mlp", [70, 74, 72]), ("bn-lenet-early", [1, -2, 3])):
        m = sum(d) / 3
        sd = math.sqrt(sum((x - m) ** 2 for x in d) / 2)
        expect[name] = (m, m - t975 * sd / math.sqrt(3), m + t975 * sd / math.sqrt(3), p_two_sided(m / (sd / math.sqrt(3))))
    deep, lenet, exact = rows
    p_deep, p_lenet = expect["bn-deep-mlp"][3], expect["bn-lenet-early"][3]
    assert p_deep < p_lenet  # Holm: the smaller p times 2, the larger times 1, kept monotone
    holm = {"bn-deep-mlp": min(1, 2 * p_deep), "bn-lenet-early": max(min(1, 2 * p_deep), p_lenet)}
    for row, name in ((deep, "bn-deep-mlp"), (lenet, "bn-lenet-early")):
        m, lo, hi, p = expect[name]
        assert (row["claim"], row["cell"], row["baseline"], row["unit"], row["n"]) == (name, "bn", "none",
                                                                                       "accuracy points", "3")
        assert [float(row[k]) for k in ("mean_difference", "low", "high", "p", "p_holm")] == pytest.approx(
            [m, lo, hi, p, holm[name]], rel=1e-9)
        assert row["method"] == "paired t, 95% interval, 3 seeds; p Holm-adjusted over 2"
    assert deep["metric"] == "final test accuracy" and deep["prob_better"] == "1.0"
    assert deep["verdict"] == claims.HOLDS and deep["seeds_needed"] == ""
    assert float(lenet["prob_better"]) == pytest.approx(2 / 3)
    assert lenet["verdict"] == claims.INCONCLUSIVE
    from normlab.analysis import paired

    sd = math.sqrt(((1 - 2 / 3) ** 2 + (-2 - 2 / 3) ** 2 + (3 - 2 / 3) ** 2) / 2)
    assert int(lenet["seeds_needed"]) == paired.seeds_needed(2 / 3, sd, 0.05 / 2)
    assert (exact["claim"], exact["cell"], exact["verdict"]) == ("inception-1x1", "exact", claims.HOLDS)
    assert float(exact["mean_difference"]) == pytest.approx(128_049_152 / 308_281_344)
    assert exact["p"] == exact["n"] == ""
    # the page says how many seeds the inconclusive one would need, and links its runs and configs
    text = (tmp_path / "rep" / "claims.html").read_text()
    assert f"inconclusive (about {int(lenet['seeds_needed']):,} seeds in all for this size)" in text
    summary = [r for r in parse_table(text).rows if r and r[0][0] == "bn-lenet-early"]
    assert summary[0][1] == (f"inconclusive (about {int(lenet['seeds_needed']):,} seeds in all for this size)", "inconclusive")
    assert '<a href="configs/lenet-early/norm=bn.yaml">norm=bn.yaml</a>' in text
    assert '<a href="runs/quick/lenet-early/runs/norm=bn-s2/">s2</a>' in text
    cfg = (tmp_path / "rep" / "configs" / "lenet-early" / "norm=bn.yaml").read_text()
    assert "model: lenet-bn" in cfg and "seed:\n- 0\n- 1\n- 2" in cfg
    assert "`" not in text and "<pre><code>" in text  # the base configs as YAML
    assert (tmp_path / "rep" / "effects.svg").is_file() and (tmp_path / "rep" / "effects.png").is_file()
    assert f"with torch {torch.__version__}" in text and "This command trained 12 runs" in text  # provenance
    assert "; 3 s of training (every run counted once, one thread each)" in text  # 12 fake runs of 0.25 s


def test_gap_claims_share_the_unregularized_runs_and_measure_in_eval_mode(fake, tmp_path, monkeypatch):
    f = fake(lambda c: {"final_test_acc": 0.85})
    test_acc = {"weight_decay=0.0,hidden_dropout=0.0": 0.80, "weight_decay=0.01,hidden_dropout=0.0": 0.82,
                "weight_decay=0.0,hidden_dropout=0.5": 0.78}

    def scores(run):  # test accuracy by cell, -0.01 a seed; train accuracy 1 (eval mode)
        cell, seed = run.name.rsplit("-s", 1)
        return {"train_loss": 0.0, "train_acc": 1.0, "test_loss": 0.5,
                "test_acc": test_acc[cell] - 0.01 * (int(seed) - 1000)}

    monkeypatch.setattr(measures, "eval_scores", scores)
    l2, drop = run(tmp_path, "l2-gap,dropout-gap")["claims"]
    assert len(f.calls) == 3 * 10  # plain, l2 and dropout cells; plain trained once for both claims
    assert sorted({c["seed"] for c in f.calls}) == list(range(1000, 1010))  # the experiment's own seeds
    assert {(c["weight_decay"], c["hidden_dropout"], c["dropout"]) for c in f.calls} == {
        (0.0, 0.0, 0.0), (0.01, 0.0, 0.0), (0.0, 0.5, 0.0)}  # dropout after the hidden layers, not the head
    c = f.calls[0]
    assert (c["dataset"], c["val_split"], c["model"], c["width"], c["epochs"]) == ("mnist5k", 0.9, "mlp", 512, 15)
    # gap = train - test accuracy in points: plain 20 + s, l2 18 + s, dropout 22 + s
    assert l2["effect"] == pytest.approx(-2) and l2["verdict"] == claims.HOLDS and l2["unit"] == "accuracy points"
    assert l2["margin"] == drop["margin"] == 1.0 and l2["n"] == 10
    assert drop["effect"] == pytest.approx(2) and drop["verdict"] == claims.FAILS
    assert l2["numbers"]["also"]["train accuracy, eval mode"]["baseline_mean"] == pytest.approx(100)
    assert l2["numbers"]["also"]["test - train loss gap"]["effect"] == pytest.approx(0)


def test_batch_norm_at_batch_1_in_a_recurrent_net_is_a_clear_error(tmp_path):
    from normlab.errors import ConfigError

    for model in ("gru-rows", "lstm-rows"):
        with pytest.raises(ConfigError) as e:
            normlab.train(dict(model=model, dataset="digits", norm="bn", batch_size=1, epochs=1, width=8,
                               out=str(tmp_path / model)), log=lambda *a: None)
        assert str(e.value) == (f"{model} with batch norm cannot train at batch size 1: batch norm takes each "
                                "feature's mean and variance over the batch, and one example has no variance; use "
                                "--batch-size 2 or more, or a norm that works per example (--norm ln or gn)")
    assert not (tmp_path / "gru-rows" / "summary.json").exists()


def test_cli_batch_norm_at_batch_1_exits_2_with_one_line(tmp_path, capsys):
    code = main(["train", "--model", "gru-rows", "--dataset", "digits", "--norm", "bn", "--batch-size", "1",
                 "--epochs", "1", "--width", "8", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "gru-rows with batch norm cannot train at batch size 1" in err and "Traceback" not in err


def test_ln_recurrent_counts_a_run_that_cannot_train_at_chance(fake, tmp_path):
    acc = {("ln", 32): 0.90, ("ln", 1): 0.70, ("bn", 32): 0.92, ("none", 32): 0.85, ("none", 1): 0.60}

    def table(c):
        if (c["norm"], c["batch_size"]) == ("bn", 1):
            return "gru-rows with batch norm cannot train at batch size 1: ..."
        return {"final_test_acc": acc[c["norm"], c["batch_size"]]}

    f = fake(table)
    r = run(tmp_path, "ln-recurrent")["claims"][0]
    assert {(c["norm"], c["batch_size"], c["epochs"]) for c in f.calls} == {
        (n, b, b) for n in ("ln", "bn", "none") for b in (32, 1)}  # equal steps: 32 epochs at batch 32
    # 300 of mnist5k's 4,000 training images, 28 rows of 28 pixels
    assert all(c["model"] == "gru-rows" and (c["dataset"], c["val_split"]) == ("mnist5k", 0.925) for c in f.calls)
    preds = r["numbers"]["predictions"]
    assert preds["LN - BN at batch 1"]["effect"] == pytest.approx(70 - 10)  # accuracy points
    # BN drops 92 - 10, LN 90 - 70
    assert preds["BN's drop 32->1 minus LN's"]["effect"] == pytest.approx(82 - 20)
    assert r["verdict"] == claims.HOLDS
    assert r["numbers"]["cells"]["bn@1"] == pytest.approx([10.0] * 3)
    assert "runs that failed: bn@1 seed 0, bn@1 seed 1, bn@1 seed 2" in r["summary"]


def test_dead_units_and_near_zero_weights_counted_by_hand(tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_run(tmp_path, "mlp", model="mlp", depth=1, width=8, act="relu", norm="none")
    path = tmp_path / "mlp" / "weights.safetensors"
    w = load_file(str(path))
    # units 0-2 silenced for every input (a bias far below any input's reach), the rest always on
    w["features.1.bias"] = torch.tensor([-1e4] * 3 + [1e4] * 5)
    first = w["features.1.weight"]
    first[:, :] = 0.5
    first[0, :5] = 0.0       # 5 exact zeros
    first[1, :4] = 5e-4      # 4 near zero, not zero
    save_file(w, str(path))
    assert measures.dead_units(tmp_path / "mlp") == 3 / 8
    n = sum(t.numel() for t in w.values() if t.ndim == 2)
    tail = w["classifier.weight"]
    assert measures.zero_fraction(tmp_path / "mlp") == (5 + int((tail == 0).sum())) / n
    assert measures.near_zero_fraction(tmp_path / "mlp") == (9 + int((tail.abs() < 1e-3).sum())) / n


def test_zero_init_keeps_every_unit_of_a_layer_the_same():
    from normlab.analysis.claims import exact

    r = exact.claim_zero_init(True)
    assert r["verdict"] == claims.HOLDS
    z, d = r["numbers"]["zeros"], r["numbers"]["default"]
    assert z["distinct_rows"] == [1, 1] and d["distinct_rows"] == d["units"] == [32, 32]
    assert z["train_acc"] < 0.2 < 0.5 < d["train_acc"]  # the symmetric net cannot fit digits


def test_thinned_scores_one_draw_is_the_average_of_one_and_eval_is_the_runs_test_accuracy(tmp_path):
    tiny_run(tmp_path, "drop", model="mlp", depth=1, width=16, act="relu", norm="none", hidden_dropout=0.5)
    one = measures.thinned_scores(tmp_path / "drop", k=1)
    assert one["one"] == one["average"]  # the average of a single thinned network is that network
    assert one["eval"] == pytest.approx(measures.test_acc(tmp_path / "drop"), abs=1e-12)
    many = measures.thinned_scores(tmp_path / "drop", k=5)
    assert many["one"] == one["one"] and 0 <= many["agree"] <= 1  # the same first draw of masks, seeded
    with pytest.raises(ValueError, match="has no dropout layer"):
        tiny_run(tmp_path, "plain", model="mlp", depth=1, width=16, act="relu", norm="none")
        measures.thinned_scores(tmp_path / "plain")


def test_ln_removes_what_similar_features_share_and_bn_keeps_it():
    from normlab.analysis.claims import exact

    # by hand: features that are all the same signal s (no noise) become exactly 0 under LN
    x = torch.randn(8, 1, dtype=torch.float64).repeat(1, 4) + 0.0
    assert torch.nn.functional.layer_norm(x, (4,)).abs().max() == 0
    r = exact.claim_ln_similar(True)
    sim, dis = r["numbers"]["similar"], r["numbers"]["dissimilar"]
    assert sim["raw"] > 0.99 and sim["ln"] < 0.1 and sim["bn"] > 0.99 and dis["ln"] > 0.5
    assert r["verdict"] == claims.HOLDS


def test_late_progress_reads_the_middle_and_last_epochs_loss(tmp_path):
    rows = "epoch,train_loss\n1,2.0\n2,1.5\n3,1.25\n4,1.0\n5,0.9\n"
    (tmp_path / "metrics.csv").write_text(rows)
    assert measures.late_progress(tmp_path) == pytest.approx(1.5 - 0.9)  # epoch 5 // 2 = 2, then 5


def test_claims_runs_write_no_curves_plot_and_differ_only_in_what_they_name():
    """Every claim's experiment, quick and full, trains without curves.png (no claim reads it);
    the switch is in the base, so it is the same in every arm."""
    from normlab.experiments.claims.index import CLAIMS
    from normlab.experiments.claims.runner import plan

    for quick in (True, False):
        exps, _ = plan(list(CLAIMS), quick)
        assert exps and all(exp.base["curves"] is False for exp, _ in exps.values())
        assert not any("curves" in exp.factors for exp, _ in exps.values())
