"""The model zoo: every model with every norm, exact parameter counts, torchvision compatibility,
and the tutorials' printed shapes."""

import pytest
import torch
import torchvision

import normlab
from normlab.analysis.layer_table import summarize
from normlab.errors import ConfigError
from normlab.models import MODELS, catalog, create_model, get_spec
from normlab.nn.blocks import D2LResidual, DenseBlock, Transition

NORMS = ("bn", "gn", "ln", "ln-chw", "in", "none")


def count(m):
    return sum(p.numel() for p in m.parameters())


# The smallest input each model is tested at: instance norm needs more than one pixel per channel
# at its deepest layer, so every size here leaves at least 2x2 there.
def tiny_size(name, norm):
    spec = get_spec(name)
    if name == "alexnet":
        return 63
    if name in ("vgg11", "vgg16", "resnet14-tutorial-avgpool8") or (name == "vgg11-small" and norm == "in"):
        return 32
    if name == "nin":
        return 99 if norm == "in" else 67
    if spec.family in ("resnet", "densenet", "googlenet") and spec.default_input[1] >= 96:
        return 64
    if spec.family in ("resnet-cifar", "preact-resnet"):
        return 16 if name in ("preact-resnet18", "resnet14-tutorial") else 8
    if name == "densenet-bc100":
        return 16
    return 28


# Their 4096-wide heads hold 100M+ parameters at any input size: too slow for every norm on a CPU;
# tests/test_models_seeds.py runs them at 224 px against torchvision, and their -small variants run here.
BIG = ("alexnet", "vgg11", "vgg16")


@pytest.mark.parametrize("norm", NORMS)
def test_every_model_forward_backward(norm):
    for name in normlab.list_models():
        if name in BIG:
            continue
        size = tiny_size(name, norm)
        chans = 1 if get_spec(name).default_input[0] == 1 else 3
        torch.manual_seed(0)
        k = get_spec(name).num_classes or 3
        if not get_spec(name).takes_norm and norm != "none":
            with pytest.raises(ConfigError, match=f"norm: model '{name}' has no norm layers, so a norm would not"):
                create_model(name, num_classes=k, in_channels=chans, input_size=(size, size), norm=norm)
            continue
        kw = {}
        if norm == "in" and get_spec(name).family in ("mlp", "rnn", "lenet"):
            # norms on Linear features: instance norm has no form there, refused in one line
            with pytest.raises(ConfigError, match=r"^(fc_)?norm.*normalizes over spatial positions"):
                create_model(name, num_classes=k, in_channels=chans, input_size=(size, size), norm=norm)
            if get_spec(name).family != "lenet":
                continue
            kw = {"fc_norm": False}  # lenet's explicit conv-only form
        model = create_model(name, num_classes=k, in_channels=chans, input_size=(size, size), norm=norm, **kw)
        model.train()
        out = model(torch.randn(2, chans, size, size))
        assert out.shape == (2, k), name
        out.square().mean().backward()
        # resnet-simple-seed003 keeps seed 003's bug: its blocks' conv2 is built but never used.
        grads = [p.grad for n, p in model.named_parameters()
                 if not (name == "resnet-simple-seed003" and ".conv2." in n)]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name


def test_one_and_three_channels():
    for name in ("resnet20", "densenet-bc100", "preact-resnet20", "googlenet-mini"):
        for c in (1, 3):
            size = 28
            m = create_model(name, num_classes=4, in_channels=c, input_size=(size, size)).eval()
            assert m(torch.zeros(1, c, size, size)).shape == (1, 4)


def test_every_model_has_a_docstring_naming_its_source():
    import inspect

    for name, spec in MODELS.items():
        module = inspect.getmodule(spec.builder)
        assert module.__doc__ and ("Source" in module.__doc__ or "et al." in module.__doc__), name


def cifar_resnet_params(n, classes=10, in_ch=3):
    """Hand count of He et al.'s 6n+2 net with option-A (parameter-free) shortcuts:
    stem conv + BN, 2n 3x3 convs + BN per stage at 16/32/64 channels, linear head."""
    total = in_ch * 16 * 9 + 2 * 16
    cin = 16
    for c in (16, 32, 64):
        for j in range(n):
            total += cin * c * 9 + 2 * c + c * c * 9 + 2 * c
            cin = c
    return total + 64 * classes + classes


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_resnet_parameter_counts(depth):
    n = (depth - 2) // 6
    expected = cifar_resnet_params(n)
    assert expected == -21926 + 97216 * n  # the closed form of the same count
    for prefix in ("resnet", "plain", "preact-resnet"):
        # The pre-activation net moves the stem's BN to the end (64 channels) and its downsampling
        # blocks normalize their 16/32-channel inputs: -32 -32 -64 +128 = the same total.
        assert count(create_model(f"{prefix}{depth}", num_classes=10, in_channels=3)) == expected
    assert cifar_resnet_params(3) == 269_722  # the paper's "0.27M"
    assert cifar_resnet_params(18) == 1_727_962  # the paper's "1.7M"


