"""Issue 17 items 5-8: GN group counts, BN eps/momentum, seed 000's BatchNorm as an
implementation, and true LayerNorm over (C, H, W) next to GroupNorm(1, C)."""

import pytest
import torch
from torch import nn

import normlab
from normlab import cli
from normlab.errors import ConfigError
from normlab.models import create_model
from normlab.nn.layers import LayerNormCHW
from normlab.nn.tutorial import BatchNormTutorial


# ---- seed 000's code, verbatim but for the `d2l` import (the reference the layer is checked against)
def batch_norm(is_training, X, gamma, beta, moving_mean, moving_var, eps, momentum):
    if not is_training:
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        assert len(X.shape) in (2, 4)
        if len(X.shape) == 2:
            mean = X.mean(dim=0)
            var = ((X - mean) ** 2).mean(dim=0)
        else:
            mean = X.mean(dim=0, keepdim=True).mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
            var = ((X - mean) ** 2).mean(dim=0, keepdim=True).mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
        X_hat = (X - mean) / torch.sqrt(var + eps)
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var
    Y = gamma * X_hat + beta
    return Y, moving_mean, moving_var


class BatchNorm(nn.Module):
    def __init__(self, num_features, num_dims):
        super(BatchNorm, self).__init__()
        if num_dims == 2:
            shape = (1, num_features)
        else:
            shape = (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.zeros(shape)

    def forward(self, X):
        if self.moving_mean.device != X.device:
            self.moving_mean = self.moving_mean.to(X.device)
            self.moving_var = self.moving_var.to(X.device)
        Y, self.moving_mean, self.moving_var = batch_norm(self.training,
            X, self.gamma, self.beta, self.moving_mean,
            self.moving_var, eps=1e-5, momentum=0.9)
        return Y
# ---- end of seed 000's code


@pytest.mark.parametrize("num_dims,shape", [(4, (8, 3, 5, 5)), (2, (8, 3))])
def test_tutorial_batchnorm_equals_seed_000(num_dims, shape):
    torch.manual_seed(0)
    seed, ours = BatchNorm(3, num_dims), BatchNormTutorial(3, num_dims)
    gamma, beta = torch.rand(seed.gamma.shape) + 0.5, torch.randn(seed.beta.shape)
    with torch.no_grad():
        for m in (seed, ours):
            m.gamma.copy_(gamma)
            m.beta.copy_(beta)
    for step in range(4):
        x = torch.randn(*shape) * (step + 1) + step
        y_seed, y_ours = seed(x), ours(x)
        assert torch.allclose(y_seed, y_ours, atol=1e-6)
        (y_seed ** 3).sum().backward()
        (y_ours ** 3).sum().backward()
        assert torch.allclose(seed.gamma.grad, ours.gamma.grad, atol=1e-4)
    assert torch.allclose(seed.moving_mean.detach(), ours.moving_mean) and torch.allclose(
        seed.moving_var.detach(), ours.moving_var)
    seed.eval(), ours.eval()
    x = torch.randn(*shape)
    assert torch.allclose(seed(x), ours(x), atol=1e-6)


def test_tutorial_batchnorm_start_values_and_api():
    bn = BatchNormTutorial(6, num_dims=4)
    assert bn.gamma.shape == (1, 6, 1, 1) and torch.equal(bn.moving_var, torch.zeros(1, 6, 1, 1))
    assert BatchNormTutorial(120, num_dims=2).beta.shape == (1, 120)
    with pytest.raises(ValueError, match="num_dims must be 2 .* or 4"):
        BatchNormTutorial(3, 3)


def test_norm_impl_tutorial_builds_seed_000s_lenet():
    """--norm-impl tutorial in lenet-bn is seed 000's LeNet with its BatchNorm layers (same
    parameter count: the seed's net has 44,878 parameters like torch's BN)."""
    m = create_model("lenet-bn", norm_impl="tutorial")
    layers = [(b.num_features, b.num_dims) for b in m.modules() if isinstance(b, BatchNormTutorial)]
    assert layers == [(6, 4), (16, 4), (120, 2), (84, 2)]
    assert all(b.momentum == 0.9 for b in m.modules() if isinstance(b, BatchNormTutorial))
    assert sum(p.numel() for p in m.parameters()) == 44_878
    assert create_model("lenet-bn", norm_impl="tutorial", bn_momentum=0.2).features[1].momentum == pytest.approx(0.8)
    with pytest.raises(ConfigError, match="'tutorial' is seed 000's from-scratch BatchNorm; it has no 'gn'"):
        create_model("lenet-bn", norm="gn", norm_impl="tutorial")


def test_bn_eps_and_momentum_reach_every_batchnorm(tmp_path):
    m = create_model("resnet20", bn_eps=1e-3, bn_momentum=0.01)
    bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    assert len(bns) == 19 and all((b.eps, b.momentum) == (1e-3, 0.01) for b in bns)
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "synthetic", "--model", "lenet-bn", "--epochs", "1", "--no-progress",
                     "--bn-eps", "0.001", "--bn-momentum", "0.05", "--out", str(out)]) == 0
    run = normlab.load(out)
    bns = [b for b in run.model.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 4 and all((b.eps, b.momentum) == (1e-3, 0.05) for b in bns)
    assert cli.main(["train", "--model", "lenet-bn", "--bn-momentum", "1.5", "--epochs", "1"]) == 2


def test_gn_group_count_option():
    m = create_model("resnet20", norm="gn:4")
    assert {(g.num_groups, g.num_channels) for g in m.modules() if isinstance(g, nn.GroupNorm)} == \
        {(4, 16), (4, 32), (4, 64)}
    assert cli.main(["train", "--model", "lenet-bn", "--norm", "gn:x", "--epochs", "1"]) == 2


def test_ln_chw_is_torch_layernorm_over_chw_and_ln_is_groupnorm_1():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 5, 5)
    chw = LayerNormCHW(6)
    chw(x)  # the first input sizes it
    ref = nn.LayerNorm([6, 5, 5])
    with torch.no_grad():
        for m in (chw, ref):
            m.weight.copy_(torch.linspace(0.5, 2, 150).view(6, 5, 5))
            m.bias.copy_(torch.linspace(-1, 1, 150).view(6, 5, 5))
    assert torch.allclose(chw(x), ref(x), atol=1e-6)
    assert chw.weight.shape == (6, 5, 5)  # element-wise affine: 150 scales, 150 shifts
    # `ln` is the same statistics with a per-channel affine: equal to LayerNorm([C,H,W]) at identity affine.
    ln = create_model("lenet-bn", norm="ln").features[1]
    assert isinstance(ln, nn.GroupNorm) and ln.num_groups == 1 and ln.weight.shape == (6,)
    assert torch.allclose(ln(x), nn.LayerNorm([6, 5, 5], elementwise_affine=False)(x), atol=1e-5)
    m = create_model("lenet-bn", norm="ln-chw")
    assert m.features[1].weight.shape == (6, 24, 24) and m.features[5].weight.shape == (16, 8, 8)
    assert sum(p.numel() for p in m.parameters()) == 44_878 - 2 * (6 + 16) + 2 * (6 * 24 * 24 + 16 * 8 * 8)
    with pytest.raises(ValueError, match="built for inputs of shape .6, 24, 24. .its first input., got .6, 28, 28."):
        m.features[1](torch.randn(1, 6, 28, 28))
    reference = create_model("lenet-bn", norm="ln-chw", norm_impl="reference")
    reference.load_state_dict(m.state_dict())
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(m(x), reference(x), atol=1e-5)
