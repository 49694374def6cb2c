"""Issue 31's experiment tools and the papers' claims: noisy BN against batch norm with the noise
written out, class-skewed batches counted, and the papers' claims on a fake runner (which cells
train, on which seeds, and the arithmetic of their verdicts)."""

import csv
import json
from pathlib import Path

import pytest
import torch

from normlab.data import skewed
from normlab.errors import ConfigError
from normlab.experiments import claims, seed_groups, sweep
from normlab.experiments.claims import papers
from normlab.nn.newer_norms import NoisyBatchNorm


# ---------------------------------------------------------------- noisy BN
def test_noisy_bn_is_batch_norm_plus_the_documented_noise():
    torch.manual_seed(0)
    m = NoisyBatchNorm(3, noise=1.0).double()
    ref = torch.nn.BatchNorm2d(3).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.5, 1.5, 2.0])), m.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        ref.load_state_dict(m.state_dict())
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    torch.manual_seed(7)
    y = m(x)
    # the same draws, in the module's order: scale (log-uniform in [1/2, 2]), mean, spread, then z
    torch.manual_seed(7)
    log_a = (torch.rand(3, dtype=torch.float64) * 2 - 1) * torch.log1p(torch.tensor(1.0))
    mean = torch.rand(3, dtype=torch.float64) * 2 - 1
    spread = torch.rand(3, dtype=torch.float64)
    z = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    bn = ref(x)
    want = bn * log_a.exp().view(1, 3, 1, 1) + mean.view(1, 3, 1, 1) + spread.view(1, 3, 1, 1) * z
    torch.testing.assert_close(y, want, rtol=0, atol=1e-12)
    assert ((log_a.exp() >= 0.5) & (log_a.exp() <= 2)).all()
    torch.testing.assert_close(m.running_mean, ref.running_mean)  # the statistics are batch norm's
    m.eval(), ref.eval()
    torch.testing.assert_close(m(x), ref(x), rtol=0, atol=0)  # no noise in evaluation


