"""normlab.nn.norm / functional against torch.nn in float64: outputs, gradients, buffers, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from normlab.nn import functional as F
from normlab.nn import norm

SETTINGS = settings(max_examples=30, deadline=None)
TOL = {"rtol": 1e-9, "atol": 1e-10}


def _pair(ours_cls, theirs_cls, *args, **kw):
    torch.manual_seed(0)
    ours = ours_cls(*args, dtype=torch.float64, **kw)
    theirs = theirs_cls(*args, dtype=torch.float64, **kw)
    # Non-trivial affine parameters, identical in both.
    with torch.no_grad():
        for (_, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
            p.copy_(torch.randn_like(p))
            q.copy_(p)
    return ours, theirs


def _assert_same_run(ours, theirs, shapes, channels_last=False, train_steps=3):
    """Several train steps, then eval; compare outputs, all gradients and all buffers."""
    gen = torch.Generator().manual_seed(1)
    for mode, steps in (("train", train_steps), ("eval", 1)):
        ours.train(mode == "train")
        theirs.train(mode == "train")
        for _ in range(steps):
            x = torch.randn(shapes, dtype=torch.float64, generator=gen) * 3 + 1
            if channels_last:
                x = x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
            xa = x.clone().requires_grad_()
            xb = x.clone().requires_grad_()
            ya, yb = ours(xa), theirs(xb)
            torch.testing.assert_close(ya, yb, **TOL)
            if channels_last:
                assert ya.is_contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d) \
                    == yb.is_contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
            g = torch.randn(ya.shape, dtype=torch.float64, generator=gen)
            ours.zero_grad()
            theirs.zero_grad()
            (ya * g).sum().backward()
            (yb * g).sum().backward()
            torch.testing.assert_close(xa.grad, xb.grad, **TOL)
            for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
                torch.testing.assert_close(p.grad, q.grad, **TOL, msg=name)
            for (name, a), (_, b) in zip(ours.named_buffers(), theirs.named_buffers(), strict=True):
                torch.testing.assert_close(a, b, **TOL, msg=name)
    assert list(ours.state_dict()) == list(theirs.state_dict())


momenta = st.sampled_from([0.1, 0.3, None])
eps_values = st.sampled_from([1e-5, 1e-3, 0.1])


@SETTINGS
@given(
    dims=st.sampled_from([0, 1, 2, 3]),
    n=st.integers(2, 4),
    c=st.integers(1, 5),
    size=st.integers(1, 4),
    eps=eps_values,
    momentum=momenta,
    affine=st.booleans(),
    track=st.booleans(),
    bias=st.booleans(),
)
def test_batch_norm_matches_torch(dims, n, c, size, eps, momentum, affine, track, bias):
    cls = {0: "BatchNorm1d", 1: "BatchNorm1d", 2: "BatchNorm2d", 3: "BatchNorm3d"}[dims]
    ours, theirs = _pair(getattr(norm, cls), getattr(nn, cls), c, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track, bias=bias)
    _assert_same_run(ours, theirs, (n, c) + (size,) * dims)


@SETTINGS
@given(
    dims=st.sampled_from([1, 2, 3]),
    n=st.integers(1, 3),
    c=st.integers(1, 4),
    size=st.integers(2, 4),
    momentum=momenta,
    affine=st.booleans(),
    track=st.booleans(),
    unbatched=st.booleans(),
)
def test_instance_norm_matches_torch(dims, n, c, size, momentum, affine, track, unbatched):
    cls = f"InstanceNorm{dims}d"
    ours, theirs = _pair(getattr(norm, cls), getattr(nn, cls), c, momentum=momentum, affine=affine,
                         track_running_stats=track)
    shape = ((c,) if unbatched else (n, c)) + (size,) * dims
    _assert_same_run(ours, theirs, shape)


@SETTINGS
@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    normalized=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    eps=eps_values,
    affine=st.booleans(),
    bias=st.booleans(),
)
def test_layer_norm_matches_torch(lead, normalized, eps, affine, bias):
    shape = normalized[0] if len(normalized) == 1 else normalized
    ours, theirs = _pair(norm.LayerNorm, nn.LayerNorm, shape, eps=eps, elementwise_affine=affine, bias=bias)
    _assert_same_run(ours, theirs, tuple(lead) + tuple(normalized))


@SETTINGS
@given(
    dims=st.sampled_from([0, 1, 2, 3]),
    n=st.integers(1, 3),
    groups=st.integers(1, 4),
    per_group=st.integers(1, 3),
    size=st.integers(2, 3),
    eps=eps_values,
    affine=st.booleans(),
    bias=st.booleans(),
)
def test_group_norm_matches_torch(dims, n, groups, per_group, size, eps, affine, bias):
    c = groups * per_group
    if dims == 0 and per_group == 1:
        per_group, c = 2, groups * 2  # one value per group is rejected in training; tested below
    ours, theirs = _pair(norm.GroupNorm, nn.GroupNorm, groups, c, eps=eps, affine=affine, bias=bias)
    _assert_same_run(ours, theirs, (n, c) + (size,) * dims)


@pytest.mark.parametrize(
    "name,args",
    [("BatchNorm2d", (3,)), ("BatchNorm3d", (3,)), ("InstanceNorm2d", (3,)), ("InstanceNorm3d", (3,)),
     ("GroupNorm", (3, 6)), ("GroupNorm", (1, 16)), ("GroupNorm", (2, 32))],
)
def test_channels_last_input_matches_torch(name, args):
    kw = {"affine": True, "track_running_stats": True} if name.startswith("Instance") else {}
    ours, theirs = _pair(getattr(norm, name), getattr(nn, name), *args, **kw)
    c = args[-1]
    shape = (2, c, 3, 4) if "3d" not in name else (2, c, 2, 3, 4)
    _assert_same_run(ours, theirs, shape, channels_last=True)


def test_cumulative_average_momentum_none_is_plain_mean_of_batches():
    # Independent of torch: with momentum=None the running mean is the average of batch means.
    bn = norm.BatchNorm1d(2, momentum=None, dtype=torch.float64)
    batches = [torch.randn(5, 2, dtype=torch.float64) for _ in range(4)]
    for x in batches:
        bn(x)
    torch.testing.assert_close(bn.running_mean, torch.stack([x.mean(0) for x in batches]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([x.var(0) for x in batches]).mean(0))
    assert int(bn.num_batches_tracked) == 4


def test_hand_computed_batch_norm_matches_tutorial_formula():
    x = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    bn = norm.BatchNorm1d(1, eps=0.0, dtype=torch.float64)
    y = bn(x)
    torch.testing.assert_close(y, torch.tensor([[-1.0], [1.0]], dtype=torch.float64))
    # running_var holds the unbiased variance 2, moved 10% from 1; running_mean 10% from 0 to 2.
    torch.testing.assert_close(bn.running_var, torch.tensor([1.1], dtype=torch.float64))
    torch.testing.assert_close(bn.running_mean, torch.tensor([0.2], dtype=torch.float64))


@pytest.mark.parametrize("kind", ["BatchNorm2d", "InstanceNorm2d", "GroupNorm", "LayerNorm"])
def test_zero_size_batch(kind):
    args = {"BatchNorm2d": (3,), "InstanceNorm2d": (3,), "GroupNorm": (3, 3), "LayerNorm": ((3, 2, 2),)}[kind]
    kw = {"track_running_stats": True} if kind == "InstanceNorm2d" else {}
    ours, theirs = _pair(getattr(norm, kind), getattr(nn, kind), *args, **kw)
    x = torch.randn(0, 3, 2, 2, dtype=torch.float64)
    ya, yb = ours(x.clone().requires_grad_()), theirs(x.clone().requires_grad_())
    assert ya.shape == yb.shape == x.shape
    ya.sum().backward()
    yb.sum().backward()
    for (_, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    # InstanceNorm's running stats become NaN here in torch (a mean over zero samples); same here.
    for (_, a), (_, b) in zip(ours.named_buffers(), theirs.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, equal_nan=True)


@pytest.mark.parametrize(
    "name,args,kw",
    [("BatchNorm2d", (3,), {}), ("BatchNorm1d", (3,), {"affine": False, "momentum": None}),
     ("InstanceNorm2d", (3,), {"affine": True, "track_running_stats": True}),
     ("InstanceNorm1d", (3,), {}), ("LayerNorm", ((3, 4),), {}), ("GroupNorm", (2, 4), {}),
     ("LayerNorm", (4,), {"bias": False}), ("BatchNorm3d", (2,), {"track_running_stats": False})],
)
def test_state_dict_loads_both_ways(name, args, kw):
    ours, theirs = _pair(getattr(norm, name), getattr(nn, name), *args, **kw)
    # Give torch's module distinct trained statistics and parameters.
    with torch.no_grad():
        for t in list(theirs.parameters()) + [b for b in theirs.buffers() if b.is_floating_point()]:
            t.copy_(torch.rand_like(t) + 0.5)
    for b in theirs.buffers():
        if not b.is_floating_point():
            b.fill_(7)
    ours.load_state_dict(theirs.state_dict())
    for (ka, a), (kb, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
        assert ka == kb
        assert torch.equal(a, b)
    fresh = getattr(nn, name)(*args, dtype=torch.float64, **kw)
    fresh.load_state_dict(ours.state_dict())
    for a, b in zip(fresh.state_dict().values(), ours.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_old_checkpoint_without_num_batches_tracked_loads_as_zero():
    theirs = nn.BatchNorm2d(3)
    sd = theirs.state_dict()
    del sd["num_batches_tracked"]
    sd._metadata[""]["version"] = 1
    ours = norm.BatchNorm2d(3)
    ours.num_batches_tracked.fill_(5)
    ours.load_state_dict(sd)
    assert int(ours.num_batches_tracked) == 0


def _error_of(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - the type is what is compared
            return type(e), str(e)
    return None


def _x(*shape):
    return torch.randn(*shape)


ERROR_CASES = [
    ("BatchNorm2d", (3,), {}, (1, 3, 1, 1)),
    ("BatchNorm1d", (3,), {}, (1, 3)),
    ("BatchNorm2d", (3,), {}, (2, 3, 1)),
    ("BatchNorm1d", (3,), {}, (2, 3, 1, 1)),
    ("BatchNorm3d", (3,), {}, (2, 3, 1, 1)),
    ("BatchNorm2d", (3,), {}, (2, 4, 2, 2)),
    ("BatchNorm2d", (3,), {"track_running_stats": False}, (2, 4, 2, 2)),
    ("GroupNorm", (2, 4), {}, (2, 6, 3)),
    ("GroupNorm", (4, 4), {}, (1, 4, 1)),
    ("GroupNorm", (4, 4), {}, (1, 4)),
    ("GroupNorm", (1, 3), {}, (3,)),
    ("GroupNorm", (4, 4), {"affine": False}, (2, 6, 3)),
    ("LayerNorm", (4,), {}, (2, 3)),
    ("LayerNorm", ([3, 4],), {}, (2, 4, 4)),
    ("InstanceNorm2d", (3,), {}, (2, 3, 4, 4, 4)),
    ("InstanceNorm1d", (3,), {}, (3, 1)),
    ("InstanceNorm2d", (3,), {}, (2, 3, 1, 1)),
    ("InstanceNorm1d", (3,), {"affine": True}, (2, 4, 5)),
    ("InstanceNorm2d", (3,), {"affine": True}, (4, 2, 2)),
    # torch's quirk: an empty batch with affine instance norm fails while repeating the weight.
    ("InstanceNorm2d", (3,), {"affine": True}, (0, 3, 2, 2)),
]


@pytest.mark.parametrize("name,args,kw,shape", ERROR_CASES)
def test_bad_input_raises_same_error_as_torch(name, args, kw, shape):
    x = _x(*shape)
    ours = _error_of(lambda: getattr(norm, name)(*args, **kw)(x))
    theirs = _error_of(lambda: getattr(nn, name)(*args, **kw)(x))
    assert theirs is not None
    assert ours == theirs


@pytest.mark.parametrize(
    "name,args",
    [("GroupNorm", (2, 3)), ("Dropout", (1.5,)), ("Dropout", (-0.1,))],
)
def test_bad_constructor_arguments_raise_same_error_as_torch(name, args):
    assert _error_of(lambda: getattr(norm, name)(*args)) == _error_of(lambda: getattr(nn, name)(*args)) != None  # noqa: E711


def test_instance_norm_warns_like_torch_on_channel_mismatch_without_affine():
    with pytest.warns(UserWarning, match="does not match num_features"):
        norm.InstanceNorm1d(3)(torch.randn(2, 4, 5))


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("channels_last", [False, True])
def test_dropout_same_mask_as_torch_under_same_seed(p, channels_last):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    torch.manual_seed(3)
    ours = norm.Dropout(p)(x)
    torch.manual_seed(3)
    theirs = nn.Dropout(p)(x)
    assert torch.equal(ours, theirs)
    d = norm.Dropout(p).eval()
    assert torch.equal(d(x), x)


def test_dropout_inplace_and_functional_match_torch():
    x = torch.randn(4, 6, dtype=torch.float64)
    a, b = x.clone(), x.clone()
    torch.manual_seed(5)
    F.dropout(a, 0.4, True, inplace=True)
    torch.manual_seed(5)
    TF.dropout(b, 0.4, True, inplace=True)
    assert torch.equal(a, b)
    assert _error_of(lambda: F.dropout(x, 2.0)) == _error_of(lambda: TF.dropout(x, 2.0))


@SETTINGS
@given(n=st.integers(2, 4), c=st.integers(1, 4), size=st.integers(1, 3), training=st.booleans(),
       momentum=st.sampled_from([0.0, 0.1, 0.7]))
def test_functional_batch_and_instance_norm_match_torch(n, c, size, training, momentum):
    x = torch.randn(n, c, size, size, dtype=torch.float64)
    w, b = torch.randn(c, dtype=torch.float64), torch.randn(c, dtype=torch.float64)
    rm, rv = torch.randn(c, dtype=torch.float64), torch.rand(c, dtype=torch.float64) + 0.5
    rm2, rv2 = rm.clone(), rv.clone()
    torch.testing.assert_close(F.batch_norm(x, rm, rv, w, b, training, momentum),
                               TF.batch_norm(x, rm2, rv2, w, b, training, momentum), **TOL)
    torch.testing.assert_close((rm, rv), (rm2, rv2), **TOL)
    if size > 1 or not training:
        torch.testing.assert_close(F.instance_norm(x, rm, rv, w, b, training, momentum),
                                   TF.instance_norm(x, rm2, rv2, w, b, training, momentum), **TOL)
        torch.testing.assert_close((rm, rv), (rm2, rv2), **TOL)
    torch.testing.assert_close(F.group_norm(x, 1, w, b), TF.group_norm(x, 1, w, b), **TOL)
    torch.testing.assert_close(F.layer_norm(x, x.shape[1:]), TF.layer_norm(x, x.shape[1:]), **TOL)


def test_constructor_signatures_match_torch():
    import inspect

    for name in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d",
                 "InstanceNorm3d", "LayerNorm", "GroupNorm", "Dropout"):
        ours = inspect.signature(getattr(norm, name).__init__).parameters
        theirs = inspect.signature(getattr(nn, name).__init__).parameters
        assert [(p.name, p.default, p.kind) for p in ours.values()] == \
            [(p.name, p.default, p.kind) for p in theirs.values()], name


@pytest.mark.parametrize("kind", ["bn", "gn", "ln", "in", "none"])
@pytest.mark.parametrize("dims", [0, 1, 2, 3])
def test_make_norm_reference_matches_native(kind, dims):
    from normlab.nn.factory import make_norm

    if kind == "in" and dims == 0:
        return  # a ConfigError for both impls, covered by the factory's own tests
    torch.manual_seed(0)
    native = make_norm(kind, 4, dims, "native").double()
    reference = make_norm(kind, 4, dims, "reference").double()
    assert type(reference).__module__ == ("normlab.nn.norm" if kind != "none" else "torch.nn.modules.linear")
    reference.load_state_dict(native.state_dict())
    x = torch.randn((3, 4) + (3,) * dims, dtype=torch.float64)
    torch.testing.assert_close(reference(x), native(x), **TOL)


def test_second_derivative_is_refused_not_wrong():
    # The standardize step has a hand-written, once-differentiable backward (see docs/norms.md).
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    y = norm.BatchNorm1d(3, dtype=torch.float64)(x)
    (gx,) = torch.autograd.grad((y * y.detach().exp()).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gx.sum().backward()


def _layouts(shape):
    """The same values in every layout a model hands a norm layer: contiguous, channels_last
    (4-D and 5-D), and a permuted view that is neither (a transposed last pair of dims)."""
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = {"contiguous": x}
    if x.dim() == 4:
        out["channels_last"] = x.contiguous(memory_format=torch.channels_last)
    if x.dim() == 5:
        out["channels_last_3d"] = x.contiguous(memory_format=torch.channels_last_3d)
    if x.dim() >= 3:
        out["permuted"] = x.transpose(-1, -2).contiguous().transpose(-1, -2)  # same shape, other strides
    return out


_STRIDE_CASES = [
    ("BatchNorm1d", (4,), {}, (3, 4, 5)), ("BatchNorm2d", (4,), {}, (3, 4, 5, 3)),
    ("BatchNorm3d", (4,), {}, (3, 4, 5, 3, 2)),
    ("InstanceNorm1d", (4,), {"affine": True}, (3, 4, 5)), ("InstanceNorm2d", (4,), {"affine": True}, (3, 4, 5, 3)),
    ("InstanceNorm3d", (4,), {"affine": True, "track_running_stats": True}, (3, 4, 5, 3, 2)),
    ("GroupNorm", (2, 4), {}, (3, 4, 5, 3)), ("GroupNorm", (1, 32), {}, (3, 32, 5, 3)),
    ("GroupNorm", (2, 4), {}, (3, 4, 5, 3, 2)),
    ("LayerNorm", ((3,),), {}, (3, 4, 5, 3)), ("LayerNorm", ((5, 3),), {}, (3, 4, 5, 3)),
    ("LayerNorm", ((4, 5, 3),), {}, (3, 4, 5, 3)), ("LayerNorm", ((3, 2),), {}, (3, 4, 5, 3, 2)),
]


@pytest.mark.parametrize("name,args,kw,shape", _STRIDE_CASES)
def test_output_strides_match_torch_in_every_layout(name, args, kw, shape):
    ours, theirs = _pair(getattr(norm, name), getattr(nn, name), *args, **kw)
    for mode in (True, False):
        ours.train(mode)
        theirs.train(mode)
        for layout, x in _layouts(shape).items():
            ya, yb = ours(x), theirs(x)
            torch.testing.assert_close(ya, yb, **TOL)
            assert ya.stride() == yb.stride(), (layout, mode, ya.stride(), yb.stride())


@pytest.mark.parametrize("spec, affine", [("in", False), ("in-affine", True)])
def test_in_follows_torchs_default_affine_and_in_affine_asks_for_it(spec, affine):
    from normlab.errors import ConfigError
    from normlab.nn.factory import NormLayer, get_norm_layer

    # in = torch.nn.InstanceNorm2d(C) as torch builds it by default (affine=False, seed 004's);
    # in-affine = InstanceNorm2d(C, affine=True), a learned scale and shift per channel
    ours = get_norm_layer(spec)(3)
    theirs = torch.nn.InstanceNorm2d(3, affine=affine)
    assert type(ours) is torch.nn.InstanceNorm2d and ours.affine is affine and not ours.track_running_stats
    assert sorted(n for n, _ in ours.named_parameters()) == sorted(n for n, _ in theirs.named_parameters())
    torch.manual_seed(0)
    if affine:
        with torch.no_grad():
            for p in (theirs.weight, theirs.bias):
                p.uniform_(0.5, 2.0)
        ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64) * 3 + 1
    torch.testing.assert_close(ours.double()(x), theirs.double()(x))
    # no (N, C) form: refused in one line where the features after a Linear layer would need one
    with pytest.raises(ConfigError) as e:
        NormLayer(spec).features()(4)
    assert str(e.value) == (f"norm {spec}: instance norm normalizes over spatial positions, so it has no form for "
                            f"the (N, C) features after a Linear layer; use it in a model without norms on its "
                            f"Linear layers (lenet: --no-fc-norm), or bn, gn or ln there")


def test_reference_norm_without_affine_survives_an_inplace_relu_after_it():
    from normlab.nn import norm as ref

    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    grads = []
    for layer in (torch.nn.InstanceNorm2d(3), ref.InstanceNorm2d(3)):  # affine=False, torch's default
        x.grad = None
        torch.nn.ReLU(inplace=True)(layer.double()(x)).square().sum().backward()
        grads.append(x.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])
