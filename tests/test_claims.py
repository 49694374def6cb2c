"""The exact claims against hand counts, the verdict rule, and `normlab claims --only`."""

import json

import pytest

from normlab.analysis import claims
from normlab.cli import main
from normlab.errors import ConfigError


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
