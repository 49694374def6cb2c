"""The model registry: every model is a named builder with one uniform signature.

`create_model(name, num_classes, in_channels, input_size, norm, act, dropout, init, norm_impl,
**model_kw)` builds any registered model; families register with `@register(...)`. Builders
receive `norm_layer` and `act_layer` callables (names are resolved here, once) and never see
a norm name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch.nn as tnn

from ..errors import ConfigError, unknown_name
from ..nn.factory import NormSpec, get_act_layer, get_norm_layer
from ..nn.init import init_weights
from ..nn.kinds import INSTANCE
from ..nn.newer_norms import standardize_convs, weight_normalize


@dataclass
class ModelSpec:
    name: str
    family: str
    description: str
    builder: Callable[..., tnn.Module]
    default_norm: str = "bn"
    default_act: str = "relu"
    default_input: tuple[int, int, int] = (1, 28, 28)
    defaults: dict = field(default_factory=dict)
    # The lr `normlab train` uses when none is given: 0.01 suits the normalized models with Adam;
    # norm-free ReLU nets such as the tutorial's GoogLeNet die at it and get a lower one.
    default_lr: float = 0.01
    num_classes: Optional[int] = None  # a model that only takes this many classes (logistic-binary: 2)
    # NHWC training when --channels-last is not given: on for the conv nets whose training step
    # measured faster in it on a CPU (benchmarks/train.py; README's Performance section).
    default_channels_last: bool = False
    # Whether the builder takes a norm and an activation at all: a logistic regression has neither,
    # a recurrent cell or a maxout unit brings its own nonlinearity. One given anyway is refused.
    takes_norm: bool = True
    takes_act: bool = True

    @property
    def default_dropout(self) -> float:
        """The builder's own dropout before the classifier (what a run without --dropout gets)."""
        import inspect

        p = inspect.signature(self.builder).parameters.get("dropout")
        return 0.0 if p is None or p.default is inspect.Parameter.empty else float(p.default)


MODELS: dict[str, ModelSpec] = {}


def register(name: str, family: str, description: str, default_norm: str = "bn",
             default_act: str = "relu", default_input=(1, 28, 28), default_lr: float = 0.01,
             num_classes: Optional[int] = None, channels_last: bool = False, takes_norm: bool = True,
             takes_act: bool = True, **defaults):
    """Register `builder` as model `name`; `defaults` are its own options (depth, width, ...), the
    only keyword arguments create_model passes on besides the common ones."""
    def wrap(builder):
        MODELS[name] = ModelSpec(name, family, description, builder, default_norm, default_act,
                                 tuple(default_input), defaults, default_lr, num_classes, channels_last,
                                 takes_norm, takes_act)
        return builder

    return wrap


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    return MODELS[name]


def list_models() -> list[str]:
    return sorted(MODELS)


def create_model(name: str, num_classes: int = 10, in_channels: Optional[int] = None,
                 input_size: Optional[Sequence[int]] = None, norm: NormSpec = None,
                 act=None, dropout: Optional[float] = None, init: str = "default",
                 norm_impl: str = "native", bn_eps: Optional[float] = None,
                 bn_momentum: Optional[float] = None, dropout_mode: str = "inverted", **model_kw) -> tnn.Module:
    """Build model `name`; None arguments take the model's own defaults (see `normlab models`).

    norm: a name (bn, gn, gn:8, ln, ln-chw, in, none) or a callable `num_channels -> nn.Module`
    such as `functools.partial(torch.nn.GroupNorm, 4)` or your own module class; act: a name or a
    callable `() -> nn.Module` such as `torch.nn.GELU`. bn_eps/bn_momentum set batch norm's eps
    and momentum (torch's convention) when the norm is given by name. dropout_mode
    "non-inverted" turns every dropout layer into seed 002's form (scale at test time).
    """
    spec = get_spec(name)
    check_model_options(spec, model_kw, norm, act)
    if dropout is not None:
        model_kw["dropout"] = dropout
    if in_channels is None:
        in_channels = spec.default_input[0]
    if input_size is None:
        input_size = spec.default_input[1:]
    input_size = tuple(int(s) for s in input_size)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    kw = dict(spec.defaults)
    kw.update({k: v for k, v in model_kw.items() if v is not None})
    if spec.takes_norm:
        kw["norm_layer"] = get_norm_layer(spec.default_norm if norm is None else norm, norm_impl,
                                          bn_eps=bn_eps, bn_momentum=bn_momentum)
    if spec.takes_act:
        kw["act_layer"] = get_act_layer(spec.default_act if act is None else act)
    model = spec.builder(num_classes=num_classes, in_channels=in_channels, input_size=input_size, **kw)
    _probe(model, name, (in_channels, *input_size))
    if dropout_mode not in ("inverted", "non-inverted"):
        raise unknown_name("dropout mode", dropout_mode, ("inverted", "non-inverted"))
    if dropout_mode == "non-inverted":
        from ..nn.layers import use_non_inverted_dropout

        use_non_inverted_dropout(model)
    return reparametrize(init_weights(model, init), kw.get("norm_layer"), name)


