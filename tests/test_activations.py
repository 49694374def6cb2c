"""Activation statistics: the tutorial's deep-MLP init experiment, in miniature."""

import math

import pytest
import torch
import torch.nn as tnn

from normlab import ConfigError, create_model
from normlab.analysis import activations
from normlab.cli import main


def deep(init, norm=None, depth=50, width=128, batch=32):
    return activations.model_stats("mlp", init=init, norm=norm, depth=depth, width=width,
                             input_shape=(1, 8, 8), data="normal", batch=batch, seed=0)


def std_ratio(rep):
    return rep.layers[-2].std / rep.layers[0].std  # last hidden block over the first


def test_default_init_shrinks_towards_zero():
    rep = deep("default")
    assert len(rep.layers) == 51  # 50 hidden Linear layers + the classifier
    assert rep.input_desc.startswith("32 standard-normal inputs 1x8x8")
    assert std_ratio(rep) < 0.15
    assert all(r.nan == 0 and r.inf == 0 for r in rep.layers)


def test_normal_std1_explodes_to_inf_and_nan():
    rep = deep("normal:std=1")
    # Each layer multiplies the scale by about sqrt(width / 2) = 8: float32 overflows by layer ~45.
    assert rep.layers[5].std > 1e4 * rep.layers[0].std
    last = rep.layers[-2]
    assert last.nan + last.inf == last.numel == 32 * 128
    assert math.isnan(last.std)
    assert any(r.nan or r.inf for r in rep.layers[30:])


@pytest.mark.parametrize("init,norm", [("kaiming-normal", None), ("default", "bn")])
def test_kaiming_and_batchnorm_keep_a_steady_scale(init, norm):
    rep = deep(init, norm)
    assert 0.25 < std_ratio(rep) < 4
    assert all(r.nan == 0 and r.inf == 0 and 0.1 < r.std < 10 for r in rep.layers[:-1])


def test_first_layer_and_grad_norm_match_a_hand_computation():
    torch.manual_seed(1)
    model = create_model("mlp", in_channels=1, input_size=(4, 4), depth=2, width=8, act="tanh")
    x = torch.randn(16, 1, 4, 4)
    y = torch.arange(16) % 10
    rep = activations.activation_stats(model, x, y)
    lin1 = model.features[1]
    h = torch.tanh(lin1(x.flatten(1))).detach().double()
    assert rep.layers[0].name == "features.1" and rep.layers[0].kind == "Linear"
    assert rep.layers[0].mean == pytest.approx(float(h.mean()), rel=1e-6)
    assert rep.layers[0].std == pytest.approx(float(h.std(unbiased=False)), rel=1e-6)
    ref = create_model("mlp", in_channels=1, input_size=(4, 4), depth=2, width=8, act="tanh")
    ref.load_state_dict(model.state_dict())
    tnn.functional.cross_entropy(ref(x), y).backward()
    assert rep.layers[0].grad_norm == pytest.approx(float(ref.features[1].weight.grad.norm()), rel=1e-5)
    assert rep.layers[-1].name == "classifier"


def test_tensor_stats_counts_nan_inf_and_near_zero():
    t = torch.tensor([0.0, 1e-5, 2.0, -2.0, math.nan, math.inf, -math.inf, 4.0])
    s = activations.tensor_stats(t)
    fin = torch.tensor([0.0, 1e-5, 2.0, -2.0, 4.0], dtype=torch.float64)
    assert (s["nan"], s["inf"], s["numel"]) == (1, 2, 8)
    assert s["mean"] == pytest.approx(float(fin.mean()))
    assert s["std"] == pytest.approx(float(fin.std(unbiased=False)))
    assert s["near_zero"] == pytest.approx(2 / 5)


