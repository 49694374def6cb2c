"""One optimizer step: forward under autocast, the loss with its penalties, backward, the
update, the post-step constraints (L1 proximal step, max-norm) and the schedule's step.
(The weights' moving average, --ema, is a hook: train/hooks.py EMAHook.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import RegularizationConfig
from ..device import autocast
from . import regularize


class Step:
    """One optimizer step with the config's loss terms and post-step constraints.

    `reg` is the config's regularization section (a whole TrainConfig also serves);
    `precision` and `channels_last` come from its runtime section."""

    def __init__(self, model, optimizer, scheduler, reg: RegularizationConfig, forward=None, *,
                 precision: str = "fp32", channels_last: bool = False):
        self.model, self.optimizer, self.scheduler, self.cfg = model, optimizer, scheduler, reg
        self.channels_last = channels_last
        # `is None`, not `or`: a torch.compile'd module proxies len() and raises in a truth test
        self.forward = model if forward is None else forward  # a compiled view of the model, when asked for
        self.penalized = regularize.penalized_params(model, reg)
        device = next(model.parameters()).device
        self.autocast = lambda cache=True: autocast(device, precision, cache)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
        # (fp16 with L-BFGS, whose closure loss scaling does not fit, is refused by train/resolve.py)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def prepare(self, xb):
        """The batch in the model's memory format."""
        if self.channels_last and xb.dim() == 4:
            return xb.contiguous(memory_format=torch.channels_last)
        return xb

    def __call__(self, xb, yb):
        xb = self.prepare(xb)
        if isinstance(self.optimizer, torch.optim.LBFGS):
            return self._closure_step(xb, yb)
        out, loss, total = self.losses(xb, yb)
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.optimizer.param_groups[0]["lr"]
        (self.scaler.scale(total) if self.scaler is not None else total).backward()
        self.finish_update(lr)
        return out, loss

    def losses(self, xb, yb, cache: bool = True):
        """(logits, the batch's loss, the loss with its penalties). `cache=False` while a CUDA
        graph is recorded: autocast's cache of cast weights must not outlive the recording."""
        with self.autocast(cache):
            out = self.forward(xb).float()
        loss = F.cross_entropy(out, yb, label_smoothing=self.cfg.label_smoothing)
        total = loss + regularize.l2_penalty(self.penalized, self.cfg.l2) if self.cfg.l2 else loss
        if self.cfg.l1 and self.cfg.l1_mode == "penalty":
            total = total + regularize.l1_penalty(self.penalized, self.cfg.l1)
        return out, loss, total

    def finish_update(self, lr):
        """After backward: clipping, the update (through the loss scaler for fp16) and the
        constraints that follow it."""
        cfg = self.cfg
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if cfg.clip_grad:
            regularize.clip_gradients(self.model, cfg.clip_grad, cfg.clip_mode)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self._constraints(lr)

    def _closure_step(self, xb, yb):
        """L-BFGS re-evaluates the loss during its line search, so it takes the whole forward and
        backward pass as a closure; the step reports the first evaluation (the batch's loss before
        the step, as the other optimizers do)."""
        cfg, first = self.cfg, []

        def closure():
            self.optimizer.zero_grad(set_to_none=True)
            out, loss, total = self.losses(xb, yb)
            total.backward()
            if cfg.clip_grad:
                regularize.clip_gradients(self.model, cfg.clip_grad, cfg.clip_mode)
            if not first:
                first.append((out.detach(), loss.detach()))
            return total

        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step(closure)
        self._constraints(lr)
        return first[0]

    def _constraints(self, lr):
        """What follows the update: the L1 proximal step at the lr the update used, max-norm,
        and the schedule's step."""
        cfg = self.cfg
        if cfg.l1 and cfg.l1_mode == "proximal":
            regularize.l1_proximal(self.penalized, cfg.l1, lr)
        if cfg.max_norm:
            regularize.apply_max_norm(self.model, cfg.max_norm)
        self.scheduler.step()
