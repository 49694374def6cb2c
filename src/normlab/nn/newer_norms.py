"""The normalization layers that came after the tutorials' BN, LN, IN and GN, from their papers.

Each is a plain module with torch.nn's conventions (`weight`/`bias` for the affine, buffers for
running statistics), written from the paper's equations and tested against a reference in
float64 (tests/test_newer_norms.py: torch.nn where torch has the layer, timm's layers otherwise,
the paper's equations written out for Batch Renormalization and Ghost BatchNorm):

  RMSNorm2d            y = x / sqrt(mean_C(x^2) + eps) * g, per position (Zhang & Sennrich 2019;
                       torch.nn.RMSNorm over channels-last)
  LayerNorm2d          LayerNorm over C at each position, as ConvNeXt uses it (timm LayerNorm2d)
  FilterResponseNormTLU  y = max(g * x / sqrt(mean_HW(x^2) + eps) + b, tau) (Singh & Krishnan 2020)
  EvoNormB0            y = x / max(sqrt(batch var + eps), v * x + instance std) * g + b (Liu et al. 2020)
  EvoNormS0            y = x * sigmoid(v * x) / group std * g + b (Liu et al. 2020)
  BatchRenorm          y = ((x - mu_B) / sigma_B * r + d) * g + b, r and d clipped (Ioffe 2017)
  GhostBatchNorm       batch norm whose training statistics come from virtual batches of V
                       samples (Hoffer et al. 2017)
  StdConv2d            a convolution whose filters are standardized (zero mean, unit variance
                       per output channel) before use (Qiao et al. 2019)
  NoisyBatchNorm       batch norm followed, in training only, by noise whose distribution
                       changes every step (Santurkar et al. 2018's "noisy BatchNorm"): an
                       experiment's layer, not a method

Weight normalization (Salimans & Kingma 2016) is torch's own parametrization
(torch.nn.utils.parametrizations.weight_norm) and Local Response Normalization torch's
nn.LocalResponseNorm with AlexNet's constants; nn/factory.py builds both.
"""

from __future__ import annotations

import torch
import torch.nn as tnn


def _channel_shape(x: torch.Tensor) -> tuple:
    return (1, -1) + (1,) * (x.dim() - 2)


class _Affine(tnn.Module):
    """A per-channel scale (`weight`, ones) and shift (`bias`, zeros)."""

    def __init__(self, num_features: int, affine: bool = True):
        super().__init__()
        self.num_features = num_features
        if affine:
            self.weight = tnn.Parameter(torch.ones(num_features))
            self.bias = tnn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def affine(self, y: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return y
        s = _channel_shape(y)
        return y * self.weight.view(s) + self.bias.view(s)


class RMSNorm2d(tnn.Module):
    """RMSNorm over the channels at each position of an (N, C, ...) map: no mean is subtracted
    and there is no shift, only a learned scale per channel."""

    def __init__(self, num_features: int, eps: float | None = None, elementwise_affine: bool = True):
        super().__init__()
        # torch.nn.RMSNorm's eps=None is the input dtype's machine epsilon; float32's here, fixed
        # when the layer is built (fuse_bn's fx tracing cannot branch on an input's dtype).
        self.num_features = num_features
        self.eps = torch.finfo(torch.float32).eps if eps is None else eps
        self.weight = tnn.Parameter(torch.ones(num_features)) if elementwise_affine else None

    def forward(self, x):
        y = x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + self.eps)
        return y if self.weight is None else y * self.weight.view(_channel_shape(x))


class LayerNorm2d(_Affine):
    """LayerNorm over C at each position of an (N, C, H, W) map (channels-first, as ConvNeXt)."""

    def __init__(self, num_features: int, eps: float = 1e-6, affine: bool = True):
        super().__init__(num_features, affine)
        self.eps = eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return self.affine((x - mean) * torch.rsqrt(var + self.eps))


class FilterResponseNormTLU(_Affine):
    """FRN with its thresholded linear unit: each channel of each sample divided by its root
    mean square over the spatial positions (no mean subtracted, no batch statistics), scaled,
    shifted, then max(., tau) with a learned tau per channel. The TLU is the layer's own
    nonlinearity, so it needs spatial positions: (N, C, L), (N, C, H, W) or (N, C, D, H, W)."""

    def __init__(self, num_features: int, eps: float = 1e-6):
        super().__init__(num_features)
        self.eps = eps
        self.tau = tnn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        nu2 = x.pow(2).mean(tuple(range(2, x.dim())), keepdim=True)
        y = self.affine(x * torch.rsqrt(nu2 + self.eps))
        return torch.maximum(y, self.tau.view(_channel_shape(x)))


def _var(x: torch.Tensor, dims) -> torch.Tensor:
    return x.var(dim=dims, unbiased=False, keepdim=True)


