"""The exact claims against hand counts, the verdict rule, and `normlab claims --only`."""

import json
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats as st

from normlab.analysis import claims
from normlab.cli import main
from normlab.errors import ConfigError
from normlab.train import trainer


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
    r = claims.claim_inception(True, None)
    assert r["verdict"] == claims.HOLDS


def test_small_inception_config_hand_count():
    m = claims.inception_mult_adds(cin=4, c1=2, c3r=1, c3=3, c5r=1, c5=2, pool_proj=2, hw=5)
    assert m["with_1x1"] == 25 * (4 * 2 + 4 * 1 + 1 * 3 * 9 + 4 * 1 + 1 * 2 * 25 + 4 * 2)
    assert m["without_1x1"] == 25 * (4 * 2 + 4 * 3 * 9 + 4 * 2 * 25 + 4 * 2)


def test_norm_train_eval_claim_holds_with_exact_numbers():
    r = claims.claim_norm_modes(True, None)
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
    assert [(r[0][0], r[1]) for r in rows] == [
        ("inception-1x1" + claims.CLAIMS["inception-1x1"][0], ("holds", "verdict holds")),
        ("norm-train-eval" + claims.CLAIMS["norm-train-eval"][0], ("holds", "verdict holds"))]
    assert rows[0][2][0] == "-180,232,192"  # 128,049,152 - 308,281,344 mult-adds


# ---------------------------------------------------------------- trained claims, with a fake trainer
class FakeTrain:
    """Stands in for normlab.train.trainer.train: records each config and returns a result whose
    summary comes from `table(config)`, so a claim's effect can be computed by hand."""

    def __init__(self, table, model=None):
        self.table, self.model, self.calls = table, model, []

    def __call__(self, config, log=None):
        self.calls.append(dict(config))
        return SimpleNamespace(summary=self.table(config), model=self.model(config) if self.model else None)


@pytest.fixture
def fake(monkeypatch):
    def install(table, model=None):
        f = FakeTrain(table, model)
        monkeypatch.setattr(trainer, "train", f)
        return f
    return install


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


GN_TABLE = {("bn", 32): 0.90, ("bn", 2): 0.60, ("gn", 32): 0.85, ("gn", 2): 0.84}


@pytest.mark.parametrize("quick,seeds,epochs", [(True, 3, 1), (False, 5, 2)])
def test_gn_batch_size_pairs_four_cells_and_takes_the_difference_of_drops(fake, tmp_path, quick, seeds, epochs):
    # BN at batch 2 loses 0.01 more per seed, so the per-seed effect is 0.29 + 0.01 * seed.
    f = fake(lambda c: {"final_test_acc": GN_TABLE[c["norm"], c["batch_size"]]
                        - (0.01 * c["seed"] if (c["norm"], c["batch_size"]) == ("bn", 2) else 0.0),
                        "final_train_acc": 0.0})
    r = claims.claim_gn_batch_size(quick, tmp_path)
    assert len(f.calls) == 4 * seeds
    cells = {(c["norm"], c["batch_size"]) for c in f.calls}
    assert cells == set(GN_TABLE)
    for cell in cells:
        assert sorted(c["seed"] for c in f.calls if (c["norm"], c["batch_size"]) == cell) == list(range(seeds))
    assert all(strip(c, "norm", "batch_size", "epochs") == strip(f.calls[0], "norm", "batch_size", "epochs")
               for c in f.calls)
    assert f.calls[0]["dataset"] == "mnist5k" and f.calls[0]["model"] == "lenet-bn"
    assert f.calls[0]["optimizer"] == "adam" and f.calls[0]["lr"] == 1e-3
    # equal optimizer steps: 4,000 images / 2 x epochs = 4,000 / 32 x (16 x epochs)
    assert {(c["batch_size"], c["epochs"]) for c in f.calls} == {(2, epochs), (32, 16 * epochs)}
    per_seed = [0.29 + 0.01 * s for s in range(seeds)]
    assert r["arm"] == pytest.approx([0.30 + 0.01 * s for s in range(seeds)])  # BN's drop
    assert r["baseline"] == pytest.approx([0.01] * seeds)  # GN's drop
    assert r["numbers"]["effect_per_seed"] == pytest.approx(per_seed)
    assert r["effect"] == pytest.approx(sum(per_seed) / seeds)
    half = st.t.ppf(0.975, seeds - 1) * np.std(per_seed, ddof=1) / np.sqrt(seeds)  # paired t interval
    assert r["ci"] == pytest.approx([np.mean(per_seed) - half, np.mean(per_seed) + half])
    assert r["verdict"] == claims.HOLDS
    assert r["numbers"]["cells"]["gn@32"] == pytest.approx(0.85)


DEPTH_TRAIN = {"plain20": 0.99, "plain56": 0.30, "resnet20": 1.00, "resnet56": 0.97, "preact-resnet56": 0.98}


def depth_table(c):
    # Test accuracy deliberately ordered the other way, so measuring it instead of training
    # accuracy would flip the verdict.
    train = DEPTH_TRAIN[c["model"]] - 0.02 * c["seed"] * (c["model"] == "plain56")
    return {"final_train_acc": train, "final_test_acc": 1.0 - train, "final_train_loss": 1.0 - train}


def test_plain_vs_residual_depth_is_measured_on_training_accuracy(fake, tmp_path):
    f = fake(depth_table)
    r = claims.claim_plain_vs_residual(True, tmp_path)
    assert_paired(f.calls, "model", ["plain20", "plain56", "resnet20", "resnet56"], 3)
    assert f.calls[0]["dataset"] == "digits" and f.calls[0]["epochs"] == 3
    # (0.99 - (0.30 - 0.02 s)) - (1.00 - 0.97) = 0.66 + 0.02 s
    assert r["numbers"]["effect_per_seed"] == pytest.approx([0.66, 0.68, 0.70])
    assert r["effect"] == pytest.approx(0.66 + 0.02)
    assert r["verdict"] == claims.HOLDS
    assert r["numbers"]["per_seed"]["plain56"] == pytest.approx([0.30, 0.28, 0.26])


