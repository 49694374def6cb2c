"""The `fast` recipe, test-time augmentation and DigitNet, against hand computations."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from normlab import api, create_model, make_config
from normlab.cli import main
from normlab.data import tta
from normlab.data.loader import DeviceLoader, Normalize
from normlab.errors import ConfigError
from normlab.recipes import RECIPES
from normlab.evaluation import evaluate


# ---------------------------------------------------------------- test-time augmentation
def test_shift_image_repeats_the_border():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    down = tta.shift_image(x, 1, 0)  # out[i, j] = x[i + 1, j], last row repeated
    assert down[0, 0].tolist() == [[4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15], [12, 13, 14, 15]]
    left = tta.shift_image(x, 0, -1)  # out[i, j] = x[i, j - 1], first column repeated
    assert left[0, 0, 0].tolist() == [0, 0, 1, 2]
    assert tta.shift_image(x, 0, 0) is x


@pytest.mark.parametrize("spec,count", [("", 1), ("shift", 5), ("flip", 2), ("shift,flip", 10), ("none", 1)])
def test_view_counts_and_first_view_is_the_image(spec, count):
    x = torch.randn(2, 3, 5, 5)
    vs = list(tta.views(x, tta.parse(spec)))
    assert len(vs) == count
    assert torch.equal(vs[0], x)


def test_predict_proba_is_the_mean_softmax_of_the_views():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.randn(4, 1, 4, 4)
    expected = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    assert torch.allclose(tta.predict_proba(model, x, ("flip",)), expected, atol=1e-6)
    assert torch.allclose(tta.predict_proba(model, x, ()), model(x).softmax(1), atol=1e-6)


def test_evaluate_with_tta_scores_the_mean_probability():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    norm = Normalize([0.5], [0.25])
    res = evaluate(model, DeviceLoader(x, y, 4, norm), tta="shift")
    xf = norm(x)
    p = sum(model(tta.shift_image(xf, dy, dx)).softmax(1) for dy, dx in tta._SHIFTS) / 5
    assert res["loss"] == pytest.approx(F.nll_loss(p.log(), y).item(), rel=1e-5)
    assert res["acc"] == pytest.approx((p.argmax(1) == y).float().mean().item())


@pytest.mark.parametrize("spec,message", [
    ("rot", "unknown tta view 'rot'. Valid choices: flip, shift."),
    ("shift,shift", "tta: 'shift' is given twice; use e.g. --tta shift,flip"),
])
def test_bad_tta_specs_are_clear_errors(spec, message):
    with pytest.raises(ConfigError) as e:
        make_config({"tta": spec})
    assert str(e.value) == message


# ---------------------------------------------------------------- DigitNet
def test_digitnet_parameter_count_by_hand():
    m = create_model("digitnet", num_classes=10, in_channels=1, input_size=(28, 28))
    # conv3x3 1->16, BN(16); 16->32, BN(32); 32->64, BN(64); no conv bias; linear on 64x3x3
    by_hand = 9 * 16 + 32 + 9 * 16 * 32 + 64 + 9 * 32 * 64 + 128 + (64 * 9 * 10 + 10)
    assert sum(p.numel() for p in m.parameters()) == by_hand == 29_178
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    m8 = create_model("digitnet", num_classes=10, in_channels=1, input_size=(8, 8), width=8, depth=2)
    # depth 2 adds conv3x3 c->c + BN(c) per stage; the last map is 1x1
    by_hand8 = (9 * 8 + 16 + 9 * 8 * 8 + 16) + (9 * 8 * 16 + 32 + 9 * 16 * 16 + 32) \
        + (9 * 16 * 32 + 64 + 9 * 32 * 32 + 64) + (32 * 10 + 10)
    assert sum(p.numel() for p in m8.parameters()) == by_hand8
    assert m8(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_digitnet_bad_sizes_are_clear_errors():
    with pytest.raises(ConfigError, match=r"digitnet needs inputs of at least 8x8 pixels, got 7x7"):
        create_model("digitnet", input_size=(7, 7))
    with pytest.raises(ConfigError, match=r"depth: digitnet needs at least 1 conv per stage, got 0"):
        create_model("digitnet", depth=0)


# ---------------------------------------------------------------- recipes
def test_recipe_fills_only_unset_options():
    cfg = make_config({"recipe": "fast"})
    for key, value in RECIPES["fast"]["options"].items():
        assert getattr(cfg, key) == value, key
    over = make_config({"recipe": "fast"}, {"epochs": 3, "tta": ""})
    assert over.epochs == 3 and over.tta == "" and over.model == "digitnet"
    # a file value below the recipe on the command line still wins over the recipe
    assert make_config({"lr": 0.5}, {"recipe": "fast"}).lr == 0.5


def test_unknown_recipe_is_a_clear_error():
    with pytest.raises(ConfigError) as e:
        make_config({"recipe": "fsat"})
    assert str(e.value) == "unknown recipe 'fsat'. Did you mean 'fast'? Valid choices: best, d2l, d2l-densenet, d2l-resnet18, d2l-resnet18-96, fast, fast-gpu, fast-v1, seed001."


def test_recipe_run_end_to_end_and_saved_weights_reproduce_the_tta_score(tmp_path, capsys, monkeypatch):
    from normlab.train import trainer

    monkeypatch.setattr(trainer, "cpu_has_bf16", lambda: False)  # as on a CPU without bf16 instructions
    out = tmp_path / "run"
    assert main(["train", "--recipe", "fast", "--dataset", "synthetic", "--epochs", "1", "--threads", "1",
                 "--tta", "shift", "--out", str(out), "--no-progress"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("recipe fast: bf16 autocast, but this CPU has no native bf16") and "--precision fp32" in first
    saved = json.loads((out / "config.json").read_text())
    assert saved["recipe"] == "fast" and saved["model"] == "digitnet" and saved["tta"] == "shift"
    summary = json.loads((out / "summary.json").read_text())
    # The saved weights, evaluated again with the same shift views, give the same score.
    again = api.evaluate_run(out)
    assert again["test_acc"] == pytest.approx(summary["final_test_acc"])


@pytest.mark.parametrize("recipe, precision, device, native, says", [
    ("fast", "bf16", "cpu", True, "bf16 numbers differ between CPU kinds: --precision fp32 gives the same numbers"),
    ("best", "bf16", "cpu", False, "this CPU has no native bf16"),
    ("fast", "fp32", "cpu", True, None),   # the user's --precision fp32: nothing to say
    ("fast-gpu", "bf16", "cuda", True, None),
    ("d2l", "fp32", "cpu", False, None),   # a recipe in fp32
    (None, "bf16", "cpu", False, None),    # the user's own --precision bf16, no recipe
])
def test_a_recipe_in_bf16_says_so_on_a_cpu(recipe, precision, device, native, says):
    from normlab.recipes import precision_note

    note = precision_note(recipe, precision, device, native)
    assert (note is None) if says is None else (says in note and "\n" not in note)


def test_best_recipe_is_fast_v1_with_the_documented_changes():
    # docs/recipes.md's `best` table: fast-v1's options at width 48 for 60 epochs, nothing else.
    best = make_config({"recipe": "best"})
    v1 = make_config({"recipe": "fast-v1"})
    changed = {k: getattr(best, k) for k in RECIPES["best"]["options"] if getattr(best, k) != getattr(v1, k)}
    assert changed == {"width": 48, "epochs": 60}
    table = (Path(__file__).resolve().parent.parent / "docs" / "recipes.md").read_text().split("## `best`")[1]
    for key, value in changed.items():
        assert f"| `--{key}` | {value} |" in table, key
    assert best.dataset == "mnist5k" and best.precision == "bf16" and best.channels_last is True
    assert make_config({"recipe": "best"}, {"epochs": 2}).epochs == 2
