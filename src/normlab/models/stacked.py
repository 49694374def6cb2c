"""S copies of one model (one per seed) as one "seed-stacked" model, for seed-batched training.

Each seed's model is built exactly as its separate run builds it (so its initial weights are
that run's), then the S models are stacked layer by layer into one module whose every parameter
and buffer is seed-major: `t.reshape(S, -1)[s]` is seed s's tensor, flattened. Nothing is shared
and no operation reduces over seeds:

  activations   conv nets run on (B, S*C, H, W): seed s owns channels s*C .. (s+1)*C - 1;
                after a Linear layer, (S, B, F); a flattened map is (B, S*F)
  Linear        a batched matmul over the seeds (torch.baddbmm), weights (S, out, in)
  Conv2d        one grouped convolution, S times the groups (weights (S*Cout, Cin/g, k, k));
                weight-standardized (ws) per row of that weight, each row one seed's filter
  weight norm   (wn: torch's weight_norm on a Linear or Conv2d) the stacked layer's weight is
                g * v / ||v|| per row, each row one seed's output unit, g and v stacked
  BatchNorm(C)  BatchNorm(S*C): statistics per channel, so per seed; running stats likewise
  GroupNorm     GroupNorm(S*G, S*C): a group never spans two seeds (LN = GroupNorm(1, C) too)
  LayerNorm(F)  over the last dim of (S, B, F), with per-seed scale and shift
  InstanceNorm  InstanceNorm(S*C)
  RMSNorm       over the last dim of (S, B, F); RMSNorm2d and LayerNorm2d over each seed's own
                C channels at each position of (B, S*C, H, W); LRN on (B*S, C, H, W)
  per channel   Batch Renorm, FRN, EvoNorm-B0 and -S0 (nn/newer_norms.py): the same layer over S*C
                channels (EvoNorm-S0 with S*G groups), its own formula, statistics per channel
  Ghost BN      the stacked batch norm on each virtual batch in turn: every seed's chunks are the
                same rows of its own batch
  noisy BN      the stacked batch norm, then each seed's noise drawn from its own generator, as
                Dropout's masks
  Dropout       each seed's mask drawn from its own generator, in its separate run's order and
                shape, so the masks are the separate run's (see Dropout below)
  GRU/LSTM      the row-reading recurrent nets' cells (models/rnn.py) on (S, B, F): their input
                and recurrent products batched matmuls, their norms the stacked ones above, the
                gates element-wise; the state (S, B, H)

Parameter and buffer names are the separate model's, so a stacked state_dict key is the
separate one's and `unstack_state` is a reshape. A model holding any other layer is refused by
`why_not` (the trainer then trains its seeds one by one and says why).
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
import torch.nn as tnn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _WeightNorm

from ..nn import newer_norms as nn2
from ..nn.blocks import BasicBlock, OrderedBasicBlock, PreActBlock, Scale, ShortcutGate, ZeroPadShortcut
from ..nn.layers import NonInvertedDropout
from ..nn.tutorial import BatchNormTutorial
from .rnn import NormGRUCell, NormLSTMCell


def _stack(tensors: Sequence, shape=None) -> torch.Tensor:
    """Seed-major concatenation of per-seed tensors, reshaped to `shape` (default (S, *t.shape))."""
    out = torch.stack([t.detach() for t in tensors])
    return out.reshape(shape) if shape is not None else out


def _param(tensors, shape=None, requires_grad=True) -> tnn.Parameter:
    return tnn.Parameter(_stack(tensors, shape).clone(), requires_grad=requires_grad)


class _BatchedLinear(torch.autograd.Function):
    """y[s] = x[s] @ w[s].T + b[s], with the backward that F.linear's own (addmm's) backward
    computes for each seed, matrix for matrix: dW = dy^T @ x, dx = dy @ W, db = sum of dy over
    the batch. bmm's generic backward computes dW as (x^T @ dy)^T, which rounds differently; with
    this one a stacked MLP's gradients are the separate runs' bit for bit on a CPU (tested)."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        wt = w.transpose(1, 2)
        return torch.bmm(x, wt) if b is None else torch.baddbmm(b.unsqueeze(1), x, wt)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dx = torch.bmm(dy, w) if ctx.needs_input_grad[0] else None
        dw = None
        if ctx.needs_input_grad[1]:
            # one mm per seed: bmm rounds dy^T @ x differently from mm for some shapes (10 outputs)
            dw = torch.empty_like(w)
            for s in range(w.shape[0]):
                torch.mm(dy[s].t(), x[s], out=dw[s])
        db = dy.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


class _RowWeightNorm(tnn.Module):
    """torch's weight normalization (parametrizations.weight_norm, dim 0: w = g * v / ||v|| per
    output unit) on a stacked weight whose units are its rows over `dims` (each row one seed's
    unit), so that its originals are named and ordered as the separate layer's (original0 = g,
    original1 = v)."""

    def __init__(self, dims: tuple):
        super().__init__()
        self.dims = dims

    def forward(self, weight_g, weight_v):
        return weight_v * (weight_g / torch.linalg.vector_norm(weight_v, 2, self.dims, keepdim=True))

    def right_inverse(self, weight):
        return torch.linalg.vector_norm(weight, 2, self.dims, keepdim=True), weight