def test_resnet14_tutorial_count_by_hand():
    # stem conv3x3(1->16)+BN; stage 1: 2 blocks of two 16->16 convs+BN; stages 2 and 3: the first
    # block has a 3x3-conv+BN downsample; linear 64->10.
    expected = (144 + 32) + 2 * 2 * (2304 + 32) + \
        (4608 + 64 + 9216 + 64 + 4608 + 64) + 2 * (9216 + 64) + \
        (18432 + 128 + 36864 + 128 + 18432 + 128) + 2 * (36864 + 128) + 650
    assert expected == 195_450
    m = create_model("resnet14-tutorial")
    assert count(m) == expected
    assert isinstance(m.layer2[0].downsample[0], torch.nn.Conv2d) and m.layer2[0].downsample[0].kernel_size == (3, 3)


def test_reference_norms_build_every_kind():
    from normlab.nn import norm as ref

    for kind, cls in (("bn", ref.BatchNorm2d), ("gn", ref.GroupNorm), ("ln", ref.GroupNorm),
                      ("in", ref.InstanceNorm2d)):
        m = create_model("resnet20", num_classes=3, in_channels=3, norm=kind, norm_impl="reference")
        assert isinstance(m.layer1[0].bn1, cls)
        m(torch.randn(2, 3, 8, 8)).sum().backward()


def test_resnet18_exact_count():
    assert count(create_model("resnet18", num_classes=1000, in_channels=3)) == 11_689_512


def test_d2l_and_preact_counts_by_hand():
    def conv(ci, co, k, bias):
        return ci * co * k * k + (co if bias else 0)

    # d2l ResNet-18: convs keep biases, 1x1-conv shortcuts in stages 2-4, BN everywhere.
    total = conv(1, 64, 7, True) + 128
    cin = 64
    for i, c in enumerate((64, 128, 256, 512)):
        for j in range(2):
            ci = cin if j == 0 else c
            total += conv(ci, c, 3, True) + conv(c, c, 3, True) + 4 * c
            if i > 0 and j == 0:
                total += conv(ci, c, 1, True)
        cin = c
    total += 512 * 10 + 10
    assert count(create_model("resnet18-d2l", num_classes=10, in_channels=1)) == total

    # Pre-activation ResNet-18: bias-free convs, BN on each block's input and middle, final BN.
    total = conv(3, 64, 3, False)
    cin = 64
    for i, c in enumerate((64, 128, 256, 512)):
        for j in range(2):
            ci = cin if j == 0 else c
            total += 2 * ci + conv(ci, c, 3, False) + 2 * c + conv(c, c, 3, False)
            if i > 0 and j == 0:
                total += conv(ci, c, 1, False)
        cin = c
    total += 2 * 512 + 512 * 10 + 10
    assert count(create_model("preact-resnet18", num_classes=10, in_channels=3)) == total


