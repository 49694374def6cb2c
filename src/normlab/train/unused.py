"""No option silently ignored: a value a new run would not use is refused in one line.

Each rule names a field, when the field has no effect (`idle`, on the config as resolved: the
model's own defaults filled in) and what to use instead. A field counts as set when it differs
from its default (`momentum` has no default value: None means 0.9 where momentum is used, so
`--optimizer sgd --momentum 0.9` is refused too). Options a model does not take at all (--depth
for lenet, --act for a logistic regression, unknown keyword arguments) are refused by
models/registry.check_model_options, where the model is built.

Checked for new runs (normlab.train, `normlab train`, the sweeps and claims through them); a saved
config.json is not checked again when a run is loaded or resumed, since runs written before a
rule existed must still load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from ..config import FIELDS, TrainConfig, field_default
from ..errors import ConfigError
from ..nn.factory import BATCH_NORM_KINDS as BATCH_NORMS
from ..nn.factory import ONE_IMPL

MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")
ADAM_FAMILY = ("adam", "adamw", "nadam")
NO_EPS = ("sgd", "momentum", "nesterov", "lbfgs")


def _norm_kind(cfg: TrainConfig):
    return cfg.norm.split(":")[0] if isinstance(cfg.norm, str) else None  # None: a callable (the user's own)


def _decays(cfg: TrainConfig) -> bool:
    """Whether the lr schedule decays by lr_gamma at least once within the run's epochs."""
    if cfg.schedule == "step":
        return cfg.lr_step < cfg.epochs
    return cfg.schedule == "multistep" and any(m < cfg.epochs for m in cfg.milestones)


def _dropout_anywhere(cfg: TrainConfig) -> bool:
    return bool(cfg.dropout) or bool(cfg.hidden_dropout)


def _takes_norm(cfg: TrainConfig) -> bool:
    from ..models.registry import get_spec

    return get_spec(cfg.model).takes_norm


@dataclass(frozen=True)
class Rule:
    field: str
    idle: Callable[[TrainConfig], bool]     # True where the field has no effect
    why: Callable[[TrainConfig], str]       # why, and what to use instead


RULES = (
    Rule("momentum", lambda c: c.optimizer not in MOMENTUM_OPTIMIZERS and not (c.optimizer == "sgd" and c.momentum == 0),
         lambda c: f"optimizer {c.optimizer} does not use it (only momentum and nesterov do); use --optimizer "
                   f"momentum for SGD with momentum, or drop --momentum"),
    Rule("beta1", lambda c: c.optimizer not in ADAM_FAMILY,
         lambda c: f"optimizer {c.optimizer} does not use it (adam, adamw and nadam do); drop --beta1"),
    Rule("beta2", lambda c: c.optimizer not in (*ADAM_FAMILY, "adadelta"),
         lambda c: f"optimizer {c.optimizer} does not use it (adam, adamw, nadam and adadelta do); drop --beta2"),
    Rule("eps", lambda c: c.optimizer in NO_EPS,
         lambda c: f"optimizer {c.optimizer} has no epsilon (the adaptive optimizers do); drop --eps"),
    Rule("lr_step", lambda c: c.schedule != "step" or c.lr_step >= c.epochs,
         lambda c: (f"only the step schedule uses it, the schedule is {c.schedule}; add --schedule step or drop it"
                    if c.schedule != "step" else f"its first decay would come after the last of {c.epochs} epochs; "
                    f"give a --lr-step below --epochs")),
    Rule("lr_gamma", lambda c: not _decays(c),
         lambda c: f"the schedule ({c.schedule}) never decays within the {c.epochs} epochs (the step schedule "
                   f"decays every --lr-step epochs, multistep at its --milestones); add those, or drop it"),
    Rule("milestones", lambda c: c.schedule != "multistep" or not _decays(c),
         lambda c: (f"only the multistep schedule uses them, the schedule is {c.schedule}; add --schedule multistep "
                    f"or drop them" if c.schedule != "multistep" else
                    f"every milestone is at or after the last of {c.epochs} epochs; give milestones below --epochs")),
    Rule("clip_mode", lambda c: c.clip_grad is None,
         lambda c: "it says what --clip-grad bounds, and no --clip-grad is given; add --clip-grad X or drop it"),
    Rule("l1_mode", lambda c: c.l1 == 0,
         lambda c: "it says how --l1 acts, and no --l1 is given; add --l1 X or drop it"),
    Rule("decay_norm_bias", lambda c: c.weight_decay == 0 and c.l2 == 0,
         lambda c: "it exempts biases and norm parameters from weight decay and the L2 penalty, and there is "
                   "neither; add --weight-decay or --l2, or drop it"),
    Rule("bn_eps", lambda c: _norm_kind(c) not in (*BATCH_NORMS, None),
         lambda c: f"only batch norm (bn, gbn, brn, noisy-bn) uses it, the norm is {c.norm}; drop --bn-eps or use "
                   f"--norm bn"),
    Rule("bn_momentum", lambda c: _norm_kind(c) not in (*BATCH_NORMS, None),
         lambda c: f"only batch norm (bn, gbn, brn, noisy-bn) uses it, the norm is {c.norm}; drop --bn-momentum or use "
                   f"--norm bn"),
    Rule("norm_impl", lambda c: _norm_kind(c) in ("none", *ONE_IMPL) or not _takes_norm(c),
         lambda c: (f"norm {c.norm} has one implementation (nn/newer_norms.py, tested against its reference); "
                    f"drop --norm-impl" if _norm_kind(c) in ONE_IMPL else
                    f"model {c.model} with norm {c.norm} has no norm layer to implement; drop --norm-impl or give "
                    f"a --norm")),
    Rule("fc_norm", lambda c: _norm_kind(c) == "none" and bool(c.fc_norm),
         lambda c: "with --norm none there is no norm to place after the Linear layers; drop it or give a --norm"),
    Rule("dropout_mode", lambda c: not _dropout_anywhere(c),
         lambda c: "the run has no dropout layer to scale; add --dropout or --hidden-dropout, or drop it"),
    Rule("val_every", lambda c: not c.val_split or c.epochs == 1,
         lambda c: ("there is no validation split to evaluate; add --val-split or drop it" if not c.val_split else
                    "with one epoch the split is evaluated once, after it, whatever N is; drop it")),
    Rule("dist_backend", lambda c: "WORLD_SIZE" not in os.environ,
         lambda c: "it is used under torchrun only (several processes); start the run with torchrun or drop it"),
    Rule("dist_timeout", lambda c: "WORLD_SIZE" not in os.environ,
         lambda c: "it is used under torchrun only (several processes); start the run with torchrun or drop it"),
)
RULED = {r.field for r in RULES}


def is_set(given: TrainConfig, name: str) -> bool:
    """Whether a field was given a value other than its default."""
    f = FIELDS[name]
    default = field_default(f)
    return getattr(given, name) != default


def refuse_unused(given: TrainConfig, resolved: TrainConfig) -> None:
    """Raise ConfigError naming the first option of `given` (a config as made by make_config) that
    the run would not use (judged on `resolved`, the config with the model's defaults), why, and
    what to use instead."""
    for rule in RULES:
        if is_set(given, rule.field) and rule.idle(resolved):
            flag = "--" + rule.field.replace("_", "-")
            value = getattr(given, rule.field)
            shown = f"{flag} {value}" if not isinstance(value, bool) else (flag if value else f"--no-{flag[2:]}")
            raise ConfigError(f"{rule.field}: {shown} would not be used: {rule.why(resolved)}")
