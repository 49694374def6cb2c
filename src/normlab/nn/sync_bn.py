"""BatchNorm whose batch statistics span every process of a torch.distributed group.

With data-parallel training each process sees only its share of the batch; plain BatchNorm
then normalizes with per-process statistics. SyncBatchNorm all-reduces the per-channel sums
so every process normalizes with the mean and variance of the whole global batch, exactly as
one process seeing the whole batch would. Unlike torch.nn.SyncBatchNorm it runs on CPU with
the gloo backend as well (it only uses all_reduce).

Outside training, or when torch.distributed is not initialized (or has one process), it is
the ordinary reference BatchNorm.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import norm as ref
from .functional import _affine, _channel_view, _update_running

__all__ = ["SyncBatchNorm"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward sums the gradients over processes too.

    torch.distributed.nn.functional.all_reduce did this and is deprecated (a FutureWarning per
    call); this uses only the supported dist.all_reduce.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor, group) -> Tensor:
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def all_reduce(tensor: Tensor, group=None) -> Tensor:
    return _AllReduceSum.apply(tensor, group)


def _world(process_group) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)


class SyncBatchNorm(ref._BatchNorm):
    """BatchNorm over (N, C, *) input with statistics synchronized by all_reduce."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group=None,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or _world(self.process_group) == 1:
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)

        channels = input.size(1)
        reduce_dims = [0] + list(range(2, input.dim()))
        # One all_reduce for the sums and the element count, a second for the squared
        # deviations from the global mean (more accurate than summing squares). all_reduce
        # here is differentiable: its backward sums the gradients over processes.
        count = torch.full((1,), input.numel() // channels, dtype=input.dtype, device=input.device)
        totals = all_reduce(torch.cat([input.sum(reduce_dims), count]), group=self.process_group)
        n = int(totals[-1].item())
        if n <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got {n} over all processes"
            )
        mean = totals[:-1] / n
        centered = input - _channel_view(mean, input.dim())
        var = all_reduce((centered * centered).sum(reduce_dims), group=self.process_group) / n
        if self.track_running_stats:
            _update_running(self.running_mean, mean.detach(), factor)
            _update_running(self.running_var, var.detach() * (n / (n - 1)), factor)
        return _affine(centered * _channel_view(torch.rsqrt(var + self.eps), input.dim()), self.weight, self.bias)

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group=None) -> nn.Module:
        """Replace every BatchNorm*d in `module` (torch's or normlab's) by a SyncBatchNorm.

        Parameters, running statistics and training mode are carried over.
        """
        from .surgery import _BATCH

        if isinstance(module, _BATCH) and not isinstance(module, cls):
            like = module.weight if module.weight is not None else module.running_mean
            new = cls(
                module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                process_group, device=None if like is None else like.device,
                dtype=None if like is None else like.dtype, bias=module.bias is not None or not module.affine,
            )
            new.load_state_dict(module.state_dict())
            return new.train(module.training)
        for name, child in list(module.named_children()):
            setattr(module, name, cls.convert_sync_batchnorm(child, process_group))
        return module