def _weight_norm_of(mod: tnn.Module) -> bool:
    """Whether `mod`'s weight is torch's weight_norm (dim 0) and nothing else is parametrized;
    ValueError for any other parametrization."""
    if not parametrize.is_parametrized(mod):
        return False
    names = [n for n, _ in mod.get_submodule("parametrizations").named_children()]
    chain = list(mod.get_submodule("parametrizations.weight").children()) if names == ["weight"] else []
    if len(chain) != 1 or type(chain[0]) is not _WeightNorm or chain[0].dim != 0:
        raise ValueError("a parametrization other than weight_norm on the weight")
    return True


@torch.no_grad()
def _stack_weight_norm(layer: tnn.Module, mods: Sequence[tnn.Module], dims: tuple) -> None:
    """Weight-normalize the stacked `layer` as its seeds' layers are, with their own g and v."""
    parametrize.register_parametrization(layer, "weight", _RowWeightNorm(dims))
    for name in ("parametrizations.weight.original0", "parametrizations.weight.original1"):
        orig = layer.get_parameter(name)
        orig.copy_(_stack([m.get_parameter(name) for m in mods], orig.shape))


class Linear(tnn.Module):
    """S Linear layers: (S, B, in) or a flattened map (B, S*in) -> (S, B, out), by baddbmm."""

    def __init__(self, mods: Sequence[tnn.Linear]):
        super().__init__()
        self.seeds, self.in_features, self.out_features = len(mods), mods[0].in_features, mods[0].out_features
        self.weight = _param([m.weight for m in mods])
        self.bias = _param([m.bias for m in mods]) if mods[0].bias is not None else None
        if _weight_norm_of(mods[0]):
            _stack_weight_norm(self, mods, (2,))

    def forward(self, x):
        s, weight = self.seeds, self.weight  # read once: a weight-normalized weight is computed
        if x.dim() == 2:  # (B, S*in), from a flattened (B, S*C, H, W): seed-major along dim 1
            x = x.view(x.shape[0], s, self.in_features).transpose(0, 1)
        if not torch.is_grad_enabled() and x.shape[1] >= 256:
            # evaluation's large batches: one addmm per seed beats the batched kernel there (0.8x
            # the time at 1,000 x 784 -> 512 on a CPU); training's small batches are the batched
            # kernel's case
            out = x.new_empty(s, x.shape[1], self.out_features)
            for i in range(s):
                if self.bias is None:
                    torch.mm(x[i], weight[i].t(), out=out[i])
                else:
                    torch.addmm(self.bias[i], x[i], weight[i].t(), out=out[i])
            return out
        return _BatchedLinear.apply(x, weight, self.bias)


