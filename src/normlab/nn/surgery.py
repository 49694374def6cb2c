"""Model surgery on normalization layers: swap their kind, fold BatchNorm away, freeze it.

    convert_norm(model, "gn")        every norm layer becomes GroupNorm (recursively)
    fuse_bn(model.eval())            Conv/Linear + BatchNorm -> one Conv/Linear, for inference
    freeze_bn(model)                 BatchNorm keeps its statistics and affine even in train()

Works on torch.nn layers and on normlab's reference layers alike.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, fx, nn

from ..errors import ConfigError
from . import functional as F
from . import kinds
from .factory import check_norm_kind, make_norm
from .newer_norms import NEWER_LAYERS

__all__ = ["FrozenBatchNorm", "convert_norm", "freeze_bn", "fuse_bn", "is_norm_layer"]

_BATCH, _INSTANCE, _GROUP, _LAYER = kinds.BATCH, kinds.INSTANCE, kinds.GROUP, kinds.LAYER


class FrozenBatchNorm(nn.Module):
    """BatchNorm with fixed statistics and affine: buffers only, always the eval computation.

    The buffers keep BatchNorm's names, so a state_dict still loads into/from nn.BatchNorm*d.
    """

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        if getattr(source, "running_mean", None) is None:
            raise ConfigError(
                f"cannot freeze {source!r}: it has no running statistics (track_running_stats=False); "
                "build it with track_running_stats=True or leave it unfrozen"
            )
        self.num_features = source.num_features
        self.eps = source.eps
        self.source_type = type(source).__name__
        # The source class's own input-rank check, so a frozen BatchNorm2d still rejects 3D input.
        self._source_cls = type(source)
        self._accepted_dims = getattr(source, "_accepted_dims", ())
        c = source.num_features
        like = source.running_mean
        weight = source.weight if source.weight is not None else torch.ones(c, dtype=like.dtype, device=like.device)
        bias = source.bias if source.bias is not None else torch.zeros(c, dtype=like.dtype, device=like.device)
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())
        self.register_buffer("running_mean", source.running_mean.detach().clone())
        self.register_buffer("running_var", source.running_var.detach().clone())
        self.register_buffer("num_batches_tracked", source.num_batches_tracked.detach().clone())

    def forward(self, input: Tensor) -> Tensor:
        self._source_cls._check_input_dim(self, input)  # type: ignore[attr-defined]  # a _BatchNorm class
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, frozen {self.source_type}"


def is_norm_layer(module: nn.Module) -> bool:
    return isinstance(module, _BATCH + _INSTANCE + _GROUP + _LAYER + (FrozenBatchNorm,))


def _channels_and_dims(layer: nn.Module) -> tuple[int, int | None]:
    """Channel count and spatial dims of a norm layer; dims None when the layer does not say."""
    if isinstance(layer, _BATCH) or isinstance(layer, FrozenBatchNorm):
        cls = layer._source_cls if isinstance(layer, FrozenBatchNorm) else type(layer)
        # BatchNorm1d serves both (N, C) and (N, C, L); (N, C) after a Linear is by far the usual.
        dims = kinds.dims_of(cls)
        return int(layer.num_features), 2 if dims is None else dims
    if isinstance(layer, _INSTANCE):
        return int(layer.num_features), kinds.dims_of(type(layer))
    if isinstance(layer, _GROUP):
        return int(layer.num_channels), None
    shape = tuple(layer.normalized_shape)  # type: ignore[arg-type]  # a LayerNorm's
    return int(shape[0]), len(shape) - 1 if len(shape) > 1 else 0


def _has_statistics(layer: nn.Module) -> bool:
    mean = getattr(layer, "running_mean", None)
    if mean is None:
        return False
    return bool(layer.num_batches_tracked > 0) or bool(mean.abs().sum() > 0) or bool((layer.running_var != 1).any())


def _observed_dims(model: nn.Module, example: Tensor | None) -> dict[nn.Module, int]:
    """Spatial dims each norm layer sees, recorded by running `example` through the model."""
    if example is None:
        return {}
    seen: dict[nn.Module, int] = {}

    def record(module, args):
        seen.setdefault(module, args[0].dim() - 2)  # returns None: the input stays as it is

    hooks = [
        m.register_forward_pre_hook(record)
        for m in model.modules()
        if is_norm_layer(m)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return seen


def _replacement(old: nn.Module, kind: str, impl: str, dims: int | None, name: str, kw: dict) -> nn.Module:
    channels, own_dims = _channels_and_dims(old)
    dims = own_dims if dims is None else dims
    if dims is None:
        if kind in ("bn", "in", "in-affine"):
            raise ConfigError(
                f"cannot tell whether {name} ({type(old).__name__}) sees 1d, 2d or 3d maps; "
                "pass example=<an input batch> (or dims=) to convert_norm"
            )
        dims = 2  # gn, ln and none do not depend on it
    if kind in ("in", "in-affine") and dims == 0:
        # As the models do: instance norm is undefined on (N, C) features, so no norm there.
        warnings.warn(f"{name}: instance norm is undefined on (N, C) features; using no norm there", stacklevel=3)
        kind = "none"
    new = make_norm(kind, channels, dims, impl, **kw)
    # Same kind (e.g. native -> reference): take everything over, statistics included.
    if kinds.family(old) == kinds.family(new) != "" and not isinstance(old, FrozenBatchNorm):
        keys = set(new.state_dict())
        new.load_state_dict({k: v for k, v in old.state_dict().items() if k in keys}, strict=False)
        kept_stats = "running_mean" in keys
    else:
        # Per-channel scale and shift mean the same thing in every kind: keep them.
        with torch.no_grad():
            for p in ("weight", "bias"):
                a, b = getattr(old, p, None), getattr(new, p, None)
                if isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape:
                    b.copy_(a)
        kept_stats = False
    if _has_statistics(old) and not kept_stats:
        warnings.warn(
            f"{name}: discarding the running statistics of {type(old).__name__} "
            f"(converted to {type(new).__name__})",
            stacklevel=3,
        )
    ref_tensor = next(iter(list(old.parameters()) + list(old.buffers())), None)
    if ref_tensor is not None and ref_tensor.is_floating_point():
        new.to(device=ref_tensor.device, dtype=ref_tensor.dtype)
    return new.train(old.training)


def convert_norm(
    model: nn.Module,
    kind: str,
    impl: str = "native",
    *,
    example: Tensor | None = None,
    dims: int | None = None,
    **kw,
) -> nn.Module:
    """Replace every normalization layer of `model` (in place) by a `kind` layer from make_norm.

    kind: bn, gn, ln, in or none; impl: native (torch.nn) or reference (normlab.nn).
    Learned per-channel weight/bias are carried over; running statistics are carried over only
    between layers of the same kind, and a warning names each layer whose statistics are lost.
    GroupNorm/LayerNorm do not record whether they see 1d/2d/3d maps: converting them to bn or
    in needs `example` (an input batch, used to observe each layer's input) or `dims`.
    Returns the model (the new layer itself when `model` is a norm layer).
    """
    check_norm_kind(kind)
    seen = _observed_dims(model, example)
    # Collect first, replace after: never mutate the module tree while iterating it.
    targets = [(name, m) for name, m in model.named_modules() if is_norm_layer(m)]
    for name, old in targets:
        new = _replacement(old, kind, impl, seen.get(old, dims), name or type(old).__name__, dict(kw))
        if not name:
            return new
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, new)
    return model


# --------------------------------------------------------------------------------------------
# fuse_bn


def _fold(layer: nn.Module, bn: nn.Module) -> None:
    """Fold an eval-mode BatchNorm into the Conv/Linear before it (output channels on dim 0)."""
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        w = layer.weight
        layer.weight.copy_(w * scale.reshape((-1,) + (1,) * (w.dim() - 1)).to(w.dtype))
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.zeros(w.shape[0], dtype=w.dtype, device=w.device))
        layer.bias.copy_(layer.bias * scale.to(w.dtype) + shift.to(w.dtype))


_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _can_fold(layer: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(layer, _FOLDABLE)
        and isinstance(bn, _BATCH + (FrozenBatchNorm,))
        and bn.running_mean is not None
        and layer.weight.shape[0] == bn.num_features
    )


class _NormLeafTracer(fx.Tracer):
    """fx tracing that treats every norm layer as one opaque call. normlab's reference layers
    check their input in Python (rank, empty batch), which fx cannot trace through; the folding
    only needs to know where each layer is called, not what happens inside it."""

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return is_norm_layer(m) or isinstance(m, NEWER_LAYERS) or super().is_leaf_module(m, qualified_name)


def _pairs_from_graph(model: nn.Module) -> list[tuple[str, str]]:
    """(layer, bn) module names where bn's only input is the layer's output, used nowhere else."""
    graph = _NormLeafTracer().trace(model)
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs: list[tuple[str, str]] = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        prev = node.args[0]
        if not isinstance(prev, fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
            continue
        # A module called twice would be changed for both calls: leave it alone.
        if calls[node.target] == 1 and calls[prev.target] == 1:
            pairs.append((str(prev.target), str(node.target)))
    return pairs


def _pairs_from_run(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """The data flow of one forward pass of `example`, for models fx cannot trace: (layer, bn)
    where bn's input is the very tensor the layer returned, unchanged (no in-place op between),
    each module called once, and that tensor used by nothing but bn (its autograd node has one
    consumer)."""
    names = {m: n for n, m in model.named_modules()}
    calls: dict[nn.Module, int] = {}
    produced: dict[int, tuple[nn.Module, Tensor, int]] = {}  # id(output) -> (layer, output, version)
    fed: dict[nn.Module, tuple[nn.Module, object]] = {}  # bn -> (layer, the output's autograd node)

    def count(module, args):
        calls[module] = calls.get(module, 0) + 1

    def after_layer(module, args, out):
        if isinstance(out, Tensor):
            produced[id(out)] = (module, out, out._version)

    def before_bn(module, args):
        x = args[0] if args else None
        hit = produced.get(id(x)) if isinstance(x, Tensor) else None
        if hit is not None and hit[1] is x and x._version == hit[2]:
            fed[module] = (hit[0], x.grad_fn)

    hooks = []
    for m in model.modules():
        if isinstance(m, _FOLDABLE + _BATCH + (FrozenBatchNorm,)):
            hooks.append(m.register_forward_pre_hook(count))
        if isinstance(m, _FOLDABLE):
            hooks.append(m.register_forward_hook(after_layer))
        elif isinstance(m, _BATCH + (FrozenBatchNorm,)):
            hooks.append(m.register_forward_pre_hook(before_bn))
    try:
        # Outside inference mode (predict runs in it): its tensors keep no version counter.
        with torch.inference_mode(False), torch.enable_grad():
            x = example.detach().clone()
            if x.is_floating_point():
                x.requires_grad_(True)  # an autograd graph even where no parameter requires grad
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    consumers: dict[object, int] = {}
    seen_nodes: set = set()
    stack = [o.grad_fn for o in (out if isinstance(out, (tuple, list)) else [out])
             if isinstance(o, Tensor) and o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen_nodes:
            continue
        seen_nodes.add(node)
        for nxt, _ in node.next_functions:
            if nxt is not None:
                consumers[nxt] = consumers.get(nxt, 0) + 1
                stack.append(nxt)
    return [(names[layer], names[bn]) for bn, (layer, node) in fed.items()
            if node is not None and consumers.get(node) == 1 and calls.get(layer) == 1 and calls.get(bn) == 1]


def _pairs_from_sequentials(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Sequential):
            children = list(m.named_children())
            for (a, _), (b, _) in zip(children, children[1:]):
                prefix = f"{name}." if name else ""
                pairs.append((prefix + a, prefix + b))
    return pairs


class FoldedFeatureNorm(nn.Identity):
    """Stands where a BatchNorm1d after a Linear was folded. The fold is right only for (N, F)
    inputs: on (N, C, L) BatchNorm1d normalizes dim 1 while the Linear maps the last dim, so a
    3-D input here means the folded model computes something else. Say so instead."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.folded_from = name

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() != 2:
            raise ConfigError(f"fuse_bn folded BatchNorm1d {self.folded_from!r} into the Linear before it, "
                              f"which is right only for 2-D (N, features) inputs; it got a {input.dim()}-D "
                              "input. Fuse with fuse_bn(model, example=<an input batch>) so that such layers "
                              "are left unfolded")
        return input


def fuse_bn(model: nn.Module, inplace: bool = False, example: Tensor | None = None) -> nn.Module:
    """Fold each BatchNorm into the Conv/Linear feeding it; the model must be in eval mode.

    The data flow comes from torch.fx tracing, with every norm layer (torch's or normlab's) an
    opaque call. A model fx cannot trace (data-dependent control flow) is followed through one
    forward pass of `example` when one is given, else fused only where nn.Sequential makes the
    order certain. A BatchNorm whose input is not a conv/linear output alone (pre-activation
    blocks: after an addition, a concatenation or an activation) stays. Returns the fused model
    (a copy unless inplace=True); folded BatchNorms become nn.Identity. A Linear -> BatchNorm1d
    pair folds only for 2-D inputs: with `example` (an input batch) the input of every
    BatchNorm is observed and other pairs are left alone; without it they are folded and a
    3-D input at that point raises a clear error rather than a wrong result.
    """
    if model.training:
        raise ConfigError("fuse_bn is for inference: call model.eval() first (training needs the live BatchNorm)")
    if not inplace:
        with torch.inference_mode(False):  # under predict's inference mode the copy would be frozen tensors
            model = copy.deepcopy(model)
    seen = _observed_dims(model, example)
    try:
        pairs = _pairs_from_graph(model)
    except Exception:  # noqa: BLE001 - any tracing failure means "order unknown"
        pairs = _pairs_from_run(model, example) if example is not None else _pairs_from_sequentials(model)
    for layer_name, bn_name in pairs:
        layer, bn = model.get_submodule(layer_name), model.get_submodule(bn_name)
        if not _can_fold(layer, bn):
            continue
        feature_pair = isinstance(layer, nn.Linear)
        if feature_pair and seen.get(bn, 0) != 0:
            continue  # observed (N, C, L) input: BatchNorm1d's channels are not the Linear's outputs
        _fold(layer, bn)
        parent, _, attr = bn_name.rpartition(".")
        stand_in = FoldedFeatureNorm(bn_name) if feature_pair and bn not in seen else nn.Identity()
        setattr(model.get_submodule(parent), attr, stand_in)
    return model


# --------------------------------------------------------------------------------------------
# freeze_bn


def freeze_bn(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm by a FrozenBatchNorm (in place); returns the model.

    Frozen layers have no parameters (the optimizer cannot move them) and no training mode (so
    model.train() cannot update their statistics), which is what fine-tuning with tiny batches
    wants.
    """
    if isinstance(model, _BATCH):
        return FrozenBatchNorm(model)
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, _BATCH)]
    for name, bn in targets:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, FrozenBatchNorm(bn))
    return model
