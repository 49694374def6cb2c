"""The newer norm layers (issue 31) against references in float64: forward, backward and state.

References: torch.nn.RMSNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d, weight_norm and
LocalResponseNorm where torch has the layer; timm's LayerNorm2d, FilterResponseNormTlu2d,
EvoNorm2dB0, EvoNorm2dS0 and StdConv2d (a test dependency only); the papers' equations written
out here for Batch Renormalization and Ghost BatchNorm. timm computes its statistics in float32
even for float64 input (`x.float().var(...)`), so against timm the tolerance is 1e-5, its
rounding summed over a parameter's 120 positions; a wrong formula is off by 1e-2 or more.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as tnn

from normlab.nn import newer_norms as nn2

timm_layers = pytest.importorskip("timm.layers", reason="timm is the reference of four layers (pip install timm)")

torch.set_default_dtype(torch.float32)


def randomized(m: tnn.Module, seed: int = 0) -> tnn.Module:
    """float64, with every parameter and buffer moved off its init so nothing hides behind 1s and 0s."""
    m = m.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) + 0.5)
        for name, b in m.named_buffers():
            if b.is_floating_point():
                b.copy_(torch.rand(b.shape, generator=g, dtype=torch.float64) + 0.5)
    return m


def copy_state(src: tnn.Module, dst: tnn.Module, names: dict) -> None:
    with torch.no_grad():
        for ours, theirs in names.items():
            getattr(dst, theirs).copy_(getattr(src, ours))


TIMM = 1e-5  # timm's float32 statistics, summed over 120 positions in a parameter's gradient


def check_same(ours: tnn.Module, ref: tnn.Module, x: torch.Tensor, atol: float = 1e-10) -> None:
    """The same output and the same gradients of input and parameters (by name pairs: `weight`...)."""
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), ref(xb)
    torch.testing.assert_close(ya, yb, rtol=0, atol=atol)
    w = torch.randn_like(ya)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=atol)
    for name, p in ours.named_parameters():
        q = dict(ref.named_parameters()).get(name)
        if q is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=atol, msg=name)


X = torch.randn(6, 8, 5, 4, dtype=torch.float64) * 2 + 0.7


def test_rmsnorm2d_is_torch_rmsnorm_over_channels():
    ours = randomized(nn2.RMSNorm2d(8, eps=1e-6))

    class Ref(tnn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tnn.RMSNorm(8, eps=1e-6).double()

        def forward(self, x):
            return self.inner(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    ref = Ref()
    copy_state(ours, ref.inner, {"weight": "weight"})
    check_same(ours, ref, X)
    torch.testing.assert_close(ours.weight.grad, ref.inner.weight.grad, rtol=0, atol=1e-10)


def test_layernorm2d_is_timms():
    ours = randomized(nn2.LayerNorm2d(8, eps=1e-6))
    ref = timm_layers.LayerNorm2d(8, eps=1e-6).double()
    copy_state(ours, ref, {"weight": "weight", "bias": "bias"})
    check_same(ours, ref, X)


def test_frn_tlu_is_timms():
    ours = randomized(nn2.FilterResponseNormTLU(8, eps=1e-6))
    ref = timm_layers.FilterResponseNormTlu2d(8, eps=1e-6).double()
    copy_state(ours, ref, {"weight": "weight", "bias": "bias", "tau": "tau"})
    with torch.no_grad():
        ours.tau.sub_(1.0), ref.tau.sub_(1.0)  # some outputs on each side of the threshold
    check_same(ours, ref, X, atol=TIMM)
    # batch-independent: one sample's output does not depend on the others in its batch
    torch.testing.assert_close(ours(X[:1]), ours(X)[:1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("train", [True, False])
def test_evonorm_b0_is_timms_with_its_running_variance(train):
    ours = randomized(nn2.EvoNormB0(8, eps=1e-3, momentum=0.1)).train(train)
    ref = timm_layers.EvoNorm2dB0(8, eps=1e-3, momentum=0.1).double().train(train)
    copy_state(ours, ref, {"weight": "weight", "bias": "bias", "v": "v", "running_var": "running_var"})
    check_same(ours, ref, X, atol=TIMM)
    torch.testing.assert_close(ours.running_var, ref.running_var, rtol=0, atol=TIMM)


def test_evonorm_s0_is_timms():
    ours = randomized(nn2.EvoNormS0(8, groups=4, eps=1e-5))
    ref = timm_layers.EvoNorm2dS0(8, groups=4, eps=1e-5).double()
    copy_state(ours, ref, {"weight": "weight", "bias": "bias", "v": "v"})
    check_same(ours, ref, X, atol=TIMM)
    torch.testing.assert_close(ours(X[:2]), ours(X)[:2], rtol=0, atol=1e-12)  # batch-independent


def test_std_conv_is_timms_and_keeps_the_parameters():
    conv = tnn.Conv2d(8, 5, 3, padding=1, bias=True).double()
    ours = nn2.StdConv2d.from_conv(conv, ws_eps=1e-6)
    assert ours.weight is conv.weight and ours.bias is conv.bias
    ref = timm_layers.StdConv2d(8, 5, 3, padding=1, bias=True, eps=1e-6).double()
    copy_state(ours, ref, {"weight": "weight", "bias": "bias"})
    check_same(ours, ref, X)
    w = ours.standardized_weight().reshape(5, -1)
    torch.testing.assert_close(w.mean(1), torch.zeros(5, dtype=torch.float64), rtol=0, atol=1e-12)
    var = conv.weight.reshape(5, -1).var(1, unbiased=False)
    torch.testing.assert_close(w.var(1, unbiased=False), var / (var + 1e-6), rtol=0, atol=1e-12)


def test_standardize_convs_swaps_every_conv_and_nothing_else():
    from normlab import create_model

    m = create_model("lenet-bn")
    convs = [n for n, c in m.named_modules() if type(c) is tnn.Conv2d]
    assert nn2.standardize_convs(m) == len(convs) == 2
    assert all(isinstance(dict(m.named_modules())[n], nn2.StdConv2d) for n in convs)
    m(torch.randn(2, 1, 28, 28)).sum().backward()


def test_weight_norm_is_torchs_parametrization():
    from normlab import create_model

    m = create_model("mlp", depth=2, width=16, input_size=(4, 4))
    before = m(torch.ones(3, 1, 4, 4))
    assert nn2.weight_normalize(m) == 3
    lin = m.classifier
    assert hasattr(lin.parametrizations.weight, "original0")  # g, and original1 is v
    g, v = lin.parametrizations.weight.original0, lin.parametrizations.weight.original1
    torch.testing.assert_close(lin.weight, g * v / v.norm(dim=1, keepdim=True))
    torch.testing.assert_close(m(torch.ones(3, 1, 4, 4)), before)  # the same function at the start


def test_local_response_norm_is_alexnets_equation():
    lrn = nn2.local_response_norm(8)
    x = X.abs()
    y = lrn(x)
    # b_c = a_c / (k + alpha * sum_{c'=c-2}^{c+2} a_c'^2)^beta, Krizhevsky et al. 2012 sec. 3.3
    want = torch.empty_like(x)
    for c in range(8):
        lo, hi = max(0, c - 2), min(7, c + 2)
        want[:, c] = x[:, c] / (2.0 + 1e-4 * x[:, lo:hi + 1].pow(2).sum(1)).pow(0.75)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- Batch Renormalization
def brn_reference(x, mu, sigma, r_max, d_max, eps, momentum):
    """Ioffe 2017, Algorithm 1, per channel, written out."""
    dims = (0, 2, 3)
    mu_b = x.mean(dims)
    sigma_b = torch.sqrt(x.var(dims, unbiased=False) + eps)
    r = (sigma_b / sigma).clamp(1 / r_max, r_max).detach()
    d = ((mu_b - mu) / sigma).clamp(-d_max, d_max).detach()
    shape = (1, -1, 1, 1)
    x_hat = (x - mu_b.view(shape)) / sigma_b.view(shape) * r.view(shape) + d.view(shape)
    return x_hat, mu + momentum * (mu_b.detach() - mu), sigma + momentum * (sigma_b.detach() - sigma)


def test_batch_renorm_follows_the_papers_algorithm():
    ours = nn2.BatchRenorm(8, eps=1e-5, momentum=0.05, r_max=3.0, d_max=5.0, warmup=4).double()
    mu, sigma = torch.full((8,), 0.3, dtype=torch.float64), torch.full((8,), 0.5, dtype=torch.float64)
    ours.running_mean.copy_(mu), ours.running_std.copy_(sigma)
    for step in range(6):
        ours.num_batches_tracked.fill_(step)
        r_max, d_max = ours.limits()
        assert (r_max, d_max) == pytest.approx((1 + 2 * min(1, step / 4), 5 * min(1, step / 4)))
        x = (torch.randn(6, 8, 3, 3, dtype=torch.float64) * 2 + 1).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        want, mu, sigma = brn_reference(x_ref, mu, sigma, r_max, d_max, 1e-5, 0.05)
        want = want * ours.weight.view(1, -1, 1, 1) + ours.bias.view(1, -1, 1, 1)
        got = ours(x)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
        w = torch.randn_like(got)
        (got * w).sum().backward()
        (want * w).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-10)
        torch.testing.assert_close(ours.running_mean, mu, rtol=0, atol=1e-12)
        torch.testing.assert_close(ours.running_std, sigma, rtol=0, atol=1e-12)
    ours.eval()
    torch.testing.assert_close(ours(X), ((X - mu.view(1, -1, 1, 1)) / sigma.view(1, -1, 1, 1)) * ours.weight.view(
        1, -1, 1, 1) + ours.bias.view(1, -1, 1, 1), rtol=0, atol=1e-10)


def test_batch_renorm_at_its_first_step_is_batch_norm():
    ours = nn2.BatchRenorm(8).double()  # r_max = 1, d_max = 0 before the ramp: r = 1, d = 0
    ref = tnn.BatchNorm2d(8, eps=1e-5).double()
    check_same(ours, ref, X)


# ---------------------------------------------------------------- Ghost BatchNorm
@pytest.mark.parametrize("n, v", [(32, 8), (30, 8), (8, 16)])
def test_ghost_batch_norm_is_batch_norm_over_each_virtual_batch_in_turn(n, v):
    x = torch.randn(n, 8, 3, 3, dtype=torch.float64) + 2
    ours = randomized(nn2.GhostBatchNorm(8, virtual_batch=v, momentum=0.1))
    ref = randomized(tnn.BatchNorm2d(8, momentum=0.1))

    class Chunked(tnn.Module):
        def __init__(self):
            super().__init__()
            self.bn = ref

        def forward(self, x):
            return torch.cat([self.bn(c) for c in x.split(v)])

    chunked = Chunked()
    check_same(ours, chunked, x)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=0, atol=1e-12, msg=name)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- by name, in the zoo
NEW_NAMES = ("rms", "ln2d", "frn", "evob0", "evos0", "brn", "gbn", "gbn:4", "lrn", "ws", "gn+ws", "wn")


def test_every_new_name_is_a_train_option_and_a_factory_kind():
    from normlab.cli import build_parser
    from normlab.nn.factory import NORM_KINDS

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    help_text = " ".join(next(a.help for a in sub._actions if a.dest == "norm").split())
    for name in ("rms", "ln2d", "frn", "evob0", "evos0", "brn", "gbn", "lrn", "ws", "gn[:G]+ws", "wn"):
        assert name in help_text
    assert set(n.split(":")[0] for n in NEW_NAMES) <= set(NORM_KINDS)


@pytest.mark.parametrize("name", NEW_NAMES)
@pytest.mark.parametrize("model, shape", [("digitnet", (4, 1, 28, 28)), ("resnet20", (4, 3, 32, 32))])
def test_each_new_norm_trains_in_conv_nets_and_folds_for_inference(name, model, shape):
    from normlab import create_model
    from normlab.nn.surgery import fuse_bn

    m = create_model(model, norm=name)
    kinds = {type(x).__name__ for x in m.modules()}
    expect = {"rms": "RMSNorm2d", "ln2d": "LayerNorm2d", "frn": "FilterResponseNormTLU", "evob0": "EvoNormB0",
              "evos0": "EvoNormS0", "brn": "BatchRenorm", "gbn": "GhostBatchNorm", "gbn:4": "GhostBatchNorm",
              "lrn": "LocalResponseNorm", "ws": "StdConv2d", "gn+ws": "StdConv2d", "wn": "ParametrizedConv2d"}[name]
    assert expect in kinds
    assert not kinds & {"BatchNorm2d"}  # the norm replaced every one of the model's own
    x = torch.randn(shape)
    m(x).sum().backward()
    m.eval()
    with torch.inference_mode():  # as predict runs it
        torch.testing.assert_close(fuse_bn(m, example=x)(x), m(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["frn", "evob0", "evos0", "lrn"])
def test_spatial_only_norms_refuse_linear_layers_in_one_line(name):
    from normlab import ConfigError, create_model

    with pytest.raises(ConfigError, match=f"norm {name}: normalizes over spatial positions, so it has no form "
                                          f"for the \\(N, C\\) features after a Linear layer"):
        create_model("mlp", norm=name)


def test_ws_needs_convolutions_and_sync_bn_refuses_layers_it_cannot_sync():
    from normlab import ConfigError, create_model
    from normlab.train.distributed import Dist, wrap_model

    with pytest.raises(ConfigError, match="norm ws: weight standardization acts on 2-D convolutions"):
        create_model("mlp", norm="ws")
    for name in ("gbn", "brn", "evob0"):
        with pytest.raises(ConfigError, match="sync_bn: synchronizes BatchNorm's statistics only"):
            wrap_model(create_model("digitnet", norm=name), Dist(), torch.device("cpu"), True)
