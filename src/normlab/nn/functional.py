"""Normalization and dropout written from tensor operations, the way the tutorials write them.

Every function has the signature and the behaviour of its torch.nn.functional namesake:
the same output, the same running-statistic updates (in place, without autograd) and the same
exception type and message for bad input. Gradients come from autograd through these
operations, so the code stays a readable statement of the maths:

    mean, var = batch statistics (biased variance)
    x_hat     = (x - mean) / sqrt(var + eps)
    y         = weight * x_hat + bias

The running variance is stored *unbiased* (var * n / (n - 1)), as torch does, while the
normalization itself always uses the biased variance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["batch_norm", "dropout", "group_norm", "instance_norm", "layer_norm"]


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    """Reshape a per-channel vector (C,) to (1, C, 1, ...) so it broadcasts over an ndim input."""
    return t.reshape((1, -1) + (1,) * (ndim - 2))


def _torch_layout(t: Tensor) -> torch.memory_format:
    """The memory format torch's kernels give their output for input `t`: channels_last(_3d)
    when t's strides look like it, contiguous for any other layout (even a permuted one)."""
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    if t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d) and not t.is_contiguous():
        return torch.channels_last_3d
    if t.dim() in (4, 5):
        from torch._prims_common import suggest_memory_format  # strided (sliced) channels_last too

        return suggest_memory_format(t)
    return torch.contiguous_format


def _in_layout(out: Tensor, layout: torch.memory_format) -> Tensor:
    return out if out.is_contiguous(memory_format=layout) else out.contiguous(memory_format=layout)


def _verify_batch_size(size: Sequence[int], shown) -> None:
    # Normalizing one value per channel gives 0/0: torch refuses it in training, so do we.
    values = size[0] * math.prod(size[2:])
    if values == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {shown}")


def _verify_spatial_size(size: torch.Size) -> None:
    if math.prod(size[2:]) == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {size}")


def _check_per_channel(name: str, t: Tensor | None, channels: int) -> None:
    if t is not None and t.numel() != channels:
        raise RuntimeError(f"{name} should contain {channels} elements not {t.numel()}")


class _Standardize(torch.autograd.Function):
    """x_hat = (x - mean) / sqrt(var + eps) with mean and biased var over `dims`.

    The backward is the textbook batch-norm gradient, which costs a few passes over the data
    instead of autograd's step-by-step differentiation of var_mean, subtraction and scaling:

        dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat))

    Also returns mean and var (keepdim, not differentiable) for the running statistics.
    """

    @staticmethod
    def forward(ctx, x: Tensor, dims: list[int], eps: float):
        # Two passes like the tutorials' batch_norm: mean, then the mean squared deviation.
        # (torch.var_mean is several times slower on CPU when reducing over dims (0, 2, 3).)
        mean = x.mean(dims, keepdim=True)
        centered = x - mean
        var = (centered * centered).mean(dims, keepdim=True)
        rstd = torch.rsqrt(var + eps)
        x_hat = centered.mul_(rstd)  # in place: each fresh full-size buffer costs page faults
        ctx.dims = dims
        ctx.save_for_backward(x_hat, rstd)
        ctx.mark_non_differentiable(mean, var)
        return x_hat, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor, _grad_mean, _grad_var):
        x_hat, rstd = ctx.saved_tensors
        mean_g = g.mean(ctx.dims, keepdim=True)
        mean_gx = (g * x_hat).mean(ctx.dims, keepdim=True)
        # rstd * (g - mean_g) - x_hat * (rstd * mean_gx), the last term fused in place.
        dx = (g - mean_g).mul_(rstd)
        return dx.addcmul_(x_hat, rstd * mean_gx, value=-1), None, None


def _standardize(x: Tensor, dims: list[int], eps: float) -> tuple[Tensor, Tensor, Tensor]:
    return _Standardize.apply(x, dims, eps)