def test_densenet_counts_by_hand():
    def dense_count(init, blocks, growth, bn_size, stem_k, stem_bn, bias, classes=10, in_ch=1):
        b = 1 if bias else 0
        total = in_ch * init * stem_k * stem_k + b * init + (2 * init if stem_bn else 0)
        c = init
        for i, n in enumerate(blocks):
            for _ in range(n):
                if bn_size:
                    mid = bn_size * growth
                    total += 2 * c + c * mid + 2 * mid + mid * growth * 9 + b * (mid + growth)
                else:
                    total += 2 * c + c * growth * 9 + b * growth
                c += growth
            if i != len(blocks) - 1:
                total += 2 * c + c * (c // 2) + b * (c // 2)
                c //= 2
        return total + 2 * c + c * classes + classes

    assert count(create_model("densenet-d2l", num_classes=10, in_channels=1)) == \
        dense_count(64, (4, 4, 4, 4), 32, None, 7, True, True)
    bc = count(create_model("densenet-bc100", num_classes=10, in_channels=3))
    assert bc == dense_count(24, (16, 16, 16), 12, 4, 3, False, False, in_ch=3)
    assert 0.75e6 < bc < 0.85e6  # the paper's "0.8M"


def test_googlenet_mini_count_by_hand():
    def incep(cin):  # separate 1x1 convs per branch, every conv with bias
        return (cin * 24 + 24) + (cin * 16 + 16) + (cin * 16 + 16 + 16 * 24 * 25 + 24) + \
               (cin * 16 + 16 + 16 * 24 * 9 + 24 + 24 * 24 * 9 + 24)

    expected = (1 * 10 * 25 + 10) + incep(10) + (88 * 20 * 25 + 20) + incep(20) + (1408 * 10 + 10)
    assert count(create_model("googlenet-mini", num_classes=10, in_channels=1)) == expected


def randomize_buffers(model):
    torch.manual_seed(1)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.normal_()
        elif name.endswith("running_var"):
            b.uniform_(0.5, 2.0)


@pytest.mark.parametrize("name,tv_kw,our_kw", [
    ("resnet18", {}, {}),
    ("resnet50", {}, {}),
    ("densenet121", {}, {}),
    ("googlenet", {"aux_logits": True, "init_weights": True}, {"aux_logits": True}),
])
def test_torchvision_state_dict_loads_and_matches(name, tv_kw, our_kw):
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None, num_classes=7, **tv_kw)
    randomize_buffers(tv)
    ours = create_model(name, num_classes=7, in_channels=3, **our_kw)
    assert count(ours) == count(tv)
    res = ours.load_state_dict(tv.state_dict(), strict=True)
    assert res.missing_keys == [] and res.unexpected_keys == []
    tv.eval()
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), tv(x))


def test_torchvision_counts_at_1000_classes():
    # Counted on the meta device: no memory, no init time.
    for name, kw in (("resnet34", {}), ("googlenet", {"aux_logits": False, "init_weights": True})):
        with torch.device("meta"):
            tv = getattr(torchvision.models, name)(weights=None, **kw)
            ours = create_model(name, num_classes=1000, in_channels=3)
        assert count(ours) == count(tv), name


def stage_shapes(model, shape, names):
    rows = {r.name: r.output_shape for r in summarize(model, shape).rows}
    return [rows[n] for n in names]


def test_d2l_tutorial_printed_shapes():
    blk = D2LResidual(3, 3)
    x = torch.rand(4, 3, 6, 6)
    assert blk(x).shape == (4, 3, 6, 6)
    assert D2LResidual(3, 6, use_1x1conv=True, stride=2)(x).shape == (4, 6, 3, 3)
    blk = DenseBlock(2, 3, 10, bn_size=None, bias=True)
    y = blk(torch.rand(4, 3, 8, 8))
    assert y.shape == (4, 23, 8, 8)
    assert Transition(23, 10)(y).shape == (4, 10, 4, 4)

    net = create_model("resnet18-d2l", in_channels=1, input_size=(224, 224))
    assert stage_shapes(net, (1, 224, 224), ["b1", "b2", "b3", "b4", "b5", "head"]) == [
        (1, 64, 56, 56), (1, 64, 56, 56), (1, 128, 28, 28), (1, 256, 14, 14), (1, 512, 7, 7), (1, 10)]

    net = create_model("densenet-d2l", in_channels=1, input_size=(96, 96))
    names = ["features.pool0"] + [f"features.{k}" for k in (
        "denseblock1", "transition1", "denseblock2", "transition2", "denseblock3", "transition3", "denseblock4")]
    assert stage_shapes(net, (1, 96, 96), names) == [
        (1, 64, 24, 24), (1, 192, 24, 24), (1, 96, 12, 12), (1, 224, 12, 12), (1, 112, 6, 6),
        (1, 240, 6, 6), (1, 120, 3, 3), (1, 248, 3, 3)]


def test_googlenet_mini_tutorial_shapes():
    net = create_model("googlenet-mini")
    assert stage_shapes(net, (1, 28, 28), ["conv1", "incep1", "conv2", "incep2", "fc"]) == [
        (1, 10, 12, 12), (1, 88, 12, 12), (1, 20, 4, 4), (1, 88, 4, 4), (1, 10)]
    assert net.fc.in_features == 1408


