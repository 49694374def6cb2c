"""A run is a config.

`TrainConfig` is the one place where every choice of a training run is declared: its type, its
default, its help text and its check. The command line (`normlab train --help`), the Python API
(`normlab.train(TrainConfig(...))` or a dict) and experiment files (YAML/JSON) are all spellings
of this dataclass, so adding a field here adds the option everywhere.

Stored and spelled flat (the command line, YAML/JSON files and a run's config.json), a config is
read in sections: `cfg.section("optim")` is an `OptimConfig` holding only the fields the
optimizer and schedule read, so each subsystem's signature says what it depends on (SECTIONS).
This module knows types, ranges and coercion only; names (model, dataset, optimizer, ...) are
checked against their registries when a run is built (train/build.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union, get_args, get_origin, get_type_hints, overload

from .errors import ConfigError, unknown_name


def opt(default, help: str, check: Optional[Callable[[Any], Optional[str]]] = None,
        choices=None, short: Optional[str] = None, cli: bool = True):
    """A config field with its help text and an optional check returning an error or None."""
    meta = {"help": help, "check": check, "choices": choices, "short": short, "cli": cli}
    if isinstance(default, (list, dict)):
        return field(default_factory=partial(copy.copy, default), metadata=meta)
    return field(default=default, metadata=meta)


def field_default(f: dataclasses.Field) -> Any:
    """A config field's default value (a fresh copy for a list or dict)."""
    return f.default if f.default_factory is dataclasses.MISSING else f.default_factory()


def positive(x):
    return None if x > 0 else "must be > 0"


def at_least_one(x):
    return None if x >= 1 else "must be >= 1"


def non_negative(x):
    return None if x >= 0 else "must be >= 0"


def probability(x):
    return None if 0 <= x < 1 else "must be in [0, 1)"


def _seed_range(x):
    # torch's generators take 64 bits; a larger seed would fail deep inside torch.manual_seed
    return None if 0 <= x < 2 ** 63 else "must be from 0 to 2**63 - 1"


def optional(check):
    return lambda x: None if x is None else check(x)


def _check_augment(spec):
    from .data import augment

    augment.parse(spec)  # raises ConfigError naming the bad op


def _check_preprocess(spec):
    from .data import preprocess

    preprocess.parse(spec)


def _check_recipe(name):
    from .recipes import RECIPES

    if name not in RECIPES:
        raise unknown_name("recipe", name, RECIPES)
    return None


def _check_tta(spec):
    from .data import tta

    tta.parse(spec)  # raises ConfigError naming the bad view


def parse_widths(text) -> tuple[int, ...]:
    """'300,100' -> (300, 100): the mlp's hidden widths, one per layer."""
    try:
        out = tuple(int(p) for p in str(text).split(","))
    except ValueError:
        out = ()
    if not out or min(out) < 1:
        raise ConfigError(f"widths: must be hidden-layer widths separated by commas, e.g. 300,100, got {text!r}")
    return out


def _check_widths(text):
    parse_widths(text)  # raises ConfigError naming the bad value


def _check_resize(spec):
    parts = str(spec).lower().split("x")
    ok = len(parts) in (1, 2) and all(p.strip().isdigit() and int(p) > 0 for p in parts)
    return None if ok else "must be a size like 32x32 or 32"