def _affine(x_hat: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    w = None if weight is None else _channel_view(weight, x_hat.dim())
    b = None if bias is None else _channel_view(bias, x_hat.dim())
    if w is not None and b is not None:
        return torch.addcmul(b, x_hat, w)  # b + x_hat * w in one pass
    if w is not None:
        return x_hat * w
    if b is None:
        # No affine (instance norm's default): _Standardize saved x_hat for its backward, so hand
        # out a copy that a following in-place op (ReLU(inplace=True)) may overwrite.
        return x_hat.clone() if x_hat.requires_grad else x_hat
    return x_hat + b


def _empty_passthrough(x: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    # An empty batch has no statistics. torch returns a fresh tensor that stays connected to
    # weight and bias in the autograd graph (their gradients are then zero).
    out = x.clone()
    if weight is not None:
        out = out * weight.select(0, 0)
    if bias is not None:
        out = out + bias.select(0, 0)
    return out


@torch.no_grad()
def _update_running(running: Tensor | None, batch_value: Tensor, momentum: float) -> None:
    """running = (1 - momentum) * running + momentum * batch_value (torch's convention)."""
    if running is not None:
        running.mul_(1.0 - momentum).add_(batch_value.to(running.dtype), alpha=momentum)


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization over every dim except the channel dim 1."""
    if training:
        _verify_batch_size(input.size(), input.size())
    channels = input.size(1)
    _check_per_channel("running_mean", running_mean, channels)
    _check_per_channel("running_var", running_var, channels)
    _check_per_channel("weight", weight, channels)
    _check_per_channel("bias", bias, channels)
    if input.numel() == 0:
        return _empty_passthrough(input, weight, bias)

    if training:
        reduce_dims = [0] + list(range(2, input.dim()))
        x_hat, mean, var = _standardize(input, reduce_dims, eps)
        n = input.numel() // channels
        _update_running(running_mean, mean.flatten(), momentum)
        _update_running(running_var, var.flatten() * (n / (n - 1)), momentum)
    else:
        assert running_mean is not None and running_var is not None  # eval mode reads the running statistics
        mean = _channel_view(running_mean, input.dim())
        x_hat = (input - mean) * _channel_view(torch.rsqrt(running_var + eps), input.dim())
    # Elementwise ops keep any input layout; torch's kernel writes channels_last or contiguous.
    return _in_layout(_affine(x_hat, weight, bias), _torch_layout(input))


def instance_norm(
    input: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize each (sample, channel) plane on its own statistics.

    When running buffers are given and input statistics are used, they move towards the
    batch average of the per-instance mean and unbiased variance.
    """
    if use_input_stats:
        _verify_spatial_size(input.size())
    # torch views the input as one (1, N*C, ...) batch, so its output is always contiguous.
    input = input.contiguous()
    channels = input.size(1)
    _check_per_channel("weight", weight, channels)
    _check_per_channel("bias", bias, channels)
    if input.numel() == 0:
        # torch repeats the affine parameters once per sample, so an empty batch with affine
        # parameters fails there (IndexError) exactly as it does here.
        n = input.size(0)
        with torch.no_grad():
            # ... and averages the running statistics over zero samples, which gives NaN.
            for running in (running_mean, running_var):
                if running is not None:
                    running.copy_(running.repeat(n).view(n, channels).mean(0))
        return _empty_passthrough(
            input, None if weight is None else weight.repeat(n), None if bias is None else bias.repeat(n)
        )
    if not use_input_stats:
        _check_per_channel("running_mean", running_mean, channels)
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)

    spatial = list(range(2, input.dim()))
    x_hat, mean, var = _standardize(input, spatial, eps)
    n = math.prod(input.shape[2:])
    if running_mean is not None:
        _update_running(running_mean, mean.mean(0).flatten(), momentum)
    if running_var is not None:
        _update_running(running_var, (var * (n / (n - 1))).mean(0).flatten(), momentum)
    return _affine(x_hat, weight, bias)


def layer_norm(
    input: Tensor,
    normalized_shape: Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize each sample over its trailing `normalized_shape` dims."""
    shape = list(normalized_shape)
    # torch normalizes a contiguous copy and returns a contiguous tensor whatever the input's layout.
    input = input.contiguous()
    if list(input.shape[input.dim() - len(shape):]) != shape or input.dim() < len(shape):
        expected = ", ".join(["*"] + [str(s) for s in shape])
        raise RuntimeError(
            f"Given normalized_shape={shape}, expected input with shape [{expected}], "
            f"but got input of size{list(input.shape)}"
        )
    if input.numel() == 0:
        y = input.clone()
    else:
        y = _standardize(input, list(range(input.dim() - len(shape), input.dim())), eps)[0]
    # The affine parameters have exactly the normalized shape, so they broadcast from the right.
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Split the channels into `num_groups` groups and normalize each (sample, group)."""
    if input.dim() < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.dim()}")
    n, channels = input.shape[0], input.shape[1]
    size = [n * channels // num_groups, num_groups] + list(input.shape[2:])
    _verify_batch_size(size, size)
    if channels % num_groups != 0:
        raise RuntimeError(
            "Expected number of channels in input to be divisible by num_groups, "
            f"but got input of shape {list(input.shape)} and num_groups={num_groups}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.numel() != channels:
            raise RuntimeError(
                f"Expected {name} to be a vector of size equal to the number of channels in input, "
                f"but got {name} of shape {list(t.shape)} and input of shape {list(input.shape)}"
            )
    if input.numel() == 0:
        return _empty_passthrough(input, weight, bias)

    channels_last = input.dim() in (4, 5) and not input.is_contiguous() and input.movedim(1, -1).is_contiguous()
    if channels_last and channels // num_groups >= 16:
        # channels_last: the channels are innermost, so view the input as
        # (N, positions, G, C/G) and reduce over positions and the channels of a group. No copy,
        # and the result keeps the channels_last layout like torch's kernel output. (With few
        # channels per group the strided reduction is slower than the copies below.)
        channels_inner = input.movedim(1, -1)
        grouped = channels_inner.reshape(n, -1, num_groups, channels // num_groups)
        x_hat = _standardize(grouped, [1, 3], eps)[0].reshape(channels_inner.shape).movedim(-1, 1)
    else:
        # Each group's channels and positions are one row of an (N, G, -1) view.
        x_hat = _standardize(input.reshape(n, num_groups, -1), [2], eps)[0].reshape(input.shape)
        if channels_last:  # the reshape copied to contiguous; torch's output stays channels_last
            x_hat = x_hat.movedim(1, -1).contiguous().movedim(-1, 1)
    return _affine(x_hat, weight, bias)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the survivors by 1 / (1 - p).

    The mask is drawn like torch's CPU kernel draws it (bernoulli(1 - p) on a tensor shaped like
    the input), so under the same seed the result is the same tensor.
    """
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if p == 0.0 or not training or input.numel() == 0:
        return input
    if p == 1.0:
        keep = torch.zeros((), dtype=input.dtype, device=input.device)
    else:
        keep = torch.empty_like(input).bernoulli_(1.0 - p).div_(1.0 - p)
    return input.mul_(keep) if inplace else input * keep
