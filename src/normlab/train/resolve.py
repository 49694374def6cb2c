"""A config as given, resolved into the config a run records, with every cross-field check in one
place.

`make_config` (config.py) merges the sources, coerces types and checks each field's range;
`resolve` is the one step after it that the command line, the Python API (`normlab.train`) and
the experiment runner all call for a new run, so what one refuses the others refuse:

  names        every name is one its registry lists (model, dataset, optimizer, schedule, norm,
               activation, init)
  defaults     the model's own lr, norm, activation, dropout and memory format; momentum 0.9
               where a momentum optimizer gets none
  unused       an option the run would not use is refused, saying why (train/unused.py)
  combinations options that cannot work together (fp16 without CUDA, fp16 with L-BFGS, early
               stopping without a validation split)

A resumed run's saved config is resolved (`resolve_config`: names and defaults) but not refused
again, so runs written before a rule existed still resume; what a resume may change is
config.resume_changes.
"""

from __future__ import annotations

from ..config import TrainConfig
from ..data import sources
from ..device import resolve_device
from ..errors import ConfigError
from ..models.from_config import with_model_defaults
from ..models.registry import get_spec
from ..nn import factory
from ..nn import init as init_mod
from . import optim, schedule
from .unused import refuse_unused


def resolve(cfg: TrainConfig) -> TrainConfig:
    """The config a new run records: names checked, defaults filled, unused options and
    impossible combinations refused (ConfigError, one line naming the option and the fix)."""
    resolved = resolve_config(cfg)
    refuse_unused(cfg, resolved)
    check_combinations(resolved)
    return resolved


def check_names(cfg: TrainConfig) -> None:
    """Every name in the config must be one its registry lists (the message lists them)."""
    get_spec(cfg.model)
    sources.get_source(cfg.dataset)
    optim.check_optimizer(cfg.optimizer)
    schedule.check_schedule(cfg.schedule)
    # A callable (from Python) is the user's own layer; "custom:..." is one recorded in a
    # config.json, which create_model refuses with the fix (pass the callable again).
    if isinstance(cfg.norm, str) and not cfg.norm.startswith("custom:"):
        factory.check_norm_kind(cfg.norm)
    if isinstance(cfg.act, str) and not cfg.act.startswith("custom:"):
        factory.check_act(cfg.act)
    init_mod.check_init(cfg.init)


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """The config with its names checked and the model's defaults (lr, norm, act, dropout)
    filled in; resolving a resolved config changes nothing."""
    check_names(cfg)
    cfg = with_model_defaults(cfg)
    if cfg.momentum is None and cfg.optimizer in ("momentum", "nesterov"):
        cfg = cfg.replace(momentum=optim.DEFAULT_MOMENTUM)  # recorded in config.json as what ran
    return cfg


def check_combinations(cfg: TrainConfig) -> None:
    """Options that are each valid but cannot work together."""
    if cfg.precision == "fp16":
        if resolve_device(cfg.device).type != "cuda":
            raise ConfigError("precision: fp16 autocast needs a CUDA device; on CPU use --precision bf16 or fp32")
        if cfg.optimizer == "lbfgs":
            raise ConfigError("optimizer lbfgs: fp16 loss scaling does not fit its closure; use --precision fp32 or bf16")
    if cfg.patience and not cfg.val_split:
        raise ConfigError("patience: early stopping needs a validation split (--val-split 0.1); "
                          "stopping on the test set would leak it into model selection")
    if cfg.patience and cfg.val_every > 1:
        raise ConfigError(f"val_every: early stopping (--patience) checks the validation split after every epoch, "
                          f"not every {cfg.val_every}; drop --val-every or --patience")