def test_googlenet_paper_5x5_branch():
    from normlab.models.googlenet import _CFG

    with torch.device("meta"):
        tv_like = count(create_model("googlenet", num_classes=1000, in_channels=3))
        paper = count(create_model("googlenet", num_classes=1000, in_channels=3, kernel5=5))
    # Each "5x5" branch conv grows from 3x3 to 5x5 taps: c5_reduce * c5 * (25 - 9) more weights.
    assert paper - tv_like == sum(c[3] * c[4] * 16 for c in _CFG.values())


def test_googlenet_aux_heads_only_in_training():
    net = create_model("googlenet", num_classes=5, in_channels=3, aux_logits=True)
    net.train()
    out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 5) and [a.shape for a in net.aux_outputs] == [(2, 5), (2, 5)]
    net.eval()
    net(torch.randn(1, 3, 64, 64))
    assert net.aux_outputs == ()


def test_plain_net_has_no_shortcut():
    torch.manual_seed(0)
    res = create_model("resnet20", num_classes=10, in_channels=3)
    plain = create_model("plain20", num_classes=10, in_channels=3)
    plain.load_state_dict(res.state_dict())  # same parameters, only the wiring differs
    res.eval()
    plain.eval()
    x = torch.randn(2, 3, 8, 8)
    block = res.layer1[0]
    # With conv2's output zeroed, a residual block passes relu(x) on; a plain block passes zeros.
    with torch.no_grad():
        for m in (res.layer1[0].conv2, plain.layer1[0].conv2):
            m.weight.zero_()
        h = torch.relu(torch.randn(2, 16, 8, 8))
        assert torch.allclose(block(h), h, atol=1e-6)
        assert torch.count_nonzero(plain.layer1[0](h)) == 0
        assert not torch.allclose(res(x), plain(x))


def test_option_a_shortcut_zero_pads_channels():
    from normlab.nn.blocks import ZeroPadShortcut

    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, :8]) == 0 and torch.count_nonzero(y[:, 24:]) == 0


def test_preact_block_leaves_identity_untouched_with_no_norm():
    from normlab.nn.blocks import PreActBlock

    blk = PreActBlock(4, 4, norm_layer=lambda c: torch.nn.Identity())
    x = torch.randn(2, 4, 5, 5)
    keep = x.clone()
    out = blk(x)
    assert torch.equal(x, keep)  # the in-place ReLU must not overwrite the identity path
    with torch.no_grad():
        blk.conv2.weight.zero_()
        assert torch.allclose(blk(x), x)


def test_too_small_input_errors():
    with pytest.raises(ConfigError, match="nin needs inputs of at least 67x67 pixels, got 28x28"):
        create_model("nin", input_size=(28, 28))
    with pytest.raises(ConfigError, match="googlenet-mini needs inputs of at least 16x16 pixels, got 8x8"):
        create_model("googlenet-mini", input_size=(8, 8))