def test_noisy_bn_is_a_norm_name_folds_for_inference_and_sync_bn_refuses_it():
    from normlab import create_model
    from normlab.cli import build_parser
    from normlab.nn.surgery import fuse_bn
    from normlab.train.distributed import Dist, wrap_model

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    assert "noisy-bn" in " ".join(next(a.help for a in sub._actions if a.dest == "norm").split())
    m = create_model("digitnet", norm="noisy-bn", bn_eps=1e-3)
    assert {type(x).__name__ for x in m.modules()} >= {"NoisyBatchNorm"}
    assert all(x.eps == 1e-3 for x in m.modules() if isinstance(x, NoisyBatchNorm))
    x = torch.randn(4, 1, 28, 28)
    m(x).sum().backward()
    m.eval()
    with torch.inference_mode():
        torch.testing.assert_close(fuse_bn(m, example=x)(x), m(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match=r"^sync_bn: SyncBatchNorm would replace this model's NoisyBatchNorm by "
                                          r"plain batch norm and drop its training noise"):
        wrap_model(create_model("digitnet", norm="noisy-bn"), Dist(), torch.device("cpu"), True)


# ---------------------------------------------------------------- class-skewed batches
@pytest.mark.parametrize("batch, k", [(32, 2), (8, 4), (6, 3)])
def test_skewed_batches_hold_k_classes_and_use_every_example_once(batch, k):
    y = torch.cat([torch.full((n,), c) for c, n in enumerate([40, 33, 25, 40, 7])])
    g = torch.Generator().manual_seed(0)
    got = skewed.batches(y, batch, k, g)
    assert sorted(torch.cat(got).tolist()) == list(range(len(y)))  # every example, once
    assert len(got) == skewed.batch_count(y, batch, k)
    for idx in got:
        labels = y[idx]
        classes = labels.unique()
        assert len(classes) <= k and len(idx) <= batch
        for c in classes:
            assert int((labels == c).sum()) <= batch // k
    # balanced classes: full batches, each exactly batch/k of each of k classes
    yb = torch.arange(4).repeat_interleave(batch // k * 3)
    for idx in skewed.batches(yb, batch, k, g):
        counts = torch.bincount(yb[idx], minlength=4)
        assert sorted(counts.tolist(), reverse=True)[:k] == [batch // k] * k and int(counts.sum()) == batch


def test_skewed_batches_refuse_what_they_cannot_build_in_one_line():
    y = torch.arange(3).repeat(10)
    with pytest.raises(ConfigError, match=r"^batch_classes: --batch-classes 3 must divide --batch-size 32"):
        skewed.check(32, 3, y)
    with pytest.raises(ConfigError, match=r"^batch_classes: --batch-classes 4 exceeds the 3 classes of the training "
                                          r"split; give at most 3$"):
        skewed.check(32, 4, y)


def test_a_run_with_batch_classes_sees_only_skewed_batches(tmp_path):
    from normlab.config import make_config
    from normlab.data import pipeline

    cfg = make_config({"dataset": "digits", "batch_size": 16, "batch_classes": 2})
    pipe = pipeline.build(cfg, torch.device("cpu"), True)
    seen = 0
    for _, yb in pipe.train:
        assert len(yb.unique()) <= 2
        seen += len(yb)
    assert seen == len(pipe.data.train_y)
    assert len(pipe.train) == skewed.batch_count(pipe.data.train_y, 16, 2)


# ---------------------------------------------------------------- the papers' claims, on a fake runner
class Fake:
    """Stands in for sweep.run_job: summary.json and metrics.csv from `table(config)`."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def __call__(self, config):
        self.calls.append(dict(config))
        out = Path(config["out"])
        out.mkdir(parents=True, exist_ok=True)
        s = self.table(config)
        losses = s.pop("losses", [s.get("final_train_loss", 1.0)])
        rate = s.pop("rate", 1000.0)
        (out / "summary.json").write_text(json.dumps({"wall_seconds": 0.5, **s}))
        with open(out / "metrics.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "train_loss", "examples_per_s"])
            for i, loss in enumerate(losses, 1):
                w.writerow([i, loss, rate])
        return str(out), "done", None, 0.0


@pytest.fixture
def fake(monkeypatch):
    def install(table):
        f = Fake(table)
        monkeypatch.setattr(sweep, "run_job", f)
        # a cell's seeds trained as one seed batch: the fake stands in for each of its runs
        monkeypatch.setattr(seed_groups, "run_group",
                            lambda names, cfgs, group: [(n, *f(c)[1:]) for n, c in zip(names, cfgs)])
        return f
    return install


def run(tmp_path, only, quick=True):
    return claims.run_claims(tmp_path / "rep", quick=quick, only=only, log=lambda *a, **k: None)


ACC = {("bn", 32): 0.97, ("bn", 2): 0.70, ("gn:2", 32): 0.96, ("gn:2+ws", 32): 0.975, ("gn:2+ws", 2): 0.93,
       ("brn", 2): 0.80}


def test_gn_ws_reuses_the_tutorials_lenet_cells_and_reports_bn_beside(fake, tmp_path):
    f = fake(lambda c: {"final_test_acc": ACC[c["norm"], c["batch_size"]] + 0.001 * c["seed"]})
    r = run(tmp_path, "gn-ws")["claims"][0]
    cells = sorted({(c["norm"], c["batch_size"]) for c in f.calls})
    assert cells == sorted([("bn", 32), ("gn:2", 32), ("gn:2+ws", 32), ("bn", 2), ("gn:2+ws", 2)])
    assert all(sorted(c["seed"] for c in f.calls if (c["norm"], c["batch_size"]) == k) == [0, 1, 2] for k in cells)
    preds = r["numbers"]["predictions"]
    assert preds["GN+WS - GN at batch 32"]["effect"] == pytest.approx(1.5)  # accuracy points
    assert preds["BN's drop 32->2 minus GN+WS's"]["effect"] == pytest.approx(27 - 4.5)
    assert r["verdict"] == claims.HOLDS
    [b32, b2] = r["numbers"]["beside"]
    assert b32["effect"] == pytest.approx(0.5) and b2["effect"] == pytest.approx(23)
    assert "GN+WS - BN at batch 32 (reported, not tested)" in r["summary"]
    assert r["source"][0].startswith("Qiao") and "match or outperform" in r["source"][1]
    # the tutorials' lenet-b32/lenet-b2 configs: only the norm (and batch, epochs) differ
    ws = next(c for c in f.calls if c["norm"] == "gn:2+ws" and c["batch_size"] == 32)
    bn = next(c for c in f.calls if c["norm"] == "bn" and c["batch_size"] == 32)
    assert {k: v for k, v in ws.items() if k not in ("norm", "seed", "out")} == \
        {k: v for k, v in bn.items() if k not in ("norm", "seed", "out")}


def test_brn_trains_class_skewed_batches_and_needs_both_predictions(fake, tmp_path):
    f = fake(lambda c: {"final_test_acc": (0.90 if c.get("batch_classes") else ACC[c["norm"], c["batch_size"]])
                        + (0.005 + 0.001 * c["seed"]) * (c["norm"] == "brn")})
    r = run(tmp_path, "brn-small-noniid")["claims"][0]
    skew = [c for c in f.calls if c.get("batch_classes")]
    assert {(c["norm"], c["batch_size"], c["batch_classes"], c["epochs"]) for c in skew} == \
        {("bn", 32, 2, 16), ("brn", 32, 2, 16)}
    preds = r["numbers"]["predictions"]
    assert preds["BRN - BN at batch 2"]["effect"] == pytest.approx(10 + 0.6)
    assert preds["BRN - BN with class-skewed batches"]["effect"] == pytest.approx(0.6)
    assert r["verdict"] == claims.HOLDS


def test_rms_vs_ln_compares_training_images_per_second(fake, tmp_path):
    f = fake(lambda c: {"final_test_acc": 0.95, "rate": 1000.0 + (100.0 + c["seed"]) * (c["norm"] == "rms")})
    r = run(tmp_path, "rms-vs-ln")["claims"][0]
    assert sorted({c["norm"] for c in f.calls}) == ["ln", "rms"] and len(f.calls) == 2 * 6
    assert r["unit"] == "images/s" and r["effect"] == pytest.approx(100 + 2.5)
    assert r["verdict"] == claims.HOLDS
    assert r["numbers"]["also"]["final test accuracy"]["effect"] == pytest.approx(0)


def test_wn_early_reads_the_first_half_of_the_loss_curve(fake, tmp_path):
    def table(c):
        # the arms end equal; weight norm's first half is lower by 0.1 per epoch
        early = -0.1 * (c["norm"] == "wn") - 0.01 * c["seed"] * (c["norm"] == "wn")
        return {"final_test_acc": 0.9, "final_train_loss": 0.2,
                "losses": [2.0 + early] * 5 + [0.2] * 5}

    f = fake(table)
    r = run(tmp_path, "wn-early")["claims"][0]
    none = [c for c in f.calls if c.get("norm", "none") == "none"]
    assert none and all(c["lr"] == 0.1 and c["act"] == "relu" for c in none)  # relu-lr's lr 0.1 cell
    assert r["effect"] == pytest.approx(-0.1 - 0.01 * 2.5) and r["verdict"] == claims.HOLDS
    assert r["numbers"]["also"]["train loss over epoch 10"]["effect"] == pytest.approx(0)


def test_every_papers_claim_quotes_its_paper_and_names_an_experiment_of_its_own_or_the_tutorials():
    from normlab.experiments.claims.index import experiment

    names = [n for n, c in claims.CLAIMS.items() if c.source]
    assert names == ["gn-ws", "frn-evonorm-batch-independent", "brn-small-noniid", "ghost-bn-large-batch",
                     "rms-vs-ln", "wn-early", "noisy-bn"]
    for n in names:
        ref, sentence = claims.CLAIMS[n].source
        assert " 20" in ref and len(sentence) > 40 and sentence.endswith((".", ")"))
        for quick in (True, False):
            for ename, _ in claims.CLAIMS[n].arms(quick).values():
                assert experiment(ename, quick)["name"] == ename
    from normlab.experiments.claims import trained

    assert set(papers.EXPERIMENTS).isdisjoint(trained.EXPERIMENTS)
