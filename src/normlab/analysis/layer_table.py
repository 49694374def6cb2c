"""A per-layer table of a model, in the spirit of torchinfo's `summary`.

One forward pass of a zero batch records, for every module call, the output shape, the module's
own parameters (recursive for containers), its multiply-adds and its norm type. The pass runs in
eval mode under no_grad, and every module's train/eval flag is restored afterwards, so the model
(and its BatchNorm running statistics) is left exactly as it was.

Counting rules (those of torchinfo for the layers that dominate):
- mult-adds of a Conv: out_elements * (in_channels / groups) * kernel_h * kernel_w, where
  out_elements = N * C_out * H_out * W_out; of a Linear: N * in_features * out_features (per
  position for >2-D inputs). Norms, activations and pooling count zero (their cost is linear in
  the activations and small next to a conv).
- activation memory: the bytes of every leaf module's output, as torchinfo's "Forward/backward
  pass size" (doubled, since the backward pass holds a gradient of the same size).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn as tnn

from ..api import load
from ..errors import ConfigError
from ..models import create_model, get_spec
from ..nn import kinds
from ..nn.surgery import FrozenBatchNorm


@dataclass
class Row:
    name: str
    type: str
    depth: int
    output_shape: tuple
    params: int
    mult_adds: int
    norm: str
    leaf: bool


@dataclass
class Summary:
    rows: list[Row]
    input_shape: tuple
    total_params: int
    trainable_params: int
    mult_adds: int
    activation_bytes: int  # forward outputs of leaf modules, one pass
    input_bytes: int
    param_bytes: int
    meta: dict = field(default_factory=dict)

    @property
    def forward_backward_bytes(self) -> int:
        return 2 * self.activation_bytes

    def to_dict(self) -> dict:
        d = asdict(self)
        d["forward_backward_bytes"] = self.forward_backward_bytes
        return d


def parse_shape(text: str) -> tuple[int, int, int]:
    """'1x28x28' -> (1, 28, 28)."""
    try:
        shape = tuple(int(p) for p in str(text).lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"input shape must be CxHxW with positive sizes, e.g. 1x28x28, got {text!r}")
    return shape


def norm_type(m: tnn.Module) -> str:
    """'bn', 'gn(G)', 'ln', 'in' for a norm layer (torch's or normlab's reference ones), else ''."""
    if isinstance(m, FrozenBatchNorm):
        return "bn"
    kind = kinds.family(m)
    if kind == "gn":
        g = getattr(m, "num_groups", None)
        return "ln" if g == 1 else f"gn({g})"
    return "bn" if kind == "bn-tutorial" else kind


def _mult_adds(m: tnn.Module, out) -> int:
    if not isinstance(out, torch.Tensor):
        return 0
    if isinstance(m, (tnn.Conv1d, tnn.Conv2d, tnn.Conv3d)):
        per_output = m.weight[0].numel()  # (in_channels / groups) * kernel elements
        return out.numel() * per_output
    if isinstance(m, tnn.Linear):
        return out.numel() * m.in_features
    return 0


def _shape(out) -> tuple:
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return tuple(out[0].shape)
    return ()


def summarize(model: tnn.Module, input_shape: Sequence[int], batch: int = 1,
              device: Optional[torch.device] = None) -> Summary:
    """Run one batch of zeros of shape (batch, *input_shape) through `model` and tabulate it."""
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    names = {m: n for n, m in model.named_modules()}
    rows: list[Row] = []
    stack: list[int] = []
    leaf_bytes = [0]

    def pre(m, _inp):
        name = names.get(m, "?")
        rows.append(Row(name or "(model)", type(m).__name__, name.count(".") + 1 if name else 0, (),
                        sum(p.numel() for p in m.parameters()), 0, norm_type(m),
                        not any(True for _ in m.children())))
        stack.append(len(rows) - 1)

    def post(m, _inp, out):
        row = rows[stack.pop()]
        row.output_shape = _shape(out)
        row.mult_adds = _mult_adds(m, out)
        if row.leaf and isinstance(out, torch.Tensor):
            leaf_bytes[0] += out.numel() * out.element_size()

    modes = {m: m.training for m in model.modules()}
    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    x = torch.zeros(batch, *input_shape, device=device)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    except RuntimeError as exc:
        raise ConfigError(f"input {'x'.join(map(str, input_shape))} does not fit this model: "
                          f"{str(exc).splitlines()[0]}; pass an --input the model accepts") from None
    finally:
        for h in handles:
            h.remove()
        for m, t in modes.items():
            m.training = t
    # Containers sum their children's mult-adds; count each leaf once.
    for i, row in enumerate(rows):
        if not row.leaf:
            j, total = i + 1, 0
            while j < len(rows) and rows[j].depth > row.depth:
                if rows[j].leaf:
                    total += rows[j].mult_adds
                j += 1
            row.mult_adds += total
    params = list(model.parameters())
    return Summary(
        rows=rows, input_shape=tuple(input_shape),
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        mult_adds=sum(r.mult_adds for r in rows if r.leaf),
        activation_bytes=leaf_bytes[0],
        input_bytes=x.numel() * x.element_size(),
        param_bytes=sum(p.numel() * p.element_size() for p in params))


def format_table(s: Summary, max_depth: int = 3) -> str:
    """torchinfo-style text: one line per module call up to `max_depth`, then the totals."""
    rows = [r for r in s.rows if 0 < r.depth <= max_depth]
    head = ("Layer (type)", "Output Shape", "Param #", "Mult-Adds", "Norm")
    cells = [("  " * (r.depth - 1) + f"{r.name.rsplit('.', 1)[-1]} ({r.type})",
              str(list(r.output_shape)), f"{r.params:,}" if r.params else "--",
              f"{r.mult_adds:,}" if r.mult_adds else "--", r.norm or "--") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    line = "=" * (sum(widths) + 2 * (len(widths) - 1))

    def fmt(c):
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths)))

    mb = 1e6
    out = [line, fmt(head), line, *(fmt(c) for c in cells), line,
           f"Total params: {s.total_params:,}",
           f"Trainable params: {s.trainable_params:,}",
           f"Non-trainable params: {s.total_params - s.trainable_params:,}",
           f"Total mult-adds (M): {s.mult_adds / mb:.2f}",
           line,
           f"Input size (MB): {s.input_bytes / mb:.2f}",
           f"Forward/backward pass size (MB): {s.forward_backward_bytes / mb:.2f}",
           f"Params size (MB): {s.param_bytes / mb:.2f}",
           f"Estimated Total Size (MB): {(s.input_bytes + s.forward_backward_bytes + s.param_bytes) / mb:.2f}",
           line]
    return "\n".join(out)


def inspect_model(name: str, input_shape: Optional[Sequence[int]] = None, num_classes: int = 10,
                  batch: int = 1, **model_kw) -> Summary:
    """Summary of a freshly built registered model; input_shape defaults to the model's own."""

    spec = get_spec(name)
    shape = tuple(input_shape) if input_shape else spec.default_input
    model = create_model(name, num_classes=num_classes, in_channels=shape[0], input_size=shape[1:], **model_kw)
    s = summarize(model, shape, batch)
    s.meta = {"model": name, "num_classes": num_classes}
    return s


def inspect_run(run_dir, batch: int = 1) -> Summary:
    """Summary of a trained run's model at the input shape it was trained on."""

    run = load(run_dir)
    s = summarize(run.model, run.input_shape, batch)
    s.meta = {"run_dir": str(run.run_dir), "model": run.config.model}
    return s


def count_params(model: tnn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["Row", "Summary", "count_params", "format_table", "inspect_model", "inspect_run", "norm_type",
           "parse_shape", "summarize"]
