"""Norm and activation layers: names at the edge, callables inside.

A model never reads a norm name. `get_norm_layer("gn:8")` turns the name into a callable
`norm_layer(num_channels) -> nn.Module` once, at the edge (`create_model`, the config); models
receive `norm_layer=` and `act_layer=` by keyword and call them, as torchvision's `norm_layer=`
and timm's `get_norm_layer`. A callable passes through untouched, so
`functools.partial(torch.nn.GroupNorm, 4)` or a user's own module class works in every model.

Names: bn, gn (groups by `default_groups`), gn:G (G groups), ln (GroupNorm with one group:
statistics over C, H, W, one scale and shift per channel), ln-chw (torch.nn.LayerNorm over
(C, H, W): one scale and shift per element, so its shape is fixed by the first input), in
(InstanceNorm as torch.nn.InstanceNorm2d builds it by default: affine=False, no scale or shift),
in-affine (the same with a learned per-channel scale and shift), none;
and the layers that came after the tutorials (nn/newer_norms.py, docs/norms.md): rms (RMSNorm),
ln2d (LayerNorm over C at each position, as ConvNeXt), frn (Filter Response Norm with its TLU),
evob0, evos0 / evos0:G (EvoNorm), brn (Batch Renormalization), gbn / gbn:V (Ghost BatchNorm over
virtual batches of V), lrn (AlexNet's local response norm), and three that change the weights
rather than add a layer: ws (weight-standardized convolutions, no norm layer), gn+ws / gn:G+ws
(both), wn (weight normalization of every conv and linear layer, no norm layer); and one
experiment's layer: noisy-bn (batch norm with noise added after it in training, Santurkar et al.
2018's test of the internal-covariate-shift story).
"""

from __future__ import annotations

from typing import Any, Callable, Union

import torch.nn as tnn

from ..errors import ConfigError, unknown_name

NORM_KINDS = ("bn", "gn", "ln", "ln-chw", "in", "in-affine", "none", "rms", "ln2d", "frn", "evob0", "evos0", "brn",
              "gbn", "lrn", "ws", "gn+ws", "wn", "noisy-bn")
# Kinds that take a number after a colon, and what it is.
NUMBERED = {"gn": "groups, e.g. gn:8", "gbn": "virtual batch size, e.g. gbn:16", "evos0": "groups, e.g. evos0:8"}
# Kinds that normalize over spatial positions only, so have no form for (N, C) features.
SPATIAL_ONLY = ("in", "in-affine", "frn", "evob0", "evos0", "lrn")
# Kinds that reparametrize the weights of the model's layers instead of (or besides) a norm layer.
WEIGHT_KINDS = {"ws": "standardize", "gn+ws": "standardize", "wn": "weight_norm"}
BATCH_NORM_KINDS = ("bn", "gbn", "brn", "noisy-bn")  # the kinds that take batch norm's eps and momentum
GHOST_BATCH = 16  # gbn's virtual batch size when none is given (Hoffer et al. used 128 for batches of 4096)
IMPLS = ("native", "reference", "tutorial")

_ACTS: dict[str, Callable[[], tnn.Module]] = {
    "relu": lambda: tnn.ReLU(inplace=True),
    "sigmoid": tnn.Sigmoid,
    "tanh": tnn.Tanh,
    "gelu": tnn.GELU,
    "silu": tnn.SiLU,
    "leaky-relu": lambda: tnn.LeakyReLU(0.01, inplace=True),
    "elu": lambda: tnn.ELU(inplace=True),
    "identity": tnn.Identity,
}


def parse_norm(spec: str) -> tuple[str, int | None]:
    """'gn:8' -> ('gn', 8); 'bn' -> ('bn', None); 'gn:8+ws' -> ('gn+ws', 8). gn, gbn and evos0
    take a number (groups, virtual batch size, groups)."""
    text = str(spec)
    ws = text.endswith("+ws") and text != "+ws"
    kind, _, arg = text.removesuffix("+ws").partition(":") if ws else text.partition(":")
    if ws and kind == "gn":
        kind = "gn+ws"
    if kind not in NORM_KINDS or (ws and kind != "gn+ws"):
        raise unknown_name("norm", spec, NORM_KINDS + ("gn:G", "gn:G+ws", "gbn:V", "evos0:G"))
    if not arg:
        return kind, None
    base = kind.removesuffix("+ws")
    if base not in NUMBERED:
        raise ConfigError(f"norm {spec!r}: {kind} takes no number; only gn, gbn and evos0 do (e.g. gn:8, gbn:16)")
    if not arg.isdigit() or int(arg) < 1:
        raise ConfigError(f"norm {spec!r}: the {NUMBERED[base].split(',')[0]} must be a whole number >= 1, "
                          f"e.g. {NUMBERED[base].split('e.g. ')[1]}")
    return kind, int(arg)