@dataclass
class TrainConfig:
    recipe: Optional[str] = opt(None, "a tuned set of defaults for the options you do not give, e.g. fast "
                                "(see docs/recipes.md); options given explicitly still win",
                                check=optional(_check_recipe))
    # --- what to train on
    dataset: str = opt("mnist5k", "dataset name (see `normlab datasets`)")
    data_dir: Optional[str] = opt(None, "data root: where datasets are kept and downloaded to (default: "
                                  "$NORMLAB_DATA, else the user cache folder; see docs/data.md)")
    data_mirror: Optional[str] = opt(None, "base URL(s) of a dataset mirror, tried before the publishers' "
                                     "(also $NORMLAB_DATA_MIRROR; see docs/data.md)")
    val_split: float = opt(0.0, "fraction of the training split held out (stratified, seeded) for "
                           "validation; 0 for none", check=probability)
    val_every: int = opt(1, "evaluate the validation split every N epochs and after the last (a large split "
                         "evaluated each epoch can cost more than training on the rest); the best epoch is "
                         "chosen among the evaluated ones", check=at_least_one)
    augment: str = opt("", "batched on-device augmentation, e.g. crop:4,flip (ops: crop:P, translate:T, "
                       "flip, cutout:S, resize:HxW, pad:P, randcrop:S; see docs/data.md)", check=_check_augment)
    preprocess: str = opt("channel", "input preprocessing fitted on the training split: channel, scale, "
                          "center, standardize, minmax, robust, maxabs, pca:D, pca-whiten:D, zca[:EPS], zca-patch:K[:EPS]",
                          check=_check_preprocess)
    classes: Optional[str] = opt(None, "keep only these classes, by name or index, e.g. 3,8 (relabelled 0, 1, ... "
                                 "in this order); two classes for binary logistic regression")
    resize: Optional[str] = opt(None, "resize every image to HxW (or S for SxS) when loading", check=optional(_check_resize))
    strict: bool = opt(False, "stop at the first image that cannot be decoded instead of skipping it")
    stream: str = opt("auto", "imagefolder: stream batches from disk through DataLoader workers (on), "
                      "load into memory (off), or stream only above 2 GiB decoded (auto)",
                      choices=("auto", "on", "off"))
    # --- the model
    model: str = opt("lenet-bn", "model name (see `normlab models`)")
    norm: Optional[str] = opt(None, "normalization: bn, gn (Wu & He's default groups), gn:G (G groups), ln "
                              "(GroupNorm(1, C)), ln-chw (LayerNorm over C,H,W, element-wise affine), in (affine=False, "
                              "torch's default), in-affine, none; "
                              "after the tutorials (docs/norms.md): rms, ln2d, frn, evob0, evos0[:G], brn, gbn[:V], "
                              "lrn, ws, gn[:G]+ws, wn, noisy-bn (BN with noise after it in training, an experiment's layer) "
                              "(default: the model's own); from Python also a callable "
                              "num_channels -> nn.Module")
    norm_impl: str = opt("native", "norm implementation: native (torch kernels) or reference "
                         "(normlab's tensor-op layers) or tutorial (seed 000's from-scratch BatchNorm)",
                         choices=("native", "reference", "tutorial"))
    bn_eps: Optional[float] = opt(None, "batch norm's eps (default: torch's 1e-5; googlenet's 1e-3)",
                                  check=optional(positive))
    bn_momentum: Optional[float] = opt(None, "batch norm's running-average momentum in torch's convention, the "
                                       "weight of the new batch (default: 0.1)", check=optional(probability))
    act: Optional[str] = opt(None, "activation (default: the model's own), e.g. relu, sigmoid, tanh")
    dropout: Optional[float] = opt(None, "dropout probability before the classifier (default: the model's own, "
                                         "0.2 for googlenet, 0.5 for nin, 0 for the others)",
                                   check=optional(probability))
    depth: Optional[int] = opt(None, "where the model has that knob: hidden layers (mlp), convs per stage "
                               "(digitnet)",
                               check=optional(at_least_one))
    width: Optional[int] = opt(None, "where the model has that knob: hidden width (mlp), first stage's "
                               "channels (digitnet)",
                               check=optional(at_least_one))
    widths: Optional[str] = opt(None, "where the model has that knob: one width per hidden layer, e.g. 300,100 "
                                "(mlp; seed 002's Batch_Net(in, 300, 100, out)), instead of --depth and --width",
                                check=optional(_check_widths))
    bias: Optional[bool] = opt(None, "where the model has that knob: the hidden Linear layers' biases (mlp; "
                               "--no-bias as seed 004's 100-layer net, --bias also before a norm layer, as torch's "
                               "nn.Linear) (default: on where no norm layer follows)")
    hidden_dropout: Optional[float] = opt(None, "dropout after every hidden layer's activation (mlp, lenet, lenet-bn, "
                                          "maxout-mlp), as the tutorials place it", check=optional(probability))
    fc_norm: Optional[bool] = opt(None, "lenet, lenet-bn: a norm after the hidden Linear layers too (default: on, "
                                  "but off for in, which has no form for (N, C) features); --no-fc-norm puts "
                                  "the norms after the convolutions only")
    dropout_mode: str = opt("inverted", "inverted (scale kept units by 1/(1-p) in training, torch's) or "
                            "non-inverted (no scaling in training, multiply by 1-p at test, seed 002's)",
                            choices=("inverted", "non-inverted"))
    block_order: Optional[str] = opt(None, "CIFAR resnetN: where norm and act sit in a block (He et al. 2016 "
                                     "fig. 4): original, bn-after-add, relu-before-add, relu-preact, full-preact")
    shortcut_op: Optional[str] = opt(None, "CIFAR resnetN: what sits on each identity shortcut (He et al. 2016 "
                                     "fig. 2): identity (the paper's clean shortcut), scale (x 0.5), gate (exclusive "
                                     "gating), conv1x1, dropout (p 0.5)")
    init: str = opt("default", "weight initialization scheme (default: torch's)")
    # --- optimization
    epochs: int = opt(10, "number of passes over the training set", check=at_least_one)
    batch_size: int = opt(64, "training batch size", check=at_least_one)
    batch_classes: Optional[int] = opt(None, "class-skewed (non-i.i.d.) training batches: each batch holds "
                                       "batch-size/K examples of each of only K classes (Ioffe 2017's non-i.i.d. "
                                       "minibatches; docs/data.md) (default: a uniform shuffle)",
                                       check=optional(at_least_one))
    eval_batch_size: int = opt(1000, "evaluation batch size", check=at_least_one)
    optimizer: str = opt("adam", "optimizer: sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam, "
                         "adamw, nadam, lbfgs (full-step L-BFGS with a strong-Wolfe line search per batch)")
    lr: Optional[float] = opt(None, "learning rate (default: the model's, 0.01 for most; see `normlab models`)",
                              check=optional(positive))
    momentum: Optional[float] = opt(None, "momentum of the momentum and nesterov optimizers (default 0.9; plain "
                                    "sgd has none)", check=optional(probability))
    beta1: float = opt(0.9, "first-moment decay of adam/adamw/nadam", check=probability)
    beta2: float = opt(0.999, "second-moment decay of adam/adamw/nadam", check=probability)
    eps: float = opt(1e-8, "epsilon of the adaptive optimizers", check=positive)
    weight_decay: float = opt(0.0, "weight decay inside the optimizer (coupled L2; decoupled for adamw)",
                              check=non_negative)
    decay_norm_bias: bool = opt(True, "also decay/penalize biases and norm parameters "
                                "(--no-decay-norm-bias excludes them)")
    schedule: str = opt("linear", "lr schedule: constant, linear (to 0), cosine, step, multistep, onecycle")
    warmup: float = opt(0.0, "epochs of linear lr warm-up before the schedule", check=non_negative)
    lr_step: float = opt(30.0, "epochs between decays of the step schedule", check=positive)
    lr_gamma: float = opt(0.1, "decay factor of the step and multistep schedules", check=positive)
    milestones: list = opt([], "epochs at which the multistep schedule decays, e.g. 5,8")
    patience: Optional[int] = opt(None, "early stopping: stop after this many epochs without validation "
                                  "improvement (needs --val-split)", check=optional(at_least_one))
    ema: Optional[float] = opt(None, "evaluate and save an exponential moving average of the weights with "
                               "this decay, e.g. 0.999", check=optional(probability))
    tta: str = opt("", "test-time augmentation: average predictions over views of each image: shift (the "
                   "image and its 1-pixel shifts), flip (and its mirror), or shift,flip", check=_check_tta)
    # --- regularization
    l1: float = opt(0.0, "L1 strength: a proximal soft-threshold step after each update (exact zeros), or "
                    "with --l1-mode penalty the tutorial's l1 * sum|w| added to the loss", check=non_negative)
    l1_mode: str = opt("proximal", "how --l1 acts: proximal (a soft-threshold step after each update, which "
                       "sets weights exactly to zero) or penalty (l1 * sum|w| added to the loss, as seed 004 "
                       "defines L1; its subgradient makes weights hover around zero)",
                       choices=("proximal", "penalty"))
    l2: float = opt(0.0, "L2 penalty (l2/2)*sum(w^2) added to the loss", check=non_negative)
    max_norm: Optional[float] = opt(None, "cap on each unit's incoming weight norm, enforced after each step",
                                    check=optional(positive))
    label_smoothing: float = opt(0.0, "label smoothing of the cross-entropy", check=probability)
    clip_grad: Optional[float] = opt(None, "clip gradients to this norm (or value, see --clip-mode)",
                                     check=optional(positive))
    clip_mode: str = opt("norm", "what --clip-grad bounds: norm or value", choices=("norm", "value"))
    # --- where and how
    seed: int = opt(0, "random seed for weights, data order and augmentation", check=_seed_range)
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps")
    threads: Optional[int] = opt(None, "CPU threads for torch (default: torch's choice)",
                                 check=optional(at_least_one))
    precision: str = opt("fp32", "autocast precision: fp32, bf16 (CPU or CUDA), fp16 (CUDA, with loss "
                         "scaling) or auto (bf16 on a CPU with AVX-512 BF16 or AMX and on a CUDA GPU that "
                         "has bf16, else fp32); norm layers run in fp32 under autocast",
                         choices=("fp32", "bf16", "fp16", "auto"))
    channels_last: Optional[bool] = opt(None, "NHWC memory format for model and inputs (default: the model's "
                                        "own: on for digitnet, googlenet-mini, densenet-d2l and the CIFAR "
                                        "ResNets, where it measured faster, unless --norm is gn or in)")
    compile: bool = opt(False, "torch.compile the model (slow first epoch, faster after, mainly on CUDA)")
    cuda_graphs: bool = opt(False, "CUDA only: replay each step's forward and backward from a CUDA graph "
                            "(fewer kernel launches; a fixed batch shape; docs/gpu.md)")
    deterministic: bool = opt(False, "deterministic kernels only (bit-identical reruns on CUDA; slower; "
                              "docs/training.md)")
    tensorboard: bool = opt(False, "also log metrics to RUN_DIR/tensorboard (needs the tensorboard package)")
    sync_bn: bool = opt(False, "under torchrun: synchronize BatchNorm statistics across processes")
    dist_backend: Optional[str] = opt(None, "under torchrun: process-group backend (default: nccl on CUDA, "
                                      "gloo on CPU)", choices=("gloo", "nccl", "mpi"))
    dist_timeout: Optional[float] = opt(None, "under torchrun: seconds a process waits for the others in a "
                                        "collective before it gives up with an error (default: torch's, "
                                        "30 minutes)", check=optional(positive))
    out: Optional[str] = opt(None, "run directory (default: runs/MODEL-DATASET-TIMESTAMP)")
    progress: bool = opt(True, "show a progress bar per epoch")
    curves: bool = opt(True, "write curves.png (loss and accuracy against epoch) at the end; --no-curves saves "
                       "about a second a run, which a sweep of hundreds of short runs notices (normlab leaderboard)")
    log_every: Optional[int] = opt(None, "also print the training loss every N steps (seed 001 prints every 100)",
                                   check=optional(at_least_one))

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        from .nn.factory import describe

        # A norm or act given from Python as a callable is recorded by name ("custom:...").
        d["norm"], d["act"] = describe(d["norm"]), describe(d["act"])
        return d

    @overload
    def section(self, name: Literal["data"]) -> DataConfig: ...
    @overload
    def section(self, name: Literal["model"]) -> ModelConfig: ...
    @overload
    def section(self, name: Literal["optim"]) -> OptimConfig: ...
    @overload
    def section(self, name: Literal["regularization"]) -> RegularizationConfig: ...
    @overload
    def section(self, name: Literal["runtime"]) -> RuntimeConfig: ...

    def section(self, name: str) -> Any:
        """The fields of section `name` (see SECTIONS) as a frozen `<Name>Config`."""
        if name not in SECTION_TYPES:
            raise unknown_name("config section", name, SECTION_TYPES)
        cls = SECTION_TYPES[name]
        return cls(**{f.name: getattr(self, f.name) for f in fields(cls)})


