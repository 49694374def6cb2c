"""Per-layer activation and gradient statistics of one forward/backward pass.

This is the instrument behind the tutorial's 100-layer MLP experiment: push one batch through
the network, and for each weighted layer (Linear/Conv) record what its block hands on (the output
of the activation that follows it, or its own output when none does): mean, std, the fraction of
values near zero, NaN and inf counts; then back-propagate a cross-entropy loss and record the
norm of each layer's weight gradient.

The pass runs on a deep copy of the model, so the caller's model keeps its train/eval mode, its
BatchNorm running statistics and its .grad fields exactly as they were.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn as tnn
import torch.nn.functional as F

from ..api import load
from ..data.loader import Normalize, channel_stats
from ..data.sources import get_source, load_dataset
from ..errors import ConfigError
from ..models.registry import create_model, get_spec
from ..nn.init import check_init
from . import figures
from .layer_table import parse_shape  # noqa: F401  (re-exported: `activations.parse_shape`)

WEIGHTED = (tnn.Linear, tnn.Conv1d, tnn.Conv2d, tnn.Conv3d)
ACTIVATIONS = (tnn.ReLU, tnn.Sigmoid, tnn.Tanh, tnn.GELU, tnn.SiLU, tnn.LeakyReLU, tnn.ELU, tnn.ReLU6,
               tnn.Softplus, tnn.Hardswish, tnn.Mish)
# |x| below this counts as "near zero": a dead ReLU unit or a vanished signal.
NEAR_ZERO = 1e-3


@dataclass
class LayerStats:
    index: int          # 1-based depth of the weighted layer
    name: str           # module path of the weighted layer, e.g. features.4
    kind: str           # Linear, Conv2d, ...
    mean: float
    std: float
    near_zero: float    # fraction of |x| < NEAR_ZERO among the finite values
    nan: int
    inf: int
    numel: int
    grad_norm: float    # L2 norm of the weight gradient (nan when it is not finite)


@dataclass
class StatsReport:
    layers: list[LayerStats]
    input_desc: str
    mode: str           # "train" or "eval": the mode the pass ran in
    loss: float

    def to_dict(self) -> dict:
        return {"input": self.input_desc, "mode": self.mode, "loss": self.loss,
                "layers": [asdict(r) for r in self.layers]}


def tensor_stats(x: torch.Tensor, near_zero: float = NEAR_ZERO) -> dict:
    """Mean/std/near-zero fraction over the finite values, plus NaN and inf counts."""
    x = x.detach().float()
    nan = int(torch.isnan(x).sum())
    inf = int(torch.isinf(x).sum())
    fin = x[torch.isfinite(x)].double()
    if fin.numel() == 0:
        mean = std = frac = math.nan
    else:
        mean = float(fin.mean())
        std = float(fin.std(unbiased=False))
        frac = float((fin.abs() < near_zero).double().mean())
    return {"mean": mean, "std": std, "near_zero": frac, "nan": nan, "inf": inf, "numel": x.numel()}


def activation_stats(model: tnn.Module, x: torch.Tensor, y: Optional[torch.Tensor] = None,
                     mode: Optional[str] = None, near_zero: float = NEAR_ZERO,
                     input_desc: str = "") -> StatsReport:
    """Statistics per weighted layer for one batch `x` (labels `y`; random labels if None).

    mode: "train" (BatchNorm uses batch statistics, as in the tutorial), "eval", or None to keep
    the model's current mode. The caller's model is never modified.
    """
    if mode not in (None, "train", "eval"):
        raise ConfigError(f"mode must be train, eval or None, got {mode!r}")
    work = copy.deepcopy(model)
    if mode is not None:
        work.train(mode == "train")
    ran_mode = "train" if work.training else "eval"
    work.zero_grad(set_to_none=True)

    weighted = [(n, m) for n, m in work.named_modules() if isinstance(m, WEIGHTED)]
    if not weighted:
        raise ConfigError("the model has no Linear or Conv layers to take statistics of")
    order: list[str] = []        # weighted layers in the order they fire
    block_out: dict[str, dict] = {}
    current = {"name": None}

    def on_weighted(name):
        def hook(mod, inp, out):
            current["name"] = name
            order.append(name)
            block_out[name] = tensor_stats(out, near_zero)
        return hook

    def on_act(mod, inp, out):
        # Computed now, before a later in-place op can change the tensor; the activation's
        # output replaces the raw layer output as what this block passes on.
        if current["name"] is not None:
            block_out[current["name"]] = tensor_stats(out, near_zero)

    handles = [m.register_forward_hook(on_weighted(n)) for n, m in weighted]
    handles += [m.register_forward_hook(on_act) for m in work.modules() if isinstance(m, ACTIVATIONS)]
    try:
        out = work(x)
    finally:
        for h in handles:
            h.remove()
    if out.dim() != 2:
        raise ConfigError(f"expected (N, classes) logits from the model, got shape {tuple(out.shape)}")
    if y is None:
        y = torch.randint(0, out.shape[1], (out.shape[0],), generator=torch.Generator().manual_seed(0))
    loss = F.cross_entropy(out, y.to(out.device))
    loss.backward()

    mods = dict(weighted)
    layers = []
    for i, name in enumerate(dict.fromkeys(order), 1):  # a layer used twice is reported once
        g = mods[name].weight.grad
        gn = float(g.detach().double().norm()) if g is not None else math.nan
        layers.append(LayerStats(i, name, type(mods[name]).__name__, grad_norm=gn, **block_out[name]))
    return StatsReport(layers, input_desc, ran_mode, float(loss.detach()))


def dataset_batch(name: str, shape: Sequence[int], n: int, seed: int = 0, data_dir=None,
                  normalize: Optional[dict] = None):
    """n training images of dataset `name`, standardized per channel (the trainer's transform),
    and their labels; the dataset's image shape must equal `shape`."""

    data = load_dataset(name, data_dir=data_dir)
    if tuple(data.shape) != tuple(shape):
        raise ConfigError(f"dataset {name!r} has images {'x'.join(map(str, data.shape))}, the model expects "
                          f"{'x'.join(map(str, shape))}; use --data normal or a matching --input")
    norm = Normalize.from_dict(normalize) if normalize else Normalize(*channel_stats(data.train_x))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train_y), generator=g)[:n]
    return norm(data.train_x[idx]), data.train_y[idx]


