"""fuse_bn on every model of the zoo, with torch's BatchNorm and with normlab's reference one.

The expectation comes from one forward pass, not from fuse_bn's own tracing: a BatchNorm
"directly follows" a conv/linear when the tensor it receives is the very tensor that layer
returned (each called once). Every such BatchNorm must be gone after fuse_bn, every other one
must stay (pre-activation blocks normalize the sum of a residual addition or a concatenation,
and digitnet's follow a max-pool: no single conv/linear computes their input, so there is
nothing to fold them into), and the fused model's outputs must equal the model's.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import normlab
from normlab.models.registry import MODELS, get_spec
from normlab.nn import norm as ref
from normlab.nn.surgery import convert_norm, fuse_bn

_BN = (nn.modules.batchnorm._BatchNorm, ref._BatchNorm)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# The smallest input each model takes (its pooling needs a few pixels); 16 px for the others.
_SIZE = {"alexnet": 64, "vgg11": 32, "vgg16": 32, "densenet-d2l": 32, "densenet121": 32, "nin": 96,
         "resnet14-tutorial-avgpool8": 32}
# BatchNorms that no conv/linear feeds alone, by model (checked against the forward pass too).
_KEPT = {"densenet-d2l": 20, "densenet-bc100": 51, "densenet121": 62, "digitnet": 3, "maxout-mlp": 2,
         "preact-resnet18": 9, "preact-resnet20": 10, "preact-resnet32": 16, "preact-resnet44": 22,
         "preact-resnet56": 28, "preact-resnet110": 55, "gru-rows": 2, "lstm-rows": 3,
         "resnet-simple-seed003": 2, "resnet-simple-preact": 2, "resnet-simple-preact-seed003": 2}


def _direct_followers(model: nn.Module, x: torch.Tensor) -> set:
    """BatchNorms whose input is exactly the output of a conv/linear, used by nothing else
    (its autograd node has one consumer: a pre-activation stem conv also feeds the shortcut),
    in one forward pass; each module called once."""
    outputs, calls, fed = {}, {}, []

    def count(m, args):
        calls[m] = calls.get(m, 0) + 1

    def after(m, args, out):
        outputs[id(out)] = (m, out)

    def before(m, args):
        hit = outputs.get(id(args[0]))
        if hit is not None and hit[1] is args[0]:
            fed.append((hit[0], m, args[0].grad_fn))

    hooks = []
    for m in model.modules():
        if isinstance(m, _LAYERS + _BN):
            hooks.append(m.register_forward_pre_hook(count))
            hooks.append(m.register_forward_hook(after) if isinstance(m, _LAYERS) else m.register_forward_pre_hook(before))
    with torch.enable_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    users, stack, seen = {}, [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for nxt, _ in node.next_functions:
            users[nxt] = users.get(nxt, 0) + 1
            stack.append(nxt)
    return {bn for layer, bn, node in fed if calls[layer] == 1 and calls[bn] == 1 and users.get(node) == 1}


def _trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """Statistics and affine as after training, so that folding changes the weights visibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BN):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
    return model.eval()


def _check(model: nn.Module, x: torch.Tensor, name: str) -> None:
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    follow = _direct_followers(model, x)
    assert len(bns) - len(follow) == _KEPT.get(name, 0)
    fused = fuse_bn(model)
    left = [m for m in fused.modules() if isinstance(m, _BN)]
    assert len(left) == len(bns) - len(follow)
    with torch.no_grad():
        want, got = model(x), fused(x)
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) <= 1e-5 * max(scale, 1.0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fuse_bn_folds_every_batchnorm_that_follows_a_conv_or_linear(name):
    spec = get_spec(name)
    size = _SIZE.get(name, 16)
    kw = {"num_classes": spec.num_classes} if spec.num_classes else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # models whose default is no norm announce nothing; others may
        torch.manual_seed(0)
        model = _trained_looking(normlab.create_model(name, norm="bn", input_size=(size, size), **kw))
    x = torch.randn(2, spec.default_input[0], size, size, generator=torch.Generator().manual_seed(1))
    _check(model, x, name)
    # the same model with normlab's own BatchNorm (statistics carried over)
    convert_norm(model, "bn", impl="reference")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    _check(model, x, name)


def test_docs_example_torchvision_resnet18_with_reference_batchnorm_folds_all_20():
    # docs/norms.md: torchvision resnet18 -> convert_norm(impl="reference") -> fuse_bn
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    convert_norm(model, "bn", impl="reference")
    model = _trained_looking(model)
    assert sum(isinstance(m, ref._BatchNorm) for m in model.modules()) == 20
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    _check(model, x, "resnet18")


class _Untraceable(nn.Module):
    """Python control flow on the input (fx cannot trace it) around conv -> bn pairs that
    nn.Sequential does not order, and a conv output that also feeds a shortcut."""

    def __init__(self, bn=ref.BatchNorm2d):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), bn(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), bn(4)

    def forward(self, x):
        if x.sum() > -1e9:  # data-dependent branch
            x = torch.relu(self.bn1(self.conv1(x)))
        y = self.conv2(x)
        return self.bn2(y) + y  # y feeds the addition as well: bn2 cannot be folded


def test_fuse_bn_follows_one_forward_pass_when_fx_cannot_trace():
    torch.manual_seed(0)
    model = _trained_looking(_Untraceable())
    x = torch.randn(2, 3, 8, 8)
    without = fuse_bn(model)  # no example: only nn.Sequential orders are known, none here
    assert isinstance(without.bn1, ref.BatchNorm2d) and isinstance(without.bn2, ref.BatchNorm2d)
    fused = fuse_bn(model, example=x)
    assert isinstance(fused.bn1, nn.Identity) and isinstance(fused.bn2, ref.BatchNorm2d)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)
