"""`inspect`: per-layer table and totals, checked against a hand count of LeNet."""

import json

import pytest
import torch

import normlab
from normlab import cli
from normlab.analysis.layer_table import format_table, inspect_model, parse_shape, summarize
from normlab.errors import ConfigError
from normlab.models import create_model

# The tutorial's LeNet with BN on a 1x28x28 input, counted by hand:
# conv1 6x1x5x5+6, bn 2x6, conv2 16x6x5x5+16, bn 2x16, fc 256x120+120, bn 2x120,
# fc 120x84+84, bn 2x84, fc 84x10+10.
LENET_BN_PARAMS = 156 + 12 + 2416 + 32 + 30840 + 240 + 10164 + 168 + 850
# mult-adds per image: conv1 24*24 positions x 6 maps x 25 taps, conv2 8*8 x 16 x 150,
# then the three linear layers.
LENET_BN_MACS = 24 * 24 * 6 * 25 + 8 * 8 * 16 * 150 + 256 * 120 + 120 * 84 + 84 * 10
# floats output by leaf layers per image: conv/bn/sigmoid at 6x24x24, pool 6x12x12,
# conv/bn/sigmoid at 16x8x8, pool 16x4x4, flatten 256, linear/bn/sigmoid 120 and 84,
# dropout (identity) 84, classifier 10.
LENET_BN_ACTS = 3 * 3456 + 864 + 3 * 1024 + 256 + 256 + 3 * 120 + 3 * 84 + 84 + 10


def test_lenet_totals_match_hand_count():
    assert LENET_BN_PARAMS == 44_878 and LENET_BN_MACS == 281_640
    s = inspect_model("lenet-bn", (1, 28, 28), batch=2)
    assert s.total_params == s.trainable_params == LENET_BN_PARAMS
    assert s.mult_adds == 2 * LENET_BN_MACS
    assert s.activation_bytes == 2 * LENET_BN_ACTS * 4
    assert s.param_bytes == LENET_BN_PARAMS * 4 and s.input_bytes == 2 * 28 * 28 * 4
    rows = {r.name: r for r in s.rows}
    assert rows["features.0"].output_shape == (2, 6, 24, 24) and rows["features.0"].mult_adds == 2 * 86_400
    assert rows["features.1"].norm == "bn" and rows["features.1"].params == 12
    assert rows["fc"].params == 30840 + 240 + 10164 + 168  # a container counts its children
    assert rows["fc"].mult_adds == 2 * (30720 + 10080)


def test_norm_column_names_each_kind():
    for norm, label in (("gn", "gn(3)"), ("gn:2", "gn(2)"), ("ln", "ln"), ("in", "in"), ("in-affine", "in")):
        kw = {"fc_norm": False} if norm.startswith("in") else {}  # IN after the convolutions only
        s = inspect_model("lenet-bn", (1, 28, 28), norm=norm, **kw)
        assert {r.name: r for r in s.rows}["features.1"].norm == label


def test_table_text():
    text = format_table(inspect_model("lenet-bn", (1, 28, 28)))
    assert "Total params: 44,878" in text
    assert "Total mult-adds (M): 0.28" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("0 (Conv2d)"))
    assert line.split()[2:] == ["[1,", "6,", "24,", "24]", "156", "86,400", "--"]


def test_mode_and_running_stats_unchanged():
    model = create_model("resnet20")
    model.train()
    model.layer2.eval()  # a mixed state must survive exactly
    modes = {n: m.training for n, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model, (3, 32, 32), batch=2)
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_matches_a_direct_forward():
    model = create_model("densenet-bc100").eval()
    s = summarize(model, (3, 32, 32))
    assert s.total_params == sum(p.numel() for p in model.parameters())
    convs = [r for r in s.rows if r.type == "Conv2d"]
    assert len(convs) == 1 + 3 * 16 * 2 + 2  # stem, two per bottleneck layer, two transitions
    assert s.rows[0].output_shape == (1, 10)


def test_parse_shape_and_bad_input():
    assert parse_shape("3x32x32") == (3, 32, 32)
    for bad in ("28x28", "1x28x0", "axbxc"):
        with pytest.raises(ConfigError, match="input shape must be CxHxW with positive sizes, e.g. 1x28x28"):
            parse_shape(bad)
    with pytest.raises(ConfigError, match="input 1x32x32 does not fit this model"):
        summarize(create_model("resnet20", in_channels=3), (1, 32, 32))


def test_cli_inspect_model(capsys):
    assert cli.main(["inspect", "lenet-bn", "--input", "1x28x28", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["total_params"] == LENET_BN_PARAMS and d["mult_adds"] == LENET_BN_MACS
    assert cli.main(["inspect", "lenet-bn", "--input", "28x28"]) == 2
    assert "input shape must be CxHxW" in capsys.readouterr().err


def test_cli_inspect_run_directory(tmp_path, capsys):
    res = normlab.train(dict(dataset="digits", model="mlp", epochs=1, batch_size=64, progress=False,
                             out=str(tmp_path / "run")), log=lambda *a: None)
    run = normlab.load(res.run_dir)
    assert cli.main(["inspect", str(res.run_dir), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["total_params"] == sum(p.numel() for p in run.model.parameters())
    assert d["input_shape"] == list(run.input_shape)
    assert d["meta"]["model"] == "mlp" and d["rows"][-1]["output_shape"] == [1, 10]
    assert cli.main(["inspect", str(res.run_dir), "--norm", "gn"]) == 2
    assert "--norm: only for a model name; a run directory is inspected as it was trained" in \
        capsys.readouterr().err