class EvoNormB0(_Affine):
    """EvoNorm-B0: x / max(sqrt(s_B^2 + eps), v * x + sqrt(s_I^2 + eps)), then scale and shift;
    s_B^2 the batch variance over (N, spatial) with a running average for evaluation (unbiased,
    as batch norm keeps it), s_I^2 the instance variance over the spatial positions."""

    def __init__(self, num_features: int, eps: float = 1e-3, momentum: float = 0.1):
        super().__init__(num_features)
        self.eps, self.momentum = eps, momentum
        self.v = tnn.Parameter(torch.ones(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        s = _channel_shape(x)
        spatial = tuple(range(2, x.dim()))
        if self.training:
            var = _var(x, (0,) + spatial).view(-1)
            n = x.numel() / x.shape[1]
            with torch.no_grad():
                self.running_var.mul_(1 - self.momentum).add_(var.detach() * (n / (n - 1)), alpha=self.momentum)
        else:
            var = self.running_var
        left = torch.sqrt(var + self.eps).view(s)
        right = x * self.v.view(s) + torch.sqrt(_var(x, spatial) + self.eps)
        return self.affine(x / torch.maximum(left, right))


class EvoNormS0(_Affine):
    """EvoNorm-S0: x * sigmoid(v * x) / sqrt(s_G^2 + eps), then scale and shift; s_G^2 the
    variance over each group of channels and the spatial positions (no batch statistics)."""

    def __init__(self, num_features: int, groups: int, eps: float = 1e-5):
        super().__init__(num_features)
        if num_features % groups:
            raise ValueError(f"EvoNormS0: {num_features} channels do not split into {groups} groups")
        self.groups, self.eps = groups, eps
        self.v = tnn.Parameter(torch.ones(num_features))

    def forward(self, x):
        n, c = x.shape[:2]
        g = x.reshape(n, self.groups, -1)
        std = torch.sqrt(_var(g, 2) + self.eps).expand_as(g).reshape(x.shape)
        return self.affine(x * torch.sigmoid(x * self.v.view(_channel_shape(x))) / std)


class BatchRenorm(_Affine):
    """Batch Renormalization (Ioffe 2017, Algorithm 1). In training:

        x_hat = (x - mu_B) / sigma_B * r + d,   r = clip(sigma_B / sigma, 1/r_max, r_max),
        d = clip((mu_B - mu) / sigma, -d_max, d_max)

    with r and d treated as constants in the backward pass, then the moving averages
    mu += momentum * (mu_B - mu) and sigma += momentum * (sigma_B - sigma) (the paper averages
    sigma itself, not the variance). sigma_B = sqrt(biased batch variance + eps). r_max grows
    from 1 to `r_max` and d_max from 0 to `d_max` over `warmup` steps, linearly (the paper ramps
    1 -> 3 and 0 -> 5 after starting as plain batch norm); evaluation uses (x - mu) / sigma."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.01, r_max: float = 3.0,
                 d_max: float = 5.0, warmup: int = 5000):
        super().__init__(num_features)
        self.eps, self.momentum = eps, momentum
        self.r_max, self.d_max, self.warmup = r_max, d_max, warmup
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_std", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def limits(self) -> tuple[float, float]:
        """(r_max, d_max) at this step: a linear ramp over `warmup` steps."""
        t = 1.0 if self.warmup <= 0 else min(1.0, int(self.num_batches_tracked) / self.warmup)
        return 1.0 + (self.r_max - 1.0) * t, self.d_max * t

    def forward(self, x):
        s = _channel_shape(x)
        if not self.training:
            return self.affine((x - self.running_mean.view(s)) / self.running_std.view(s))
        dims = (0,) + tuple(range(2, x.dim()))
        mu_b = x.mean(dims, keepdim=True)
        sigma_b = torch.sqrt(_var(x, dims) + self.eps)
        r_max, d_max = self.limits()
        with torch.no_grad():
            sigma, mu = self.running_std.view(s), self.running_mean.view(s)
            r = (sigma_b / sigma).clamp(1.0 / r_max, r_max)
            d = ((mu_b - mu) / sigma).clamp(-d_max, d_max)
            self.running_mean.add_(self.momentum * (mu_b.view(-1) - self.running_mean))
            self.running_std.add_(self.momentum * (sigma_b.view(-1) - self.running_std))
            self.num_batches_tracked.add_(1)
        return self.affine((x - mu_b) / sigma_b * r + d)


class GhostBatchNorm(tnn.modules.batchnorm._BatchNorm):
    """Batch norm over virtual ("ghost") batches of `virtual_batch` samples in training: each
    chunk of the batch is normalized with its own statistics and updates the running statistics
    in turn, as if the chunks had come one after another (a last chunk may be smaller). In
    evaluation it is batch norm, so fuse_bn folds it."""

    def __init__(self, num_features: int, virtual_batch: int = 16, **kw):
        super().__init__(num_features, **kw)
        self.virtual_batch = virtual_batch

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"GhostBatchNorm expects (N, C, ...) input, got {x.dim()}-D")

    def forward(self, x):
        if not self.training or x.shape[0] <= self.virtual_batch:
            return super().forward(x)
        normalize = super().forward  # bound here: a comprehension has no super()
        return torch.cat([normalize(c) for c in x.split(self.virtual_batch)])


class NoisyBatchNorm(tnn.modules.batchnorm._BatchNorm):
    """Batch norm whose output gets noise in training (Santurkar et al. 2018, sec. 2.1: "we
    perturb each activation for each sample in the batch using i.i.d. noise sampled from a
    non-zero mean and non-unit variance distribution", the distribution changing every step).

    Each training step draws, per channel c, a scale a_c (log-uniform in [1/(1+S), 1+S]), a mean
    m_c (uniform in [-S, S]) and a spread s_c (uniform in [0, S]), and every activation becomes

        y = a_c * BN(x) + m_c + s_c * z,   z ~ N(0, 1) i.i.d. per sample and position,

    so each layer's output distribution moves from step to step ("internal covariate shift" put
    back in after BN). S is `noise` (1 by default). The draws use torch's global generator, which
    the trainer seeds. In evaluation it is plain batch norm (no noise), so fuse_bn folds it and
    export sees batch norm."""

    def __init__(self, num_features: int, noise: float = 1.0, **kw):
        super().__init__(num_features, **kw)
        self.noise = float(noise)

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"NoisyBatchNorm expects (N, C, ...) input, got {x.dim()}-D")

    def forward(self, x):
        y = super().forward(x)
        if not self.training or self.noise == 0.0:
            return y
        s, c, n = _channel_shape(y), y.shape[1], self.noise
        with torch.no_grad():  # the noise is data, not a function of the parameters
            log_a = (torch.rand(c, device=y.device, dtype=y.dtype) * 2 - 1) * torch.log1p(torch.tensor(n))
            mean = (torch.rand(c, device=y.device, dtype=y.dtype) * 2 - 1) * n
            spread = torch.rand(c, device=y.device, dtype=y.dtype) * n
            z = torch.randn_like(y)
        return y * log_a.exp().view(s) + mean.view(s) + spread.view(s) * z

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, noise={self.noise:g}"


class StdConv2d(tnn.Conv2d):
    """Conv2d with Weight Standardization: each output channel's filter is shifted to zero mean
    and scaled to unit variance (biased, over in_channels x kH x kW) before the convolution."""

    def __init__(self, *args, ws_eps: float = 1e-5, **kw):
        super().__init__(*args, **kw)
        self.ws_eps = ws_eps

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight.reshape(self.out_channels, -1)
        w = (w - w.mean(1, keepdim=True)) * torch.rsqrt(w.var(1, unbiased=False, keepdim=True) + self.ws_eps)
        return w.reshape_as(self.weight)

    def forward(self, x):
        return self._conv_forward(x, self.standardized_weight(), self.bias)

    @classmethod
    def from_conv(cls, conv: tnn.Conv2d, ws_eps: float = 1e-5) -> "StdConv2d":
        """The same layer (the same parameter tensors) with its filters standardized."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                  dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                  padding_mode=conv.padding_mode, ws_eps=ws_eps, device=conv.weight.device, dtype=conv.weight.dtype)
        new.weight, new.bias = conv.weight, conv.bias
        return new


def standardize_convs(model: tnn.Module, ws_eps: float = 1e-5) -> int:
    """Replace every Conv2d of `model` (keeping its parameters) by a StdConv2d; returns how many."""
    count = 0
    for name, child in list(model.named_children()):
        if type(child) is tnn.Conv2d:
            setattr(model, name, StdConv2d.from_conv(child, ws_eps))
            count += 1
        else:
            count += standardize_convs(child, ws_eps)
    return count


def weight_normalize(model: tnn.Module) -> int:
    """Weight normalization (w = g * v / ||v||, per output unit) on every Conv and Linear layer,
    through torch's parametrization; returns how many layers it reparametrized."""
    from torch.nn.utils.parametrizations import weight_norm

    layers = [m for m in model.modules() if isinstance(m, (tnn.Linear, tnn.Conv1d, tnn.Conv2d, tnn.Conv3d))]
    for m in layers:
        weight_norm(m, name="weight", dim=0)
    return len(layers)


def local_response_norm(num_features: int) -> tnn.LocalResponseNorm:
    """AlexNet's LRN (Krizhevsky et al. 2012, sec. 3.3): k = 2, n = 5, alpha = 1e-4, beta = 0.75.
    (torch divides alpha by n; the paper does not, so alpha here is the paper's times n.)"""
    return tnn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)


# normlab's newer norm layers (fuse_bn's tracer calls them opaquely, as it does torch's norms).
NEWER_LAYERS = (RMSNorm2d, LayerNorm2d, FilterResponseNormTLU, EvoNormB0, EvoNormS0, BatchRenorm)
# The layers with batch statistics of their own (SyncBatchNorm does not synchronize them).
BATCH_STATISTICS = (BatchRenorm, GhostBatchNorm, EvoNormB0)
# Batch norms that SyncBatchNorm's conversion would replace by a plain one, losing what they add.
NOT_SYNCABLE = BATCH_STATISTICS + (NoisyBatchNorm,)

__all__ = ["RMSNorm2d", "LayerNorm2d", "FilterResponseNormTLU", "EvoNormB0", "EvoNormS0", "BatchRenorm",
           "GhostBatchNorm", "NoisyBatchNorm", "StdConv2d", "standardize_convs", "weight_normalize", "local_response_norm"]