def reparametrize(model: tnn.Module, norm_layer, name: str) -> tnn.Module:
    """--norm ws / gn+ws / wn: the weights' own normalization, applied after the init (weight
    normalization starts from the initialized weights, so the function is the same at step 0)."""
    how = getattr(norm_layer, "weight_transform", None)
    if how == "standardize" and not standardize_convs(model):
        raise ConfigError(f"norm {norm_layer.spec}: weight standardization acts on 2-D convolutions and model "
                          f"{name!r} has none; use a conv net, or wn (weight normalization) for Linear layers")
    if how == "weight_norm":
        weight_normalize(model)
    return model


def check_model_options(spec: ModelSpec, model_kw: dict, norm=None, act=None) -> None:
    """Refuse, in one line, an option model `spec` does not take: a keyword it has no use for
    (its own options are spec.defaults), a norm for a model without norm layers, an activation
    for one with its own nonlinearity. Nothing is silently dropped."""
    unknown = sorted(k for k in model_kw if k not in spec.defaults and k != "dropout")
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: model {spec.name!r} has no such option "
                          f"(it takes: {', '.join(sorted(spec.defaults)) or 'none'})")
    if not spec.takes_norm and norm is not None and norm != "none":
        raise ConfigError(f"norm: model {spec.name!r} has no norm layers, so a norm would not be used; "
                          f"drop --norm, or use a model with norm layers (e.g. mlp)")
    if not spec.takes_act and act is not None and act != spec.default_act:
        raise ConfigError(f"act: model {spec.name!r} brings its own nonlinearity (or none), so --act would not "
                          f"be used; drop it, or use a model that takes one (e.g. mlp)")


def _probe(model: tnn.Module, name: str, input_shape) -> None:
    """One forward pass on zeros, only for models that need it: it sizes layers whose shape is
    set by their input (ln-chw) and checks instance norm's inputs."""
    from torch.nn.modules.lazy import LazyModuleMixin

    lazy = any(isinstance(m, LazyModuleMixin) for m in model.modules())
    if lazy or any(isinstance(m, INSTANCE) for m in model.modules()):
        _check_instance_norm_inputs(model, name, input_shape)


def _check_instance_norm_inputs(model: tnn.Module, name: str, input_shape) -> None:
    """Instance norm over a 1x1 map normalizes one value per channel: its output would be all
    zeros (its shift) and torch refuses it. Find that here, by one probe forward, rather than
    as a ValueError from inside torch in the first training step."""
    import torch

    layers = {m: n for n, m in model.named_modules() if "InstanceNorm" in type(m).__name__}
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def look(mod, args):
        if args[0][0, 0].numel() <= 1:
            size = "x".join(map(str, args[0].shape[2:]))
            raise ConfigError(
                f"norm 'in': {name} at input size {input_shape[1]}x{input_shape[2]} feeds instance norm "
                f"{layers[mod]!r} a {size} map, one value per channel, which it cannot normalize; "
                f"give a larger input (e.g. --resize 64) or use --norm gn, ln or bn")

    hooks = [m.register_forward_pre_hook(look) for m in layers]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train()


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def require_min_size(model: str, input_size, minimum: int) -> None:
    if min(input_size) < minimum:
        h, w = input_size
        raise ConfigError(f"{model} needs inputs of at least {minimum}x{minimum} pixels, got {h}x{w}; "
                          f"resize the inputs (--resize {minimum}) or use a model for small images (mlp, logistic)")
