"""Initialization schemes by name, checked against their defining formulas."""

import math

import pytest
import torch
import torch.nn as tnn

from normlab.errors import ConfigError
from normlab.models import create_model
from normlab.nn.init import NAMES, init_weights


def layers():
    torch.manual_seed(0)
    return tnn.Sequential(tnn.Conv2d(16, 64, 3), tnn.BatchNorm2d(64), tnn.Flatten(), tnn.Linear(400, 300))


def weights(m):
    return [m[0].weight, m[3].weight]


def test_names_are_the_documented_set():
    assert set(NAMES) == {"default", "zeros", "normal", "uniform", "xavier-uniform", "xavier-normal",
                          "kaiming-normal", "kaiming-uniform", "orthogonal", "sparse"}


def test_default_keeps_torch_initialization():
    m = layers()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    init_weights(m, "default")
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert m[0].bias.abs().sum() > 0  # torch's own bias init survives


@pytest.mark.parametrize("name", [n for n in NAMES if n != "default"])
def test_biases_zero_and_norm_untouched(name):
    m = layers()
    with torch.no_grad():
        m[1].weight.fill_(3.0)
    init_weights(m, name)
    assert torch.count_nonzero(m[0].bias) == 0 and torch.count_nonzero(m[3].bias) == 0
    assert torch.all(m[1].weight == 3.0) and torch.count_nonzero(m[1].bias) == 0


def test_zeros_normal_uniform():
    m = init_weights(layers(), "zeros")
    assert all(torch.count_nonzero(w) == 0 for w in weights(m))
    m = init_weights(layers(), "normal:std=0.5")
    w = m[3].weight
    assert abs(w.std().item() - 0.5) < 0.01 and abs(w.mean().item()) < 0.01
    m = init_weights(layers(), "uniform:a=0.2")
    w = m[3].weight
    assert w.abs().max() <= 0.2 and w.abs().max() > 0.19
    # Default std of `normal` is 0.01.
    assert abs(init_weights(layers(), "normal")[3].weight.std().item() - 0.01) < 0.001


def test_xavier_and_kaiming_match_their_formulas():
    fan_in, fan_out = 400, 300
    w = init_weights(layers(), "xavier-uniform")[3].weight
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert w.abs().max() <= bound and w.abs().max() > 0.98 * bound
    w = init_weights(layers(), "xavier-normal")[3].weight
    assert abs(w.std().item() / math.sqrt(2 / (fan_in + fan_out)) - 1) < 0.02
    w = init_weights(layers(), "kaiming-normal")[3].weight
    assert abs(w.std().item() / math.sqrt(2 / fan_in) - 1) < 0.02
    conv = init_weights(layers(), "kaiming-normal")[0].weight  # fan_in 16*3*3
    assert abs(conv.std().item() / math.sqrt(2 / 144) - 1) < 0.05
    w = init_weights(layers(), "kaiming-uniform")[3].weight
    bound = math.sqrt(6 / fan_in)
    assert w.abs().max() <= bound and w.abs().max() > 0.98 * bound


def test_orthogonal_rows():
    w = init_weights(layers(), "orthogonal")[3].weight  # 300 x 400: orthonormal rows
    assert torch.allclose(w @ w.t(), torch.eye(300), atol=1e-4)


def test_sparse_zero_fraction_per_column():
    m = init_weights(layers(), "sparse:sparsity=0.5")
    w = m[3].weight  # 300 rows: each column keeps exactly 150 zeros
    assert torch.all((w == 0).sum(0) == 150)
    conv = m[0].weight.view(64, -1)  # conv viewed as (out, in*k*k)
    assert torch.all((conv == 0).sum(0) == 32)


def test_create_model_applies_init():
    m = create_model("resnet20", init="zeros")
    assert torch.count_nonzero(m.conv1.weight) == 0 and torch.count_nonzero(m.fc.weight) == 0


def test_bad_init_names_and_options():
    with pytest.raises(ConfigError, match="unknown init scheme 'kaiming'"):
        init_weights(layers(), "kaiming")
    with pytest.raises(ConfigError, match="init scheme 'normal' has no option 'sd'; it takes std"):
        init_weights(layers(), "normal:sd=1")
    with pytest.raises(ConfigError, match="init option std of 'normal:std=big' must be a number, got 'big'"):
        init_weights(layers(), "normal:std=big")
    # Resolving the config, the first step of building a run, catches a bad option before training starts.
    from normlab.config import make_config
    from normlab.train.resolve import resolve_config

    with pytest.raises(ConfigError, match="init scheme 'uniform' has no option 'std'; it takes a"):
        resolve_config(make_config({"init": "uniform:std=1"}))