def normal_batch(shape: Sequence[int], n: int, seed: Optional[int] = 0):
    """n standard-normal inputs: from their own generator seeded `seed`, or, with seed=None,
    from torch's global stream where it stands (after a model built from the same seed, as the
    tutorials' scripts draw `inputs = torch.randn(...)` after `net = MLP(...)`)."""
    g = None if seed is None else torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g), None


def model_stats(model_name: str, init: str = "default", norm: Optional[str] = None, act: Optional[str] = None,
                depth: Optional[int] = None, width: Optional[int] = None, input_shape=None,
                data: str = "auto", batch: int = 256, seed: int = 0, mode: str = "train",
                bias: Optional[bool] = None, head: Optional[bool] = None) -> StatsReport:
    """Build a fresh model (seeded) and take its statistics on a batch.

    data: a dataset name, "normal" (standard normal input), or "auto" (mnist5k when the input is
    1x28x28, standard normal otherwise). Standard-normal input is drawn from the seeded stream
    right after the model (and its init), as seed 004's script draws it, so that `mlp` with
    depth=100, width=256, bias=False, head=False, input 256 and seed 1 is its experiment exactly.
    bias/head: the mlp's hidden biases and classifier (see models/mlp.py).
    """

    spec = get_spec(model_name)
    check_init(init)
    if input_shape:
        shape = tuple(input_shape)
    elif data not in ("auto", "normal"):
        shape = tuple(get_source(data).shape)  # a named dataset brings its own image shape
    else:
        shape = spec.default_input
    kw: dict[str, Any] = {k: v for k, v in (("depth", depth), ("width", width), ("bias", bias), ("head", head))
                          if v is not None}
    unknown = [k for k in kw if k not in spec.defaults]
    if unknown:
        raise ConfigError(f"{', '.join('--' + k for k in unknown)}: model {model_name!r} has no such option "
                          f"(it takes: {', '.join(sorted(spec.defaults)) or 'none'})")
    if data == "auto":
        data = "mnist5k" if shape == (1, 28, 28) else "normal"
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=10, in_channels=shape[0], input_size=shape[1:],
                         norm=norm, act=act, init=init, **kw)
    if data == "normal":
        x, y = normal_batch(shape, batch, seed=None)  # the stream torch.manual_seed(seed) began
        desc = f"{batch} standard-normal inputs {'x'.join(map(str, shape))}"
    else:
        get_source(data)
        x, y = dataset_batch(data, shape, batch, seed)
        desc = f"{batch} {data} training images, standardized per channel"
    return activation_stats(model, x, y, mode=mode, input_desc=desc)