class Conv2d(tnn.Module):
    """S Conv2d layers as one grouped convolution on (B, S*C, H, W)."""

    def __init__(self, mods: Sequence[tnn.Conv2d]):
        super().__init__()
        m = mods[0]
        if m.padding_mode != "zeros":
            raise ValueError("padding_mode")
        self.seeds, self.stride, self.padding, self.dilation = len(mods), m.stride, m.padding, m.dilation
        self.groups = m.groups * len(mods)
        w = m.weight
        self.weight = _param([c.weight for c in mods], (len(mods) * w.shape[0], *w.shape[1:]))
        self.bias = _param([c.bias for c in mods], (len(mods) * w.shape[0],)) if m.bias is not None else None
        if _weight_norm_of(m):
            _stack_weight_norm(self, mods, (1, 2, 3))

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class StdConv2d(Conv2d):
    """S weight-standardized convolutions (nn/newer_norms.py's StdConv2d): each row of the stacked
    weight, one seed's output channel, standardized as that seed's layer standardizes it."""

    def __init__(self, mods: Sequence[nn2.StdConv2d]):
        super().__init__(mods)
        self.ws_eps = mods[0].ws_eps

    def forward(self, x):
        w = self.weight.reshape(self.weight.shape[0], -1)
        w = (w - w.mean(1, keepdim=True)) * torch.rsqrt(w.var(1, unbiased=False, keepdim=True) + self.ws_eps)
        return F.conv2d(x, w.reshape_as(self.weight), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


def _features_to_channels(x, seeds):
    """(S, B, F) -> (B, S*F) for the channel-wise norms; a (B, S*F) input passes."""
    if x.dim() == 3:
        return x.transpose(0, 1).reshape(x.shape[1], -1), True
    return x, False


def _channels_to_features(y, seeds, was3):
    return y.view(y.shape[0], seeds, -1).transpose(0, 1).contiguous() if was3 else y


class BatchNorm(tnn.Module):
    """S batch norms as one over S*C channels (statistics per channel, never across seeds)."""

    def __init__(self, mods):
        super().__init__()
        m = mods[0]
        self.seeds, self.eps, self.momentum = len(mods), m.eps, m.momentum
        self.track_running_stats = m.track_running_stats
        self.weight = _param([b.weight for b in mods], (-1,)) if m.affine else None
        self.bias = _param([b.bias for b in mods], (-1,)) if m.affine else None
        if m.track_running_stats:
            self.register_buffer("running_mean", _stack([b.running_mean for b in mods], (-1,)).clone())
            self.register_buffer("running_var", _stack([b.running_var for b in mods], (-1,)).clone())
            # one counter: every seed has taken the same number of steps
            self.register_buffer("num_batches_tracked", m.num_batches_tracked.detach().clone())

    def forward(self, x):
        x, was3 = _features_to_channels(x, self.seeds)
        momentum = self.momentum if self.momentum is not None else 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as torch's
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or not self.track_running_stats
        y = F.batch_norm(x, self.running_mean if self.track_running_stats else None,
                         self.running_var if self.track_running_stats else None, self.weight, self.bias,
                         use_batch, momentum, self.eps)
        return _channels_to_features(y, self.seeds, was3)


class GhostBatchNorm(BatchNorm):
    """S Ghost BatchNorms (nn/newer_norms.py): in training, the stacked batch norm on each virtual
    batch of V rows in turn, as the layer does; row i of every seed's batch is in the same chunk,
    so each seed's chunks, statistics and running-statistic updates are its separate run's."""

    def __init__(self, mods: Sequence[nn2.GhostBatchNorm]):
        super().__init__(mods)
        self.virtual_batch = mods[0].virtual_batch

    def forward(self, x):
        x, was3 = _features_to_channels(x, self.seeds)
        if not self.training or x.shape[0] <= self.virtual_batch:
            y = super().forward(x)
        else:
            y = torch.cat([super(GhostBatchNorm, self).forward(c) for c in x.split(self.virtual_batch)])
        return _channels_to_features(y, self.seeds, was3)


class NoisyBatchNorm(BatchNorm):
    """S noisy batch norms (nn/newer_norms.py): the stacked batch norm, then in training each
    seed's noise drawn from its own generator (the one Dropout draws from: its separate run's
    global generator), in its separate run's order, shapes and memory format, so the noise is the
    separate run's on a CPU (on CUDA per seed and independent, as Dropout's masks).
    `channels_last`: the separate runs' own layout, which decides what torch.randn_like draws."""

    def __init__(self, mods: Sequence[nn2.NoisyBatchNorm], generators: list, channels_last: bool = False):
        super().__init__(mods)
        self.noise, self.generators, self.channels_last = mods[0].noise, generators, channels_last

    def _draws(self, y_shape, dtype, g: torch.Generator) -> list[torch.Tensor]:
        """One seed's (scale, mean, spread, z) in the order and formulas of NoisyBatchNorm.forward."""
        c, n = y_shape[1], self.noise

        def rand():
            return torch.rand(c, device=g.device, dtype=dtype, generator=g)

        log_a = (rand() * 2 - 1) * torch.log1p(torch.tensor(n))
        mean = (rand() * 2 - 1) * n
        spread = rand() * n
        fmt = torch.channels_last if self.channels_last and len(y_shape) == 4 else torch.contiguous_format
        z = torch.empty(y_shape, device=g.device, dtype=dtype, memory_format=fmt).normal_(generator=g)
        return [log_a.exp(), mean, spread, z]

    def forward(self, x):
        y = super().forward(x)
        if not self.training or self.noise == 0.0:
            return y
        S = self.seeds
        with torch.no_grad():
            if y.dim() == 3:  # (S, B, F)
                per_seed = [self._draws(y.shape[1:], y.dtype, g) for g in self.generators]
                scale, mean, spread, z = (torch.stack(t).to(y.device) for t in zip(*per_seed))
                scale, mean, spread = (t.unsqueeze(1) for t in (scale, mean, spread))
            else:  # (B, S*C, ...): seed s's (B, C, ...) draws in its channels
                shape = (y.shape[0], y.shape[1] // S, *y.shape[2:])
                per_seed = [self._draws(shape, y.dtype, g) for g in self.generators]
                scale, mean, spread = (_channel_view(torch.cat(t), y).to(y.device) for t in list(zip(*per_seed))[:3])
                z = torch.stack([d[3] for d in per_seed], 1).reshape(y.shape).to(y.device)
        return y * scale + mean + spread * z


class GroupNorm(tnn.Module):
    """S GroupNorm(G, C) as GroupNorm(S*G, S*C): no group spans two seeds."""

    def __init__(self, mods):
        super().__init__()
        m = mods[0]
        self.seeds, self.groups, self.eps = len(mods), m.num_groups * len(mods), m.eps
        self.weight = _param([g.weight for g in mods], (-1,)) if m.affine else None
        self.bias = _param([g.bias for g in mods], (-1,)) if m.affine else None

    def forward(self, x):
        x, was3 = _features_to_channels(x, self.seeds)
        return _channels_to_features(F.group_norm(x, self.groups, self.weight, self.bias, self.eps), self.seeds, was3)


def _layout_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """y in x's memory format, where x is a channels_last map and y (an op's output) is not."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return y.contiguous(memory_format=torch.channels_last)
    return y


class InstanceNorm(tnn.Module):
    """S InstanceNorm2d(C) as InstanceNorm2d(S*C) (statistics per example and channel)."""

    def __init__(self, mods):
        super().__init__()
        m = mods[0]
        self.eps, self.momentum, self.track_running_stats = m.eps, m.momentum, m.track_running_stats
        self.weight = _param([i.weight for i in mods], (-1,)) if m.affine else None
        self.bias = _param([i.bias for i in mods], (-1,)) if m.affine else None
        if m.track_running_stats:
            self.register_buffer("running_mean", _stack([i.running_mean for i in mods], (-1,)).clone())
            self.register_buffer("running_var", _stack([i.running_var for i in mods], (-1,)).clone())
            self.register_buffer("num_batches_tracked", m.num_batches_tracked.detach().clone())

    def forward(self, x):
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        rm = self.running_mean if self.track_running_stats else None
        rv = self.running_var if self.track_running_stats else None
        y = F.instance_norm(x, rm, rv, self.weight, self.bias, self.training or not self.track_running_stats,
                            self.momentum if self.momentum is not None else 0.1, self.eps)
        # instance_norm returns NCHW whatever its input; back to channels_last, or every layer
        # after it runs in NCHW (a CPU's max pooling there took 10x as long as in channels_last)
        return _layout_of(x, y)


class LayerNorm(tnn.Module):
    """S LayerNorm(F) on (S, B, F): statistics over each example's own features."""

    @staticmethod
    def normalize(x, shape, eps):
        return F.layer_norm(x, shape, None, None, eps)

    def __init__(self, mods):
        super().__init__()
        m = mods[0]
        if len(m.normalized_shape) != 1:
            raise ValueError("normalized_shape")
        self.shape, self.eps = tuple(m.normalized_shape), m.eps
        self.weight = _param([n.weight for n in mods]) if m.weight is not None else None
        self.bias = _param([n.bias for n in mods]) if getattr(m, "bias", None) is not None else None

    def forward(self, x):
        if x.dim() != 3:
            raise ValueError(f"stacked {type(self).__name__} expects (S, B, F) features, got {tuple(x.shape)}")
        y = self.normalize(x, self.shape, self.eps)
        if self.weight is not None:
            y = y * self.weight.unsqueeze(1)
        if self.bias is not None:
            y = y + self.bias.unsqueeze(1)
        return y


class RMSNorm(LayerNorm):
    """S torch.nn.RMSNorm(F) on (S, B, F): each example's root mean square over its own features
    (no shift: torch's RMSNorm has no bias)."""

    @staticmethod
    def normalize(x, shape, eps):
        return F.rms_norm(x, shape, None, eps)


def _seed_channels(x: torch.Tensor, seeds: int) -> torch.Tensor:
    """(B, S*C, ...) -> (B, S, C, ...), a view in either memory format: a reduction over dim 2
    then stays inside each seed's channels."""
    return x.view(x.shape[0], seeds, x.shape[1] // seeds, *x.shape[2:])


def _like_input(y5: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, S, C, ...) back to x's shape and memory format (channels_last stays channels_last)."""
    y = y5.reshape(x.shape)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return y.contiguous(memory_format=torch.channels_last)
    return y


def _channel_view(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, *([1] * (like.dim() - 2)))


class RMSNorm2d(tnn.Module):
    """S RMSNorm2d(C) (nn/newer_norms.py) on (B, S*C, H, W): the mean square over each seed's own
    C channels at each position."""

    def __init__(self, mods: Sequence[nn2.RMSNorm2d]):
        super().__init__()
        m = mods[0]
        self.seeds, self.eps = len(mods), m.eps
        self.weight = _param([n.weight for n in mods], (-1,)) if m.weight is not None else None

    def forward(self, x):
        x5 = _seed_channels(x, self.seeds)
        y = _like_input(x5 * torch.rsqrt(x5.pow(2).mean(2, keepdim=True) + self.eps), x)
        return y if self.weight is None else y * _channel_view(self.weight, y)


class LayerNorm2d(tnn.Module):
    """S LayerNorm2d(C) (nn/newer_norms.py, ConvNeXt's) on (B, S*C, H, W): mean and variance over
    each seed's own C channels at each position."""

    def __init__(self, mods: Sequence[nn2.LayerNorm2d]):
        super().__init__()
        m = mods[0]
        self.seeds, self.eps = len(mods), m.eps
        self.weight = _param([n.weight for n in mods], (-1,)) if m.weight is not None else None
        self.bias = _param([n.bias for n in mods], (-1,)) if m.bias is not None else None

    def forward(self, x):
        x5 = _seed_channels(x, self.seeds)
        mean = x5.mean(2, keepdim=True)
        var = (x5 - mean).pow(2).mean(2, keepdim=True)
        y = _like_input((x5 - mean) * torch.rsqrt(var + self.eps), x)
        if self.weight is None:
            return y
        return y * _channel_view(self.weight, y) + _channel_view(self.bias, y)


class LocalResponseNorm(tnn.Module):
    """S LocalResponseNorms (AlexNet's, across channels) on (B, S*C, H, W): each seed's C channels
    as an example of their own, (B*S, C, H, W), so no window spans two seeds."""

    def __init__(self, mods: Sequence[tnn.LocalResponseNorm]):
        super().__init__()
        m = mods[0]
        self.seeds, self.size, self.alpha, self.beta, self.k = len(mods), m.size, m.alpha, m.beta, m.k

    def forward(self, x):
        b, sc = x.shape[:2]
        per_seed = x.reshape(b * self.seeds, sc // self.seeds, *x.shape[2:])
        y = F.local_response_norm(per_seed, self.size, self.alpha, self.beta, self.k)
        return _like_input(y, x)


@torch.no_grad()
def _load_seeds(layer: tnn.Module, mods: Sequence[tnn.Module]) -> None:
    """Give `layer`, built over S*C channels, the seeds' own tensors, seed-major; a 0-d buffer (a
    step counter: every seed has taken the same steps) is seed 0's."""
    for name, t in [*layer.named_parameters(recurse=False), *layer.named_buffers(recurse=False)]:
        src = [getattr(m, name) for m in mods]
        t.copy_(src[0] if t.dim() == 0 else _stack(src, t.shape))


class BatchRenorm(nn2.BatchRenorm):
    """S Batch Renorms as one over S*C channels: its own formula, every statistic, r and d per
    channel; the clipping schedule reads the step counter, which all seeds share."""

    def __init__(self, mods: Sequence[nn2.BatchRenorm]):
        m = mods[0]
        super().__init__(len(mods) * m.num_features, m.eps, m.momentum, m.r_max, m.d_max, m.warmup)
        self.seeds = len(mods)
        _load_seeds(self, mods)

    def forward(self, x):
        x, was3 = _features_to_channels(x, self.seeds)
        return _channels_to_features(super().forward(x), self.seeds, was3)


class FilterResponseNorm(nn2.FilterResponseNormTLU):
    """S FRNs (with their TLU) as one over S*C channels: statistics per example and channel."""

    def __init__(self, mods: Sequence[nn2.FilterResponseNormTLU]):
        m = mods[0]
        super().__init__(len(mods) * m.num_features, m.eps)
        _load_seeds(self, mods)


class EvoNormB0(nn2.EvoNormB0):
    """S EvoNorm-B0s as one over S*C channels: batch variance (and its running average) and
    instance variance per channel."""

    def __init__(self, mods: Sequence[nn2.EvoNormB0]):
        m = mods[0]
        super().__init__(len(mods) * m.num_features, m.eps, m.momentum)
        _load_seeds(self, mods)


class EvoNormS0(nn2.EvoNormS0):
    """S EvoNorm-S0s with G groups as one with S*G groups over S*C channels: no group spans two seeds."""

    def __init__(self, mods: Sequence[nn2.EvoNormS0]):
        m = mods[0]
        super().__init__(len(mods) * m.num_features, len(mods) * m.groups, m.eps)
        _load_seeds(self, mods)


class TutorialBatchNorm(tnn.Module):
    """Seed 000's from-scratch BatchNorm (nn/tutorial.py), S of them: its formulas on S*C channels."""

    def __init__(self, mods: Sequence[BatchNormTutorial]):
        super().__init__()
        m = mods[0]
        self.seeds, self.num_dims, self.eps, self.momentum = len(mods), m.num_dims, m.eps, m.momentum
        c = m.num_features
        shape = (len(mods), c) if m.num_dims == 2 else (len(mods) * c, 1, 1)
        self.gamma = _param([b.gamma for b in mods], shape)
        self.beta = _param([b.beta for b in mods], shape)
        self.register_buffer("moving_mean", _stack([b.moving_mean for b in mods], shape).clone())
        self.register_buffer("moving_var", _stack([b.moving_var for b in mods], shape).clone())

    def _view(self, t):
        # (S, C) -> (S, 1, C) against (S, B, F); (S*C, 1, 1) -> (1, S*C, 1, 1) against (B, S*C, H, W)
        return t.unsqueeze(1) if self.num_dims == 2 else t.unsqueeze(0)

    def forward(self, x):
        if not self.training:
            x_hat = (x - self._view(self.moving_mean)) / torch.sqrt(self._view(self.moving_var) + self.eps)
        else:
            dims = (1,) if self.num_dims == 2 else (0, 2, 3)
            mean = x.mean(dim=dims, keepdim=True)
            var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
            x_hat = (x - mean) / torch.sqrt(var + self.eps)
            with torch.no_grad():
                shape = self.moving_mean.shape
                self.moving_mean.mul_(self.momentum).add_((1.0 - self.momentum) * mean.reshape(shape))
                self.moving_var.mul_(self.momentum).add_((1.0 - self.momentum) * var.reshape(shape))
        return self._view(self.gamma) * x_hat + self._view(self.beta)


class Dropout(tnn.Module):
    """S dropout layers, each seed's mask drawn from that seed's own generator.

    On a CPU, torch.nn.functional.dropout draws `empty_like(x).bernoulli_(1 - p)` from the
    global generator and multiplies by mask / (1 - p); a separate run's global generator is,
    from the end of model building on, drawn by its dropout layers alone, in forward order. So a
    generator per seed holding that run's global state after its model was built, drawn here in
    the same order and shape, gives each seed its separate run's masks. (On CUDA torch uses a
    fused kernel with another stream of numbers: there masks are per seed and independent, but
    not the separate run's; the trainer says so.)
    """

    def __init__(self, mod, generators: list, inverted: bool = True):
        super().__init__()
        self.p, self.inverted = mod.p, inverted
        self.generators = generators  # shared with the other dropout layers of the model: one stream per seed

    def _mask(self, shape, x, s):
        g = self.generators[s]
        m = torch.empty(shape, dtype=x.dtype, device=g.device, memory_format=self.memory_format)
        m.bernoulli_(1 - self.p, generator=g)
        if self.inverted:
            m.div_(1 - self.p)
        return m.to(x.device)

    def forward(self, x):
        if not self.p:
            return x
        if not self.training:
            return x if self.inverted else x * (1 - self.p)
        S = len(self.generators)
        self.memory_format = torch.contiguous_format
        if x.dim() == 3:  # (S, B, F)
            masks = torch.stack([self._mask(x.shape[1:], x, s) for s in range(S)])
        elif x.dim() == 2:  # (B, S*F)
            b, sf = x.shape
            masks = torch.stack([self._mask((b, sf // S), x, s) for s in range(S)], 1).reshape(b, sf)
        else:  # (B, S*C, H, W): each seed's (B, C, H, W) mask, in the memory format its run's input had
            b, sc, h, w = x.shape
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                self.memory_format = torch.channels_last
            masks = torch.stack([self._mask((b, sc // S, h, w), x, s) for s in range(S)], 1).reshape(b, sc, h, w)
        return x * masks


class StackedZeroPad(tnn.Module):
    """Option-A shortcut (blocks.ZeroPadShortcut) per seed: zero channels padded inside each seed's block."""

    def __init__(self, mod: ZeroPadShortcut, seeds: int):
        super().__init__()
        self.stride, self.extra, self.seeds = mod.stride, mod.extra, seeds

    def forward(self, x):
        # NCHW out of a channels_last block: the residual sum copies it (converting it here measured
        # no faster, resnet56 on a CPU)
        x = x[:, :, ::self.stride, ::self.stride]
        if not self.extra:
            return x
        b, sc, h, w = x.shape
        front = self.extra // 2
        y = F.pad(x.reshape(b, self.seeds, sc // self.seeds, h, w), (0, 0, 0, 0, front, self.extra - front))
        return y.reshape(b, -1, h, w)


class _StackedCell:
    """S cells of models/rnn.py as one: the separate cell's gate arithmetic (inherited) on
    (S, B, F), the products W_ih x and W_hh h by a batched matmul whose backward is each seed's
    own (_BatchedLinear). The cell's norm layers are the stacked model's own children, stacked
    like any other layer (SeedStacked's loop reaches them after the cell)."""

    seeds: int
    hidden: int

    def _stack_cell(self, mods: Sequence[tnn.Module], own: tnn.Module) -> None:
        tnn.Module.__init__(self)  # type: ignore[arg-type]
        self.seeds, self.hidden = len(mods), int(own.hidden)  # type: ignore[arg-type]
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):  # the separate cell's order
            setattr(self, name, _param([getattr(m, name) for m in mods]))
        for name in ("norm_ih", "norm_hh", "norm_c"):
            if hasattr(own, name):
                setattr(self, name, getattr(own, name))

    def _pre(self, x, h, t):
        if x.dim() == 2:  # (B, S*F): a row of the stacked image, seed-major
            x = x.view(x.shape[0], self.seeds, -1).transpose(0, 1)
        step = min(t, len(self.norm_ih) - 1)
        gi = self.norm_ih[step](_BatchedLinear.apply(x, self.weight_ih, None)) + self.bias_ih.unsqueeze(1)
        gh = self.norm_hh[step](_BatchedLinear.apply(h, self.weight_hh, None)) + self.bias_hh.unsqueeze(1)
        return gi, gh, step


class GRUCell(_StackedCell, NormGRUCell):
    def __init__(self, mods: Sequence[NormGRUCell], own: NormGRUCell):
        self._stack_cell(mods, own)

    def init_state(self, x):
        return x.new_zeros(self.seeds, x.shape[0], self.hidden)


class LSTMCell(_StackedCell, NormLSTMCell):
    def __init__(self, mods: Sequence[NormLSTMCell], own: NormLSTMCell):
        self._stack_cell(mods, own)

    def init_state(self, x):
        h = x.new_zeros(self.seeds, x.shape[0], self.hidden)
        return h, h.clone()


# Blocks holding tensors of their own, stacked as a whole; their children as any layer.
CELLS: dict = {NormGRUCell: GRUCell, NormLSTMCell: LSTMCell}


class Flatten(tnn.Module):
    """tnn.Flatten of a (B, S*C, H, W) map: (B, S*C*H*W), seed-major, as Linear reads it."""

    def forward(self, x):
        if x.dim() == 3:
            raise ValueError("stacked Flatten got (S, B, F) features")
        return x.flatten(1)


# Layers that act element-wise or per channel and keep no state: used as they are.
PASS = (tnn.ReLU, tnn.Sigmoid, tnn.Tanh, tnn.GELU, tnn.SiLU, tnn.LeakyReLU, tnn.ELU, tnn.Identity,
        tnn.MaxPool2d, tnn.AvgPool2d, tnn.AdaptiveAvgPool2d, Scale)
# Containers and blocks whose forward only calls their children and adds, multiplies or
# flattens from dim 1 (read for this: models/{mlp,lenet,digitnet,resnet}.py, nn/blocks.py).
CONTAINERS = (tnn.Sequential, tnn.ModuleList, BasicBlock, PreActBlock, OrderedBasicBlock, ShortcutGate)


# normlab's newer norm layers (nn/newer_norms.py) and torch's RMSNorm, by exact type: a subclass
# may add what the stacked form does not know.
NEWER: dict = {tnn.RMSNorm: RMSNorm, nn2.RMSNorm2d: RMSNorm2d, nn2.LayerNorm2d: LayerNorm2d,
               nn2.BatchRenorm: BatchRenorm, nn2.FilterResponseNormTLU: FilterResponseNorm,
               nn2.EvoNormB0: EvoNormB0, nn2.EvoNormS0: EvoNormS0, nn2.GhostBatchNorm: GhostBatchNorm,
               nn2.NoisyBatchNorm: NoisyBatchNorm, tnn.LocalResponseNorm: LocalResponseNorm,
               nn2.StdConv2d: StdConv2d}
# The norm names of nn/factory.py's ONE_IMPL that seed batching stacks: the layers above, and wn
# (weight norm on the stacked Linear and Conv2d). (ln-chw, LayerNorm over (C, H, W), is not stacked.)
STACKED_NEWER = ("rms", "ln2d", "brn", "frn", "evob0", "evos0", "gbn", "noisy-bn", "lrn", "ws", "gn+ws", "wn")


def _container_types():
    from .digitnet import DigitNet
    from .lenet import LeNet
    from .mlp import MLP
    from .resnet import CifarResNet
    from .rnn import RowRNN

    return CONTAINERS + (MLP, LeNet, DigitNet, CifarResNet, RowRNN)


def _leaf(mod) -> Optional[type]:
    """The stacked class for a layer, or None for one used as it is (PASS)."""
    t = parametrize.type_before_parametrizations(mod)
    if t not in (tnn.Linear, tnn.Conv2d) and parametrize.is_parametrized(mod):
        raise TypeError(f"parametrized {t.__name__}")
    if t is tnn.Linear:
        return Linear
    if t is tnn.Conv2d:
        return Conv2d
    if t in (tnn.BatchNorm1d, tnn.BatchNorm2d):
        return BatchNorm
    if t is tnn.GroupNorm:
        return GroupNorm
    if t is tnn.InstanceNorm2d:
        return InstanceNorm
    if t is tnn.LayerNorm and len(mod.normalized_shape) == 1:
        return LayerNorm
    if t is BatchNormTutorial:
        return TutorialBatchNorm
    if t in NEWER:
        return NEWER[t]
    if t in (tnn.Dropout, NonInvertedDropout, ZeroPadShortcut, tnn.Flatten):
        return t
    if isinstance(mod, PASS):
        return None
    raise TypeError(t.__name__)


def _is_leaf(mod: tnn.Module) -> bool:
    """A layer: no children, or only its parametrizations' (a weight-normalized Linear)."""
    return parametrize.is_parametrized(mod) or not list(mod.children())


def _modules(mod: tnn.Module, name: str = ""):
    """named_modules(), but a parametrized layer's parametrizations are part of the layer."""
    yield name, mod
    if parametrize.is_parametrized(mod):
        return
    for child_name, child in mod.named_children():
        yield from _modules(child, f"{name}.{child_name}" if name else child_name)


def why_not(model: tnn.Module) -> Optional[str]:
    """None when every layer of `model` can be stacked, else a short reason."""
    containers = _container_types()
    for name, mod in _modules(model):
        kind = parametrize.type_before_parametrizations(mod)
        if kind in CELLS:
            continue
        if isinstance(mod, containers) and kind in containers:
            if any(True for _ in mod.parameters(recurse=False)) or any(True for _ in mod.buffers(recurse=False)):
                return f"its {kind.__name__} {name!r} holds tensors of its own"
            continue
        if not _is_leaf(mod):
            return f"it has a {kind.__name__} block ({name!r}) that seed batching has no stacked form for"
        try:
            _leaf(mod)
            _weight_norm_of(mod)
        except (TypeError, ValueError):
            return f"it has a {kind.__name__} layer ({name!r}) that seed batching has no stacked form for"
        if kind in (tnn.Conv2d, nn2.StdConv2d) and mod.padding_mode != "zeros":
            return f"its conv {name!r} pads with {mod.padding_mode!r}"
        if kind is tnn.LayerNorm and len(mod.normalized_shape) != 1:
            return f"its LayerNorm {name!r} normalizes over several dims (ln-chw)"
    return None


class SeedStacked(tnn.Module):
    """The S seeds' models as one: forward takes each seed's batch, (S, B, ...), or one batch
    every seed sees (B, ...) with mode="shared", and returns logits (S, B, K).

    `generators`: one per seed, what its dropout and noisy-BN layers draw from; `channels_last`:
    the stacked model's memory format; `run_channels_last`: the separate runs' (default the same)."""

    def __init__(self, models: Sequence[tnn.Module], generators: Optional[list] = None,
                 channels_last: bool = False, run_channels_last: Optional[bool] = None):
        super().__init__()
        reason = why_not(models[0])
        if reason:
            raise ValueError(f"cannot stack this model: {reason}")
        self.seeds = len(models)
        self.generators = generators if generators is not None else [torch.default_generator] * self.seeds
        self.channels_last = channels_last
        # the separate runs' own layout (their config's channels_last), which the noise that their
        # noisy batch norms draw depends on; by default the stacked model's
        run_channels_last = channels_last if run_channels_last is None else run_channels_last
        self.net = copy.deepcopy(models[0])
        per_seed = [dict(m.named_modules()) for m in models]
        for name, mod in list(_modules(self.net)):
            if type(mod) in CELLS:
                _set_module(self.net, name, CELLS[type(mod)]([p[name] for p in per_seed], mod))
                continue
            cls = _leaf(mod) if _is_leaf(mod) else None
            if cls is None:
                continue
            new: tnn.Module
            if cls in (tnn.Dropout, NonInvertedDropout):
                new = Dropout(mod, self.generators, inverted=cls is tnn.Dropout)
            elif cls is NoisyBatchNorm:
                new = NoisyBatchNorm([p[name] for p in per_seed], self.generators, run_channels_last)
            elif cls is ZeroPadShortcut:
                new = StackedZeroPad(mod, self.seeds)
            elif cls is tnn.Flatten:
                new = Flatten()
            else:
                new = cls([p[name] for p in per_seed])
            _set_module(self.net, name, new)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def stack_input(self, x: torch.Tensor, mode: str = "seeds") -> torch.Tensor:
        """The stacked layout (B, S*C, ...) from per-seed batches (S, B, C, ...) ("seeds"), from
        one batch (B, C, ...) every seed sees ("shared": repeated), or as given ("stacked")."""
        if mode == "shared":
            x = x.repeat(1, self.seeds, *([1] * (x.dim() - 2)))
        elif mode == "seeds":
            x = x.transpose(0, 1).flatten(1, 2)
        elif mode != "stacked":
            raise ValueError(f"mode must be seeds, shared or stacked, got {mode!r}")
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor, mode: str = "seeds") -> torch.Tensor:
        out = self.net(self.stack_input(x, mode))
        if out.dim() != 3 or out.shape[0] != self.seeds:
            raise ValueError(f"the stacked model's output has shape {tuple(out.shape)}, not (S, B, classes)")
        return out


def _set_module(root: tnn.Module, name: str, new: tnn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def unstack_state(stacked: dict, seed: int, seeds: int, template: dict) -> dict:
    """Seed `seed`'s state_dict from the stacked model's (`stacked`, keys prefixed `net.` or
    not): each tensor's seed-major slice in the shape of `template` (a separate model's
    state_dict); a one-element tensor shared by all seeds (BN's step counter) as it is."""
    out = {}
    for k, t in template.items():
        v = stacked[k] if k in stacked else stacked["net." + k]
        if v.dim() > 0 and v.numel() == t.numel() * seeds:
            n = v.shape[0] // seeds  # seed-major along dim 0 (a view, whatever the memory format)
            out[k] = v.detach().narrow(0, seed * n, n).reshape(t.shape).clone()
        elif v.numel() == t.numel():
            out[k] = v.detach().clone()
        else:
            raise ValueError(f"stacked tensor {k} {tuple(v.shape)} does not hold {seeds} of {tuple(t.shape)}")
    return out