FIELDS = {f.name: f for f in fields(TrainConfig)}
# What may change when a run is resumed: how long, and how it is shown and where it runs.
RESUME_OPTIONS = ("epochs", "progress", "device", "threads")


def resume_changes(config) -> dict:
    """The options a resumed run takes from `config` (a dict of given options, a TrainConfig or
    None): RESUME_OPTIONS only. Any other option is refused, as `normlab train --resume` refuses
    it, since the run continues with its own config."""
    if config is None:
        return {}
    if isinstance(config, TrainConfig):
        defaults = TrainConfig()
        given = {f: getattr(config, f) for f in FIELDS if getattr(config, f) != getattr(defaults, f)}
    elif isinstance(config, dict):
        given = {normalize_key(k): v for k, v in config.items()}
    else:
        raise ConfigError(f"a config must be a mapping of option names to values, got {type(config).__name__}")
    bad = sorted(k for k in given if k not in RESUME_OPTIONS)
    if bad:
        raise ConfigError(f"--resume continues a run with its own config; only "
                          f"{', '.join('--' + k for k in sorted(RESUME_OPTIONS))} may be given "
                          f"(got {', '.join('--' + k.replace('_', '-') for k in bad)})")
    return given
_HINTS = get_type_hints(TrainConfig)

# Which fields each subsystem reads: a section is a frozen view of the flat config
# (`cfg.section("optim")`), so a subsystem's signature says what it depends on. A field may sit in
# several sections (the seed drives the data order, the initial weights and the run); `recipe` is
# in none: it only fills the others. tests/test_config_sections.py keeps each field's type equal
# to TrainConfig's.
class _Section:
    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DataConfig(_Section):
    """The data section of a TrainConfig."""

    dataset: str
    data_dir: Optional[str]
    data_mirror: Optional[str]
    val_split: float
    val_every: int
    augment: str
    preprocess: str
    classes: Optional[str]
    resize: Optional[str]
    strict: bool
    stream: str
    batch_size: int
    batch_classes: Optional[int]
    eval_batch_size: int
    tta: str
    seed: int


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The model section of a TrainConfig."""

    model: str
    norm: Optional[str]
    norm_impl: str
    bn_eps: Optional[float]
    bn_momentum: Optional[float]
    act: Optional[str]
    dropout: Optional[float]
    hidden_dropout: Optional[float]
    fc_norm: Optional[bool]
    dropout_mode: str
    block_order: Optional[str]
    shortcut_op: Optional[str]
    depth: Optional[int]
    width: Optional[int]
    widths: Optional[str]
    bias: Optional[bool]
    init: str
    seed: int


@dataclass(frozen=True)
class OptimConfig(_Section):
    """The optim section of a TrainConfig."""

    optimizer: str
    lr: Optional[float]
    momentum: Optional[float]
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decay_norm_bias: bool
    schedule: str
    warmup: float
    lr_step: float
    lr_gamma: float
    milestones: list
    epochs: int
    patience: Optional[int]


@dataclass(frozen=True)
class RegularizationConfig(_Section):
    """The regularization section of a TrainConfig."""

    l1: float
    l1_mode: str
    l2: float
    max_norm: Optional[float]
    label_smoothing: float
    clip_grad: Optional[float]
    clip_mode: str
    ema: Optional[float]
    decay_norm_bias: bool


@dataclass(frozen=True)
class RuntimeConfig(_Section):
    """The runtime section of a TrainConfig."""

    seed: int
    device: str
    threads: Optional[int]
    precision: str
    channels_last: Optional[bool]
    compile: bool
    cuda_graphs: bool
    deterministic: bool
    tensorboard: bool
    sync_bn: bool
    dist_backend: Optional[str]
    dist_timeout: Optional[float]
    out: Optional[str]
    progress: bool
    curves: bool
    log_every: Optional[int]


SECTION_TYPES: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig,
                                  "regularization": RegularizationConfig, "runtime": RuntimeConfig}
SECTIONS = {name: tuple(f.name for f in fields(cls)) for name, cls in SECTION_TYPES.items()}


def field_type(name: str):
    """The base type of a field (int, float, str, bool, list, dict), Optional stripped."""
    t = _HINTS[name]
    if get_origin(t) is Union:
        t = next(a for a in get_args(t) if a is not type(None))
    return get_origin(t) or t


def _coerce(name: str, value):
    """Convert a value from a file or a string to the field's type, or raise ConfigError."""
    if value is None:
        if get_origin(_HINTS[name]) is not Union:  # `epochs: null` in a file: not a value this option takes
            raise ConfigError(f"{name}: expected {field_type(name).__name__}, got null; give a value, or leave "
                              f"{name} out for its default")
        return None
    if name in ("norm", "act") and callable(value):
        return value  # from Python: the user's own layer, used as it is
    t = field_type(name)
    try:
        if t is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
                return bool(value)
            raise ValueError(value)  # 5 or a list is a typo, not a switch
        if isinstance(value, bool) and t in (int, float):
            raise ValueError(value)  # `epochs: true` in a file
        if t is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if t is float:
            return float(value)
        if t in (list, dict):
            if isinstance(value, str):
                text = value.strip()
                # "5,8" on the command line, or JSON
                value = json.loads(text if text[:1] in "[{" else f"[{text}]")
            if not isinstance(value, t):
                raise ValueError(value)
            return value
        return str(value)
    except (TypeError, ValueError, json.JSONDecodeError):
        raise ConfigError(f"{name}: expected {t.__name__}, got {value!r}") from None


