"""convert_norm, fuse_bn and freeze_bn on real models, checked against the unmodified model."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torchvision
from torch import nn

from normlab.errors import ConfigError
from normlab.nn import norm
from normlab.nn.surgery import FrozenBatchNorm, convert_norm, freeze_bn, fuse_bn, is_norm_layer


def _small_net(bn=nn.BatchNorm2d):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), bn(8), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), bn(8), nn.ReLU()),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3),
    ).double()


def _train_stats(model, steps=3):
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(8, 3, 4, 4, dtype=torch.float64) * 2 + 1)
    return model


def _norms(model):
    return [type(m).__name__ for m in model.modules() if is_norm_layer(m)]


def test_convert_to_group_norm_replaces_every_layer_and_warns_about_lost_stats():
    model = _train_stats(_small_net())
    with pytest.warns(UserWarning, match="discarding the running statistics") as record:
        convert_norm(model, "gn")
    assert len(record) == 3  # three BatchNorms had statistics
    assert _norms(model) == ["GroupNorm", "GroupNorm", "GroupNorm"]
    # 8, 8 and 6 channels: the default keeps 2 channels per group (never instance norm)
    assert [m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)] == [4, 4, 3]
    assert model(torch.randn(2, 3, 4, 4, dtype=torch.float64)).shape == (2, 3)
    assert all(p.dtype == torch.float64 for p in model.parameters())


def test_convert_fresh_model_does_not_warn_and_keeps_affine():
    model = _small_net()
    with torch.no_grad():
        model[1].weight.copy_(torch.arange(8.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert_norm(model, "ln")
    assert isinstance(model[1], nn.GroupNorm) and model[1].num_groups == 1
    torch.testing.assert_close(model[1].weight, torch.arange(8.0, dtype=torch.float64))


def test_native_to_reference_keeps_statistics_and_outputs():
    model = _train_stats(_small_net()).eval()
    x = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    before = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same kind: nothing is discarded
        convert_norm(model, "bn", impl="reference")
    assert all(isinstance(m, norm._BatchNorm) for m in model.modules() if is_norm_layer(m))
    assert not model.training
    torch.testing.assert_close(model(x), before)


def test_group_norm_to_batch_norm_needs_dims_or_example():
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.GroupNorm(2, 4))
    with pytest.raises(ConfigError, match="pass example=<an input batch>"):
        convert_norm(model, "bn")
    convert_norm(model, "bn", example=torch.randn(2, 2, 7))
    assert isinstance(model[1], nn.BatchNorm1d)
    convert_norm(model, "in", dims=1)
    assert isinstance(model[1], nn.InstanceNorm1d)


def test_convert_a_bare_norm_layer_returns_the_new_layer():
    new = convert_norm(nn.BatchNorm2d(4), "gn", num_groups=2)
    assert isinstance(new, nn.GroupNorm) and new.num_groups == 2


def test_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError, match=r"unknown norm .gm.*Valid choices: bn, brn, evob0, evos0, evos0:G, frn, gbn, gbn:V, gn, gn\+ws, gn:G, gn:G\+ws, in, in-affine, ln, ln-chw, ln2d, lrn, noisy-bn, none, rms, wn, ws"):
        convert_norm(_small_net(), "gm")


def test_fuse_bn_equals_unfused_resnet18_in_eval():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).double()
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 32, 32, dtype=torch.float64))
    # Non-trivial affine too.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    model.eval()
    fused = fuse_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(fused(x), model(x), rtol=1e-10, atol=1e-10)


class _PreAct(nn.Module):
    """BatchNorm *before* the conv: registration order bn, conv, bn, conv would fool a naive fuser."""

    def __init__(self):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3)
        self.bn2, self.conv2 = nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3)

    def forward(self, x):
        return self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))


def test_fuse_bn_follows_data_flow_not_registration_order():
    model = _train_stats(nn.Sequential(_PreAct()), steps=0).double().eval()
    block = model[0]
    for bn in (block.bn1, block.bn2):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    fused = fuse_bn(model)
    assert isinstance(fused[0].bn1, nn.BatchNorm2d)  # its input is not a conv output
    assert isinstance(fused[0].bn2, nn.Identity)  # the relu comes after it: foldable
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(fused(x), model(x))


def test_fuse_bn_float32_and_reference_layers_and_linear():
    model = _train_stats(_small_net(bn=norm.BatchNorm2d)).eval().float()
    fused = fuse_bn(model)
    assert _norms(fused) == []
    x = torch.randn(5, 3, 4, 4)
    torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)


def test_fuse_bn_refuses_training_mode():
    with pytest.raises(ConfigError, match=r"call model.eval\(\) first"):
        fuse_bn(_small_net())


def test_freeze_bn_survives_train_and_optimizer():
    model = _train_stats(_small_net())
    reference = copy.deepcopy(model).eval()
    freeze_bn(model)
    assert all(isinstance(m, FrozenBatchNorm) for m in model.modules() if is_norm_layer(m))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    frozen_before = {k: v.clone() for k, v in model.state_dict().items() if "bn" in k or "running" in k}
    model.train()
    x = torch.randn(8, 3, 4, 4, dtype=torch.float64)
    for _ in range(2):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    after = model.state_dict()
    for k, v in frozen_before.items():
        if "running" in k or "num_batches" in k:
            assert torch.equal(after[k], v), k
    # BN affine is a buffer now: never handed to the optimizer.
    for key in ("1.weight", "1.bias", "3.1.weight"):
        assert torch.equal(after[key], reference.state_dict()[key]), key
    # A frozen layer computes exactly the eval-mode BatchNorm.
    bn_ref, bn_frozen = reference[1], model[1]
    y = torch.randn(4, 8, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(bn_frozen(y), bn_ref(y))
    # state_dict keys are unchanged, so the frozen model still loads torch checkpoints.
    assert list(model.state_dict()) == list(reference.state_dict())
    model.load_state_dict(reference.state_dict())


def test_freeze_bn_checks_rank_and_needs_statistics():
    frozen = freeze_bn(nn.BatchNorm2d(3))
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D input\)"):
        frozen(torch.randn(2, 3, 4))
    with pytest.raises(ConfigError, match="track_running_stats=False"):
        freeze_bn(nn.BatchNorm2d(3, track_running_stats=False))


def test_fuse_bn_linear_bn1d_on_3d_input_is_never_silently_wrong():
    # BatchNorm1d on (N, C, L) normalizes dim 1, the Linear maps the last dim: with C == L the
    # shapes fit, but folding would mix the wrong axes (max error ~1 here).
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))
    m[1].running_mean.normal_()
    m[1].running_var.uniform_(0.5, 2.0)
    m.eval()
    x3, x2 = torch.randn(4, 8, 8), torch.randn(4, 8)
    with pytest.raises(ConfigError, match=r"^fuse_bn folded BatchNorm1d '1' into the Linear before it, "
                                          r"which is right only for 2-D \(N, features\) inputs; it got a 3-D"):
        fuse_bn(m)(x3)
    kept = fuse_bn(m, example=x3)  # observed 3-D input: left unfolded, exact
    assert isinstance(kept[1], nn.BatchNorm1d) and torch.equal(kept(x3), m(x3))
    folded = fuse_bn(m, example=x2)  # observed 2-D input: folded
    assert isinstance(folded[1], nn.Identity)
    torch.testing.assert_close(folded(x2), m(x2))
    torch.testing.assert_close(fuse_bn(m)(x2), m(x2))