def test_catalog_and_cli_models(capsys):
    from normlab import cli

    rows = {r["name"]: r for r in catalog()}
    assert set(rows) == set(MODELS)
    assert rows["resnet20"]["params"] == 269_722
    assert cli.main(["models", "--family", "resnet-cifar"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 12 and all(line.split()[1] == "resnet-cifar" for line in out)  # 5 resnet, 5 plain, 2 tutorial
    assert any(line.split()[:3] == ["resnet110", "resnet-cifar", "1,727,962"] for line in out)
    assert cli.main(["models", "--family", "resnets"]) == 2
    assert "unknown model family 'resnets'" in capsys.readouterr().err


def test_instance_norm_on_a_1x1_map_is_a_clear_error_at_build_time():
    with pytest.raises(ConfigError) as e:
        create_model("resnet18-d2l", in_channels=1, input_size=(28, 28), norm="in")
    assert str(e.value) == ("norm 'in': resnet18-d2l at input size 28x28 feeds instance norm 'b5.0.bn1' a 1x1 "
                            "map, one value per channel, which it cannot normalize; give a larger input "
                            "(e.g. --resize 64) or use --norm gn, ln or bn")
    # large enough: builds, and the probe leaves the model in training mode
    model = create_model("resnet18-d2l", in_channels=1, input_size=(64, 64), norm="in")
    assert model.training and all(m.training for m in model.modules())


def test_dropout_none_is_the_models_own_and_zero_turns_it_off():
    ps = lambda m: [d.p for d in m.modules() if isinstance(d, torch.nn.Dropout)]  # noqa: E731
    assert ps(create_model("nin", input_size=(96, 96))) == [0.5]  # the paper's
    assert ps(create_model("googlenet", input_size=(96, 96))) == [0.2]  # torchvision's
    # an ablation's `dropout: [0, 0.5]` must really compare none with some
    assert ps(create_model("nin", input_size=(96, 96), dropout=0.0)) == [0.0]
    assert ps(create_model("googlenet", input_size=(96, 96), dropout=0.0)) == [0.0]
    assert ps(create_model("lenet-bn", dropout=0.3)) == [0.3] and ps(create_model("lenet-bn")) == []
    assert get_spec("nin").default_dropout == 0.5 and get_spec("mlp").default_dropout == 0.0


@pytest.mark.parametrize("name,channels,smallest", [("densenet-d2l", 1, 29), ("densenet121", 3, 29),
                                                    ("densenet-bc100", 3, 4)])
def test_densenets_refuse_inputs_their_poolings_shrink_to_nothing(name, channels, smallest):
    """The smallest input is the hand count: 7x7/2 conv and 3x3/2 pooling, then one halving per
    transition, must leave at least 1x1 (29 -> 15 -> 8 -> 4 -> 2 -> 1 for d2l's 3 transitions)."""
    model = normlab.create_model(name, num_classes=10, in_channels=channels, input_size=(smallest, smallest))
    assert model(torch.zeros(2, channels, smallest, smallest)).shape == (2, 10)
    with pytest.raises(ConfigError) as e:
        normlab.create_model(name, num_classes=10, in_channels=channels, input_size=(smallest - 1, smallest - 1))
    assert str(e.value) == (f"{name} needs inputs of at least {smallest}x{smallest} pixels, got "
                            f"{smallest - 1}x{smallest - 1}; resize the inputs (--resize {smallest}) or use a "
                            f"model for small images (mlp, logistic)")


def test_shortcut_ops_compute_he_et_al_2016_fig_2_by_hand():
    from normlab.nn.blocks import BasicBlock

    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    plain = BasicBlock(4, 4).double().eval()
    residual = plain.bn2(plain.conv2(plain.relu(plain.bn1(plain.conv1(x)))))
    torch.testing.assert_close(plain(x), torch.relu(residual + x))
    for op in ("scale", "gate", "conv1x1", "dropout"):
        block = BasicBlock(4, 4, shortcut_op=op).double()
        block.load_state_dict(plain.state_dict(), strict=False)
        block.eval()  # BN on its running statistics, as `plain`; dropout on the shortcut still drops
        if op == "dropout":
            block.shortcut_op.train()
        torch.manual_seed(1)
        got = block(x)
        torch.manual_seed(1)
        skip = {"scale": lambda: 0.5 * x, "conv1x1": lambda: block.shortcut_op(x),
                "dropout": lambda: torch.nn.functional.dropout(x, 0.5, training=True)}
        if op == "gate":
            g = torch.sigmoid(torch.nn.functional.conv2d(x, block.shortcut_op.conv.weight, block.shortcut_op.conv.bias))
            want = torch.relu(g * residual + (1 - g) * x)
            assert float(block.shortcut_op.conv.bias.detach()[0]) == -6.0  # the paper's best gate bias
        else:
            want = torch.relu(residual + skip[op]())
        torch.testing.assert_close(got, want)


def test_shortcut_op_identity_is_resnet20_and_the_variants_sit_on_identity_shortcuts_only():
    torch.manual_seed(0)
    a = create_model("resnet20", num_classes=3, in_channels=1, input_size=(8, 8)).eval()
    torch.manual_seed(0)
    b = create_model("resnet20", num_classes=3, in_channels=1, input_size=(8, 8), shortcut_op="identity").eval()
    x = torch.randn(2, 1, 8, 8)
    assert a.state_dict().keys() == b.state_dict().keys()
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    c = create_model("resnet20", num_classes=3, in_channels=1, input_size=(8, 8), shortcut_op="conv1x1")
    ops = [type(blk.shortcut_op).__name__ for layer in (c.layer1, c.layer2, c.layer3) for blk in layer]
    assert ops == ["Conv2d"] * 3 + ["NoneType", "Conv2d", "Conv2d"] * 2  # the option-A blocks keep theirs
    with pytest.raises(ConfigError, match=r"^unknown shortcut op 'bogus'"):
        create_model("resnet20", shortcut_op="bogus")
    with pytest.raises(ConfigError, match=r"^shortcut_op gate: .* drop --block-order full-preact or --shortcut-op"):
        create_model("resnet20", shortcut_op="gate", block_order="full-preact")