def run_stats(run_dir, batch: int = 256, seed: int = 0, mode: str = "eval") -> StatsReport:
    """Statistics of a trained run on a batch of its own training data, transformed as in training."""

    r = load(run_dir)
    x, y = dataset_batch(r.config.dataset, r.input_shape, batch, seed, r.config.data_dir, r.inputs.normalize)
    return activation_stats(r.model, x, y, mode=mode,
                            input_desc=f"{batch} {r.config.dataset} training images, as preprocessed in training")


def _num(v: float, width: int = 10) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return f"{str(v):>{width}}"
    return f"{v:>{width}.3g}"


def format_table(rep: StatsReport) -> str:
    head = f"{'layer':>5}  {'name':<18} {'mean':>10} {'std':>10} {'near0':>6} {'nan':>7} {'inf':>7} {'grad norm':>10}"
    lines = [f"input: {rep.input_desc}; pass in {rep.mode} mode; loss {rep.loss:.4g}", head, "-" * len(head)]
    for r in rep.layers:
        lines.append(f"{r.index:>5}  {r.name[:18]:<18} {_num(r.mean)} {_num(r.std)} {r.near_zero:>6.2f} "
                     f"{r.nan:>7} {r.inf:>7} {_num(r.grad_norm)}")
    return "\n".join(lines)


def plot_stats(reports: dict, path) -> None:
    """std of the activations and weight-gradient norm against depth, one line per report, log
    scale; written as PATH (150 dpi PNG) and an SVG beside it. Where a curve stops being finite
    (NaN or inf: an exploding net), a cross marks the last finite layer and the legend names the
    first layer that is not; a zero std (nothing left to draw on a log axis) is a gap."""

    fig, (a1, a2) = figures.new_figure(1, 2, (11, 4.2))
    for i, (label, rep) in enumerate(reports.items()):
        d = [r.index for r in rep.layers]
        st = figures.style(i)
        for ax, vals in ((a1, [r.std for r in rep.layers]), (a2, [r.grad_norm for r in rep.layers])):
            stop = figures.first_nonfinite(vals)
            shown = [v if math.isfinite(v) and v > 0 else math.nan for v in vals]
            text = label if stop is None else f"{label} (not finite from layer {d[stop]})"
            ax.plot(d, shown, label=text, lw=1.5, ms=4, markevery=max(1, len(d) // 12), **st)
            last = next((k for k in range(len(shown[:stop]) - 1, -1, -1) if math.isfinite(shown[k])), None)
            if stop is not None and last is not None:
                ax.plot([d[last]], [shown[last]], marker="X", ms=11, color=st["color"], mec="black", ls="none")
    a1.set_ylabel("activation std (log scale)"), a2.set_ylabel("weight-gradient norm (log scale)")
    for a in (a1, a2):
        a.set_yscale("log")
        a.set_xlabel("layer (depth)")
        from matplotlib.ticker import MaxNLocator

        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    figures.save(fig, Path(path))