def test_mode_buffers_and_grads_of_the_callers_model_are_unchanged():
    model = create_model("mlp", in_channels=1, input_size=(8, 8), depth=3, width=16, norm="bn")
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(32, 1, 8, 8)
    train_rep = activations.activation_stats(model, x, mode="train")
    assert train_rep.mode == "train"
    assert not any(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    # The mode asked for is the one used: eval-mode BN with fresh running stats is the identity,
    # so it differs from the batch-normalized train pass.
    eval_rep = activations.activation_stats(model, x)
    assert eval_rep.mode == "eval"
    assert eval_rep.layers[0].std != pytest.approx(train_rep.layers[0].std, rel=1e-3)
    model.train()
    activations.activation_stats(model, x, mode="eval")
    assert all(m.training for m in model.modules())


def test_cli_table_plot_and_errors(tmp_path, capsys):
    png = tmp_path / "std.png"
    assert main(["stats", "mlp", "--depth", "4", "--width", "16", "--data", "digits", "--init", "default",
                 "--init", "kaiming-normal", "--batch", "64", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "== init=default" in out and "== init=kaiming-normal" in out
    assert "64 digits training images" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["stats", "mlp", "--input", "28x28"]) == 2
    assert "input shape must be CxHxW with positive sizes, e.g. 1x28x28, got '28x28'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--depth: model 'lenet' has no such option"):
        activations.model_stats("lenet", depth=3, data="normal")


def test_stats_of_a_trained_run(tmp_path):
    from normlab import train

    res = train({"dataset": "digits", "model": "mlp", "depth": 2, "width": 16, "epochs": 1,
                 "out": str(tmp_path / "run"), "progress": False, "device": "cpu"}, log=lambda *a: None)
    rep = activations.run_stats(res.run_dir, batch=64)
    assert rep.mode == "eval" and len(rep.layers) == 3
    assert "digits training images" in rep.input_desc


def test_plot_marks_where_an_exploding_net_stops_being_finite(tmp_path):
    rep = activations.model_stats("mlp", init="normal:std=3", act="relu", depth=40, width=64, data="normal",
                                  batch=32)
    stds = [layer.std for layer in rep.layers]
    first = next(i for i, v in enumerate(stds) if not math.isfinite(v))
    assert all(math.isfinite(v) for v in stds[:first])
    png = tmp_path / "explode.png"
    activations.plot_stats({"std 3": rep}, png)
    svg = (tmp_path / "explode.svg").read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"std 3 (not finite from layer {rep.layers[first].index})" in svg
    assert "activation std (log scale)" in svg and "layer (depth)" in svg


# ---------------------------------------------------------------- seed 004's 100-layer table, exactly
class Seed004MLP(tnn.Module):
    """Seed 004's code (section 3.1), with its `print` turned into a list of the printed std values."""

    def __init__(self, neural_num, layers=100):
        super(Seed004MLP, self).__init__()
        self.linears = tnn.ModuleList([tnn.Linear(neural_num, neural_num, bias=False) for i in range(layers)])
        self.bns = tnn.ModuleList([tnn.BatchNorm1d(neural_num) for i in range(layers)])
        self.neural_num = neural_num

    def forward(self, x, bn=False):
        printed = []
        for (i, linear), bn_layer in zip(enumerate(self.linears), self.bns):
            x = linear(x)
            if bn:
                x = bn_layer(x)
            x = torch.relu(x)
            if torch.isnan(x.std()):
                break  # the seed prints "output is nan in {i} layers" and stops
            printed.append(x.std().item())
        return printed

    def initialize(self, method):
        for m in self.modules():
            if isinstance(m, tnn.Linear):
                if method == "normal":
                    tnn.init.normal_(m.weight.data, std=1)
                else:
                    tnn.init.kaiming_normal_(m.weight.data)


def seed004_table(init, bn):
    torch.manual_seed(1)  # set_seed(1)
    net = Seed004MLP(256, 100)
    if init != "default":
        net.initialize(init)
    inputs = torch.randn((16, 256))
    return net(inputs, bn=bn)


@pytest.mark.parametrize("init, ours, bn", [("default", "default", False), ("normal", "normal:std=1", False),
                                            ("kaiming", "kaiming-normal", False), ("default", "default", True)])
def test_stats_reproduces_seed_004s_100_layer_table(init, ours, bn):
    want = seed004_table(init, bn)
    rep = activations.model_stats("mlp", init=ours, norm="bn" if bn else "none", depth=100, width=256, bias=False,
                                  head=False, input_shape=(256, 1, 1), data="normal", batch=16, seed=1)
    assert len(rep.layers) == 100
    assert len(want) == (35 if init == "normal" else 100)  # std=1 overflows: the seed stops at layer 36
    for layer, (row, w) in enumerate(zip(rep.layers, want), start=1):
        if math.isinf(w):  # the seed's float32 variance overflows; normlab's std (float64) does not
            assert row.std > math.sqrt(torch.finfo(torch.float32).max), f"layer {layer}"
        else:
            assert row.std == pytest.approx(w, rel=1e-3), f"layer {layer}"
    if init == "normal":  # where the seed's loop stops, normlab's table shows the first non-finite values
        assert rep.layers[34].inf == 0 and rep.layers[35].inf > 0
    assert want[0] == pytest.approx({"default": 0.334, "normal": 9.35, "kaiming": 0.827}[init] if not bn else 0.575,
                                    rel=2e-3)


def test_bias_and_head_are_mlp_knobs_only():
    m = create_model("mlp", depth=3, width=8, bias=False, head=False)
    assert all(lin.bias is None for lin in m.modules() if isinstance(lin, tnn.Linear))
    assert isinstance(m.classifier, tnn.Identity)
    assert create_model("mlp", depth=3, width=8).features[1].bias is not None  # on by default, where no norm follows
    assert create_model("mlp", depth=3, width=8, norm="bn").features[1].bias is None  # a BN would cancel it
    assert create_model("mlp", depth=3, width=8, norm="bn", bias=True).features[1].bias is not None  # as asked
    with pytest.raises(ConfigError, match="bias: model 'lenet-bn' has no such option"):
        activations.model_stats("lenet-bn", bias=False)


def test_widths_give_one_width_per_hidden_layer():
    # seed 002's Batch_Net(in, 300, 100, out): Linear(in, 300), BN, ReLU, Linear(300, 100), BN, ReLU, Linear(100, out)
    m = create_model("mlp", widths=(300, 100), norm="bn", bias=True, input_size=(28, 28))
    linears = [x for x in m.modules() if isinstance(x, tnn.Linear)]
    assert [(x.in_features, x.out_features) for x in linears] == [(784, 300), (300, 100), (100, 10)]
    assert all(x.bias is not None for x in linears)
    assert [type(x).__name__ for x in m.features] == ["Flatten", "Linear", "BatchNorm1d", "ReLU", "Linear",
                                                       "BatchNorm1d", "ReLU"]
    assert [x.out_features for x in create_model("mlp", widths="64,32,16").modules()
            if isinstance(x, tnn.Linear)] == [64, 32, 16, 10]
    with pytest.raises(ConfigError, match="widths: sets every hidden layer's width and so the depth; drop --depth"):
        create_model("mlp", widths=(300, 100), depth=3)
    with pytest.raises(ConfigError, match="widths: must be hidden-layer widths separated by commas"):
        create_model("mlp", widths="300,,100")


def test_widths_from_the_command_line(tmp_path):
    out = tmp_path / "w"
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--widths", "32,16", "--epochs", "1",
                 "--no-progress", "--out", str(out)]) == 0
    import normlab

    lin = [x for x in normlab.load(out).model.modules() if isinstance(x, tnn.Linear)]
    assert [x.out_features for x in lin] == [32, 16, 10]
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--widths", "32,16", "--width", "8",
                 "--epochs", "1", "--out", str(tmp_path / "x")]) == 2
