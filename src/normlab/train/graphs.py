"""`--cuda-graphs`: the forward and backward pass recorded once as a CUDA graph and replayed.

A small net's GPU step is Python and kernel launches, not arithmetic (docs/gpu.md: lenet-bn
spends 50.9 ms of CPU per 10 steps against 4.2 ms of GPU). A CUDA graph replays the few hundred
kernels of forward + backward with one launch. The optimizer's update, gradient clipping, the
L1 step, max-norm and the schedule stay outside the graph: they are a handful of fused kernels,
and kept eager they read the learning rate and the loss scale each step as before.

How it keeps training the same as without graphs:
- the first `warmup` steps run eagerly, as usual (on a side stream, as CUDA graphs require), so
  they are real steps, and lazy state (the optimizer's moments, cuDNN's choices) exists before
  the capture;
- the capture itself computes nothing: the batch it was made with is then replayed like any other;
- the gradients live in the graph's memory: a replay overwrites them, so they are never set to
  None again; a batch of another shape (the epoch's last, smaller one) runs eagerly and
  accumulates into those same tensors after zeroing them.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .step import Step


def check_supported(step: Step, device: torch.device, *, compiled: bool, distributed: bool) -> None:
    """One-line refusals for the combinations a graph cannot hold, before any step runs."""
    if device.type != "cuda":
        raise ConfigError(f"--cuda-graphs needs a CUDA device, and this run is on {device}; "
                          "drop --cuda-graphs (or --no-cuda-graphs over a recipe)")
    if compiled:
        raise ConfigError("--cuda-graphs and --compile both take over the step; use one "
                          "(torch.compile's own graphs: mode reduce-overhead)")
    if distributed:
        raise ConfigError("--cuda-graphs does not combine with torchrun yet (DDP's gradient hooks run "
                          "collectives); drop --cuda-graphs for multi-process runs")
    if isinstance(step.optimizer, torch.optim.LBFGS):
        raise ConfigError("--cuda-graphs: L-BFGS re-evaluates the loss in a closure; use another "
                          "optimizer or drop --cuda-graphs")


class GraphedStep:
    """A Step whose forward + backward replays from a CUDA graph after `warmup` eager steps."""

    def __init__(self, step: Step, warmup: int = 3):
        self.step, self.warmup = step, warmup
        self.graph = None
        self.done = 0
        self.side = None  # one side stream for all warm-up steps, so autograd's nodes keep one stream

    def __getattr__(self, name):  # the trainer and hooks see the wrapped Step's parts
        return getattr(self.step, name)

    def __call__(self, xb, yb):
        s = self.step
        xb = s.prepare(xb)
        if self.graph is None:
            if self.done < self.warmup:
                self.done += 1
                return self._eager_on_side_stream(xb, yb)
            self._capture(xb, yb)
        if xb.shape == self.x.shape and xb.stride() == self.x.stride():
            self.x.copy_(xb)
            self.y.copy_(yb)
            self.graph.replay()
            out, loss = self.out.clone(), self.loss.clone()
        else:  # another shape (an epoch's last batch) runs eagerly, into the graph's gradient tensors
            s.optimizer.zero_grad(set_to_none=False)
            out, loss = self._forward_backward(xb, yb)
        s.finish_update(s.optimizer.param_groups[0]["lr"])
        return out, loss

    def _eager_on_side_stream(self, xb, yb):
        if self.side is None:
            self.side = torch.cuda.Stream()
        side, main = self.side, torch.cuda.current_stream()
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out, loss = self.step(xb, yb)
        # detached: a loss held by the caller would keep this step's autograd graph alive
        out, loss = out.detach(), loss.detach()
        main.wait_stream(side)
        for t in (out, loss):  # made on the side stream, read on the main one: keep their memory till then
            t.record_stream(main)
        return out, loss

    def _capture(self, xb, yb):
        s = self.step
        self.x, self.y = xb.clone(), yb.clone()
        s.optimizer.zero_grad(set_to_none=True)  # backward in the graph then allocates the grads
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self.graph):
                self.out, self.loss = self._forward_backward(self.x, self.y, cache=False)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"--cuda-graphs: this model cannot be recorded as a CUDA graph ({first}); "
                              "run without --cuda-graphs") from None

    def _forward_backward(self, xb, yb, cache=True):
        s = self.step
        out, loss, total = s.losses(xb, yb, cache)
        (s.scaler.scale(total) if s.scaler is not None else total).backward()
        return out.detach(), loss.detach()