def test_preact_reuses_the_resnet56_runs_of_the_depth_claim(fake, tmp_path):
    f = fake(depth_table)
    doc = claims.run_claims(tmp_path / "rep", quick=True, only="plain-vs-residual-depth,preact-vs-original",
                            log=lambda *_: None)
    # 4 models x 3 seeds for the depth claim, then only preact-resnet56's 3 runs: resnet56 is shared.
    assert sorted((c["model"], c["seed"]) for c in f.calls) == sorted(
        (m, s) for m in DEPTH_TRAIN for s in range(3))
    pre = doc["claims"][1]
    assert pre["baseline"] == pytest.approx([0.03] * 3) and pre["arm"] == pytest.approx([0.02] * 3)
    assert pre["effect"] == pytest.approx(-0.01) and pre["verdict"] == claims.FAILS
    assert pre["numbers"]["also"]["final train loss"]["effect"] == pytest.approx(-0.01)
    assert claims._RUNS == {}  # nothing kept for the next claims run
    assert_paired([c for c in f.calls if c["model"] in ("resnet56", "preact-resnet56")], "model",
                  ["resnet56", "preact-resnet56"], 3)


def test_bn_lenet_early_switches_only_the_norm(fake, tmp_path):
    f = fake(lambda c: {"final_test_acc": 0.1 if c["norm"] == "none" else 0.8 + 0.01 * c["seed"],
                        "final_train_loss": 2.3 if c["norm"] == "none" else 1.5})
    r = claims.claim_bn_lenet_early(False, tmp_path)
    assert_paired(f.calls, "norm", ["none", "bn"], 5)
    c = f.calls[0]
    assert (c["model"], c["dataset"], c["epochs"], c["optimizer"], c["lr"], c["schedule"]) == \
        ("lenet-bn", "mnist5k", 1, "adam", 1e-3, "constant")
    assert r["effect"] == pytest.approx(0.72) and r["verdict"] == claims.HOLDS
    assert r["numbers"]["also"]["train loss over the first epoch"]["effect"] == pytest.approx(-0.8)


def test_l1_sparse_counts_exact_zeros_and_reports_accuracy(fake, tmp_path):
    def model(c):
        lin = torch.nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor([[0.0, 0.0], [0.5, 1e-8]]) if c.get("l1") else torch.ones(2, 2))
        return lin

    f = fake(lambda c: {"final_test_acc": 0.90 if c.get("l1") else 0.92}, model)
    r = claims.claim_l1_sparse(True, tmp_path)
    assert_paired([{**c, "l1": c.get("l1", 0.0)} for c in f.calls], "l1", [0.0, 0.3], 3)
    assert claims.L1_STRENGTH == 0.3
    assert r["effect"] == pytest.approx(0.5)  # 1e-8 is small, not zero
    assert r["numbers"]["also"]["final test accuracy"]["effect"] == pytest.approx(-0.02)


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


def test_html_report_one_row_per_claim_with_coloured_verdicts():
    def claim(name, verdict, effect, ci):
        return {"name": name, "claim": f"{name} <b>&</b>", "verdict": verdict, "effect": effect, "ci": ci,
                "summary": "x < y", "setting": "uses `digits`", "seconds": 1.25}

    doc = {"quick": True, "total_seconds": 12.0, "claims": [
        claim("a", claims.HOLDS, 0.5, [0.25, 0.75]), claim("b", claims.FAILS, -0.125, [-0.2, -0.05]),
        claim("c", claims.INCONCLUSIVE, 0.01, [-0.1, 0.1]), claim("d", claims.HOLDS, -1000, None),
        claim("e", claims.HOLDS, None, None)]}
    text = claims.render_html(doc)
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text and "src=" not in text
    p = parse_table(text)
    assert p.title == "The tutorials' claims, measured (--quick run)"
    header, *rows = p.rows
    assert [c[0] for c in header] == ["claim", "verdict", "effect [95% CI]", "measured", "setting", "seconds"]
    assert [r[0][0] for r in rows] == [f"{n}{n} <b>&</b>" for n in "abcde"]  # escaped, so it is text
    assert [r[1] for r in rows] == [("holds", "verdict holds"), ("does not hold here", "verdict fails"),
                                    ("inconclusive", "verdict inconclusive"), ("holds", "verdict holds"),
                                    ("holds", "verdict holds")]
    assert [r[2][0] for r in rows] == ["+0.5000 [+0.2500, +0.7500]", "-0.1250 [-0.2000, -0.0500]",
                                       "+0.0100 [-0.1000, +0.1000]", "-1,000", "–"]
    assert rows[0][3][0] == "x < y" and rows[0][4][0] == "uses digits" and rows[0][5][0] == "1.2"
    assert "<code>digits</code>" in text
    assert "3 holds, 1 does not hold here, 1 inconclusive; 12 s in all" in text


def test_markdown_table_escapes_pipes_in_cells():
    doc = {"quick": False, "total_seconds": 3.0, "claims": [
        {"name": "a", "claim": "c", "verdict": claims.HOLDS, "summary": "max |train-eval| 0", "setting": "s",
         "seconds": 1.0, "effect": None, "ci": None}]}
    row = [line for line in claims.render_markdown(doc).splitlines() if line.startswith("| c ")]
    assert row == ["| c | **holds** | max \\|train-eval\\| 0 | 1.0 |"]