def check_norm_kind(spec: str) -> str:
    parse_norm(spec)
    return spec


def check_act(name: str) -> str:
    if name not in _ACTS:
        raise unknown_name("activation", name, _ACTS)
    return name


def make_act(name: str) -> tnn.Module:
    return _ACTS[check_act(name)]()


def default_groups(num_channels: int) -> int:
    """Wu & He (2018): 32 groups, or fewer when there are fewer channels, but never one channel
    per group (that would be instance norm): the largest divisor of the channels that is at most
    32 and leaves at least 2 channels in each group (1 group for 1 channel or a prime count)."""
    for g in range(min(32, num_channels // 2), 0, -1):
        if num_channels % g == 0:
            return g
    return 1


def make_norm(kind: str, num_features: int, dims: int = 2, impl: str = "native", **kw) -> tnn.Module:
    """A normalization layer for `num_features` channels of `dims`-D feature maps.

    dims: 0 for (N, C) features after a Linear layer, 1/2/3 for (N, C, L)/(N, C, H, W)/(N, C, D, H, W).
    kind: a name of NORM_KINDS or "gn:G". impl: native (torch.nn), reference (normlab's layers,
    same arguments), tutorial (seed 000's from-scratch BatchNorm; bn only).
    """
    spec = kind
    kind, groups = parse_norm(kind)
    if impl not in IMPLS:
        raise unknown_name("norm implementation", impl, IMPLS)
    if dims not in (0, 1, 2, 3):
        raise ConfigError(f"dims must be 0 (features), 1, 2 or 3 (spatial dims), got {dims}")
    if kind in ("none", "ws", "wn"):  # ws and wn act on the weights (create_model), not through a layer
        return tnn.Identity()
    if kind == "gn+ws":
        kind = "gn"
    if kind in NEWER:
        if impl == "tutorial":
            raise ConfigError(f"norm implementation 'tutorial' is seed 000's from-scratch BatchNorm; it has no "
                              f"{kind!r}: use --norm-impl native")
        return _newer_norm(spec, kind, groups, num_features, dims, **kw)
    if impl == "tutorial":
        return _tutorial_norm(kind, num_features, dims, **kw)
    from . import norm as reference

    # normlab's own layers take the same constructor arguments as torch's
    mod: Any = reference if impl == "reference" else tnn
    if kind == "bn":
        cls = {0: mod.BatchNorm1d, 1: mod.BatchNorm1d, 2: mod.BatchNorm2d, 3: mod.BatchNorm3d}[dims]
        return cls(num_features, **kw)
    kw.pop("momentum", None)  # a running-average speed only batch norm has
    if kind == "gn":
        groups = kw.pop("num_groups", None) or groups or default_groups(num_features)
        if num_features % groups:
            raise ConfigError(f"norm gn:{groups}: a layer has {num_features} channels, which do not split "
                              f"into {groups} groups; give a group count that divides every layer's "
                              f"channels, or plain gn for the default")
        return mod.GroupNorm(groups, num_features, **kw)
    if kind in ("ln", "ln-chw"):
        if dims == 0:
            return mod.LayerNorm(num_features, **kw)
        if kind == "ln-chw":
            from .layers import LayerNormCHW

            return LayerNormCHW(num_features, reference=impl == "reference", **kw)
        return mod.GroupNorm(1, num_features, **kw)
    # Instance norm over a single value per channel is undefined, so for features it has no dims.
    if dims == 0:
        raise ConfigError(f"norm {spec}: instance norm normalizes over spatial positions, so it has no form for "
                          f"the (N, C) features after a Linear layer; use it in a model without norms on its "
                          f"Linear layers (lenet: --no-fc-norm), or bn, gn or ln there")
    # torch.nn.InstanceNorm2d's default (the one seed 004 shows) is affine=False; in-affine asks
    # for the learned per-channel scale and shift.
    kw.setdefault("affine", kind == "in-affine")
    cls = {1: mod.InstanceNorm1d, 2: mod.InstanceNorm2d, 3: mod.InstanceNorm3d}[dims]
    return cls(num_features, **kw)


NEWER = ("rms", "ln2d", "frn", "evob0", "evos0", "brn", "gbn", "lrn", "noisy-bn")
# Kinds with a single implementation (nn/newer_norms.py or a reparametrization): no reference/tutorial form.
ONE_IMPL = NEWER + tuple(WEIGHT_KINDS)


def _newer_norm(spec: str, kind: str, number, num_features: int, dims: int, momentum=None, eps=None,
                **kw) -> tnn.Module:
    """The layers of nn/newer_norms.py (one implementation each: written from the papers, tested
    against torch/timm). Batch norm's eps and momentum reach the batch-statistics kinds."""
    from . import newer_norms as nn2

    if dims == 0 and kind in SPATIAL_ONLY:
        raise ConfigError(f"norm {spec}: normalizes over spatial positions, so it has no form for the (N, C) "
                          f"features after a Linear layer; use it in a model without norms on its Linear "
                          f"layers, or bn, gn, ln, rms or brn there")
    if kw:
        raise ConfigError(f"norm {spec}: takes no option {', '.join(sorted(kw))}")
    bn_kw = {k: v for k, v in (("eps", eps), ("momentum", momentum)) if v is not None}
    if kind == "rms":
        return tnn.RMSNorm(num_features) if dims == 0 else nn2.RMSNorm2d(num_features)
    if kind == "ln2d":
        return tnn.LayerNorm(num_features, eps=1e-6) if dims == 0 else nn2.LayerNorm2d(num_features)
    if kind == "frn":
        return nn2.FilterResponseNormTLU(num_features)
    if kind == "evob0":
        return nn2.EvoNormB0(num_features, **({"momentum": momentum} if momentum is not None else {}))
    if kind == "evos0":
        groups = number or default_groups(num_features)
        if num_features % groups:
            raise ConfigError(f"norm {spec}: a layer has {num_features} channels, which do not split into "
                              f"{groups} groups; give a group count that divides every layer's channels")
        return nn2.EvoNormS0(num_features, groups)
    if kind == "brn":
        return nn2.BatchRenorm(num_features, **bn_kw)
    if kind == "gbn":
        return nn2.GhostBatchNorm(num_features, virtual_batch=number or GHOST_BATCH, **bn_kw)
    if kind == "noisy-bn":
        return nn2.NoisyBatchNorm(num_features, **bn_kw)
    return nn2.local_response_norm(num_features)


def _tutorial_norm(kind, num_features, dims, momentum=None, eps=1e-5, **kw):
    if kind != "bn":
        raise ConfigError(f"norm implementation 'tutorial' is seed 000's from-scratch BatchNorm; it has no "
                          f"{kind!r}: use --norm bn, or --norm-impl native/reference for {kind}")
    if dims not in (0, 2):
        raise ConfigError("norm implementation 'tutorial' handles (N, C) features and (N, C, H, W) maps only")
    from .tutorial import BatchNormTutorial

    # The tutorial's momentum weights the old value (0.9); torch's weights the new one (0.1).
    return BatchNormTutorial(num_features, 2 if dims == 0 else 4, eps=eps,
                             momentum=0.9 if momentum is None else 1.0 - momentum)


class NormLayer:
    """A norm named by a string, resolved once; `NormLayer("gn:8")(64)` is GroupNorm(8, 64).

    `features()` gives the same norm for (N, C) features after a Linear layer; a spatial-only
    norm (in, in-affine, frn, evob0, evos0, lrn) has no such form and is refused there in one
    line, never replaced by the identity (a model that wants it on its convolutions only says so,
    as lenet's fc_norm=False). `bn_eps`/`bn_momentum` reach batch norm
    only (momentum in torch's convention: the weight of the new batch); `kw` goes to every layer.
    """

    def __init__(self, spec: str = "bn", impl: str = "native", dims: int = 2, *, bn_eps=None,
                 bn_momentum=None, **kw):
        self.kind, self.groups = parse_norm(spec)
        if self.kind in BATCH_NORM_KINDS:  # batch norm's eps and momentum (the others keep their own eps)
            kw = {"eps": bn_eps, "momentum": bn_momentum, **kw}
        if impl not in IMPLS:
            raise unknown_name("norm implementation", impl, IMPLS)
        if impl == "tutorial" and self.kind not in ("bn", "none"):
            raise ConfigError(f"norm implementation 'tutorial' is seed 000's from-scratch BatchNorm; it has "
                              f"no {self.kind!r}: use --norm bn, or --norm-impl native/reference")
        self.spec, self.impl, self.dims, self.kw = spec, impl, dims, {k: v for k, v in kw.items() if v is not None}

    def __call__(self, num_channels: int) -> tnn.Module:
        return make_norm(self.spec, num_channels, self.dims, self.impl, **self.kw)

    def features(self) -> "NormLayer":
        if self.kind in SPATIAL_ONLY:
            make_norm(self.spec, 1, 0, self.impl)  # the one-line refusal: no (N, C) form
        return NormLayer(self.spec, self.impl, 0, **self.kw)

    @property
    def weight_transform(self):
        """'standardize' (ws, gn+ws), 'weight_norm' (wn) or None: what create_model does to the
        model's weights after building it."""
        return WEIGHT_KINDS.get(self.kind)

    def with_kw(self, **kw) -> "NormLayer":
        return NormLayer(self.spec, self.impl, self.dims, **{**self.kw, **kw})

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.kw.items())
        return f"NormLayer({self.spec!r}, impl={self.impl!r}{extra})"


NormSpec = Union[str, Callable[[int], tnn.Module], None]


def get_norm_layer(norm: NormSpec, impl: str = "native", **kw) -> Callable[[int], tnn.Module]:
    """A name ("bn", "gn:8", ...) becomes a NormLayer; a callable (a class, a partial, a function
    of the channel count) is returned as it is: the user's own layer in any zoo model."""
    if norm is None:
        norm = "bn"
    if isinstance(norm, str):
        _refuse_custom("norm", norm)
        return NormLayer(norm, impl, **kw)
    if callable(norm):
        return norm
    raise ConfigError(f"norm must be a name ({', '.join(NORM_KINDS)}, gn:G) or a callable "
                      f"num_channels -> nn.Module, got {type(norm).__name__}")


def feature_norm(norm_layer: Callable[[int], tnn.Module], num_features: int) -> tnn.Module:
    """The norm for (N, C) features. A name-resolved NormLayer switches to its 1-D form; a user's
    callable is called as it is, so it must accept (N, C) input (GroupNorm and LayerNorm do)."""
    if isinstance(norm_layer, NormLayer):
        return norm_layer.features()(num_features)
    return norm_layer(num_features)


def get_act_layer(act: Union[str, Callable[[], tnn.Module], None]) -> Callable[[], tnn.Module]:
    """A name ("relu", ...) becomes a constructor of that activation; a callable (torch.nn.GELU,
    a partial, a user's class) is returned as it is."""
    if act is None:
        act = "relu"
    if isinstance(act, str):
        _refuse_custom("act", act)
        check_act(act)
        return _ACTS[act]
    if callable(act):
        return act
    raise ConfigError(f"act must be a name ({', '.join(_ACTS)}) or a callable returning an nn.Module, "
                      f"got {type(act).__name__}")


def _refuse_custom(what: str, name: str) -> None:
    if name.startswith("custom:"):
        raise ConfigError(f"{what} {name!r} was a callable given from Python, which a config file cannot hold; "
                          f"pass the callable again, e.g. normlab.load(run_dir, {what}=...) or "
                          f"create_model(..., {what}=...)")


def fresh_act(act_layer: Callable[[], tnn.Module]) -> tnn.Module:
    """An activation that never works in place: for inputs that another path still reads (the
    identity of a pre-activation block, the concatenated features of a dense block)."""
    m = act_layer()
    if getattr(m, "inplace", False):
        m.inplace = False  # type: ignore[assignment]  # a plain bool attribute of torch's activations
    return m


def describe(layer) -> str:
    """A short label for a norm or act given by name or callable (for logs and config.json)."""
    if layer is None or isinstance(layer, str):
        return layer  # type: ignore[return-value]  # None stays None: "the model's own"
    if isinstance(layer, NormLayer):
        return layer.spec
    import functools

    if isinstance(layer, functools.partial):
        args = ", ".join([*map(repr, layer.args), *(f"{k}={v!r}" for k, v in layer.keywords.items())])
        return f"custom:{describe(layer.func).removeprefix('custom:')}({args})"
    return f"custom:{getattr(layer, '__module__', '?')}.{getattr(layer, '__qualname__', type(layer).__name__)}"