def normalize_key(key: str) -> str:
    return str(key).strip().lstrip("-").replace("-", "_")


def make_config(*sources: Union[dict, TrainConfig, None]) -> TrainConfig:
    """Merge dicts (later ones win) over the defaults, coerce types and validate.

    Keys may be spelled with dashes as on the command line (`batch-size`) or underscores.
    """
    values: dict[str, Any] = {}
    for src in sources:
        if src is None:
            continue
        if isinstance(src, TrainConfig):
            src = dataclasses.asdict(src)  # not to_dict: a callable norm stays a callable here
        if not isinstance(src, dict):
            raise ConfigError(f"a config must be a mapping of option names to values, got {type(src).__name__}")
        for key, value in src.items():
            name = normalize_key(key)
            if name not in FIELDS:
                raise unknown_name("config key", key, FIELDS)
            values[name] = _coerce(name, value)
    if values.get("recipe") is not None:
        _check_recipe(values["recipe"])
        from .recipes import RECIPES

        # The recipe fills only what no source set, so an explicit option always wins.
        values = {**RECIPES[values["recipe"]]["options"], **values}
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Check every field's type and range before any work is done; the message names the field
    and the fix. Names (model, dataset, optimizer, ...) are checked against their registries
    when the run is resolved (train/resolve.py)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name}: must be a finite number, got {value}")
        choices = f.metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise unknown_name(f.name, value, choices)
        check = f.metadata.get("check")
        if check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(f"{f.name}: {problem}, got {value!r}")


def _parse_error(exc: Exception) -> str:
    """The parser's message in one line: what broke and where (PyYAML spreads it over several,
    with the offending text and a caret)."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split()) or type(exc).__name__


def load_config_file(path: Union[str, os.PathLike]) -> dict:
    """Read a YAML or JSON file of options; keys mirror the command-line options."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r} is a folder; give the path of a YAML or JSON file in it")
    try:  # a pipe too (--config <(...)): read as it comes
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                          f"save it as UTF-8 YAML or JSON") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {exc.strerror or exc}") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # the parser's own message says where the syntax broke
        raise ConfigError(f"config file {str(p)!r} could not be parsed: {_parse_error(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of option: value, "
                          f"got {type(data).__name__}")
    return data
