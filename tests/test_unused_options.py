"""No option silently ignored (issue 26): every config field is walked against the contexts where it
has no effect, measured on what is built (the optimizer's hyperparameters, the lr schedule, the
model), and a value that would not be used must be refused in one line, from Python and the CLI."""

import pytest
import torch

import normlab
from normlab.cli import main
from normlab.config import FIELDS, make_config
from normlab.errors import ConfigError
from normlab.models import create_model
from normlab.train import optim, schedule
from normlab.models.from_config import MODEL_OPTIONS
from normlab.train.resolve import resolve_config
from normlab.train.resolve import resolve
from normlab.train.unused import RULED

# Fields used in every context a config can describe (or refused elsewhere, named here): each
# new field must be ruled (train/unused.py) or listed here with the reason.
ALWAYS_USED = {
    "recipe": "fills the options not given", "dataset": "always read", "data_dir": "where data is kept",
    "data_mirror": "tried before the publishers' when a file is downloaded", "val_split": "the split",
    "augment": "applied to every batch", "preprocess": "fitted on every run", "classes": "filters the data",
    "resize": "applied when loading", "strict": "read by the image decoder", "stream": "read by imagefolder",
    "model": "always", "norm": "refused by create_model for a model without norm layers",
    "act": "refused by create_model for a model with its own nonlinearity",
    "dropout": "every model has a dropout before its classifier", "init": "every model's weights",
    "epochs": "always", "batch_size": "always", "eval_batch_size": "always", "optimizer": "always",
    "lr": "every optimizer", "weight_decay": "every optimizer (lbfgs refuses it itself)",
    "schedule": "always", "warmup": "before any schedule", "patience": "refused without --val-split",
    "ema": "always", "tta": "at test time", "l1": "always", "l2": "always", "max_norm": "always",
    "label_smoothing": "always", "clip_grad": "always", "seed": "always", "device": "always",
    "threads": "always", "precision": "always", "channels_last": "the memory format of model and inputs",
    "compile": "always", "cuda_graphs": "refused off CUDA (train/graphs.py)", "deterministic": "always",
    "tensorboard": "always", "sync_bn": "refused outside torchrun", "out": "always", "progress": "always",
    "log_every": "always", "curves": "always (curves.png at the end)",
    "batch_classes": "builds every training batch (refused where it cannot, data/skewed.py)",
}


def test_every_field_is_ruled_or_always_used():
    assert set(FIELDS) == RULED | set(ALWAYS_USED) | set(MODEL_OPTIONS)
    assert not RULED & set(ALWAYS_USED)


def refused(cfg: dict) -> bool:
    try:
        resolve(make_config(cfg))
    except ConfigError as e:
        assert "\n" not in str(e) and "would not be used" in str(e)
        return True
    return False


# ---------------------------------------------------------------- optimizer fields
CHANGED = {"momentum": 0.5, "beta1": 0.8, "beta2": 0.95, "eps": 1e-7}


def built_optimizer(cfg: dict) -> dict:
    model = torch.nn.Linear(3, 2)
    opt = optim.make_optimizer(model, resolve_config(make_config(cfg)).section("optim"))
    return {k: v for k, v in opt.param_groups[0].items() if k != "params"}


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_optimizer_fields_are_refused_exactly_where_they_change_nothing(name):
    base = {"model": "mlp", "dataset": "digits", "optimizer": name}
    for field, value in CHANGED.items():
        effect = built_optimizer(base) != built_optimizer({**base, field: value})
        assert refused({**base, field: value}) == (not effect), (name, field)
    assert not refused(base)


def test_sgd_with_momentum_is_refused_in_one_line_from_python_and_the_cli(tmp_path, capsys):
    # plain sgd with --momentum 0.9 trained plain SGD and recorded 0.9: now refused
    msg = ("momentum: --momentum 0.9 would not be used: optimizer sgd does not use it (only momentum and nesterov "
           "do); use --optimizer momentum for SGD with momentum, or drop --momentum")
    with pytest.raises(ConfigError) as e:
        normlab.train({"dataset": "digits", "model": "mlp", "optimizer": "sgd", "momentum": 0.9,
                       "out": str(tmp_path / "py")})
    assert str(e.value) == msg
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--optimizer", "sgd", "--momentum", "0.9",
                 "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(msg) and len(err.splitlines()) == 1
    assert not (tmp_path / "py").exists() and not (tmp_path / "cli").exists()
    # momentum 0 is what plain sgd uses; the momentum optimizers default to 0.9, recorded as such
    assert not refused({"optimizer": "sgd", "momentum": 0.0})
    assert resolve_config(make_config({"optimizer": "momentum"})).momentum == 0.9
    assert resolve_config(make_config({"optimizer": "adam"})).momentum is None


# ---------------------------------------------------------------- schedule fields
def lr_trajectory(cfg: dict) -> list:
    sec = resolve_config(make_config({"epochs": 6, **cfg})).section("optim")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = schedule.make_scheduler(opt, sec, 5)
    out = []
    for _ in range(30):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("name", sorted(schedule.NAMES))
def test_schedule_fields_are_refused_exactly_where_they_change_nothing(name):
    base = {"schedule": name, "optimizer": "sgd"}
    for field, value in (("lr_step", 2.0), ("lr_gamma", 0.5), ("milestones", [1, 3])):
        effect = lr_trajectory(base) != lr_trajectory({**base, field: value})
        assert refused({**base, field: value}) == (not effect), (name, field)


# ---------------------------------------------------------------- model fields
def built_model(cfg: dict) -> str:
    r = resolve_config(make_config({"dataset": "digits", **cfg}))
    torch.manual_seed(0)
    kw = {k: getattr(r, k) for k in MODEL_OPTIONS if getattr(r, k) is not None}
    m = create_model(r.model, input_size=(28, 28), norm=r.norm, act=r.act, dropout=r.dropout, norm_impl=r.norm_impl,
                     bn_eps=r.bn_eps, bn_momentum=r.bn_momentum, dropout_mode=r.dropout_mode, **kw)
    return repr(m) + repr([(type(x).__name__, vars(x).get("eps"), vars(x).get("momentum")) for x in m.modules()])


MODEL_CHANGES = {"bn_eps": 1e-3, "bn_momentum": 0.2, "norm_impl": "reference", "fc_norm": False,
                 "dropout_mode": "non-inverted"}


@pytest.mark.parametrize("model,norm", [("lenet-bn", n) for n in ("bn", "gn", "ln", "none")]
                         + [("mlp", "bn"), ("mlp", "none"), ("logistic", None)]
                         + [("digitnet", n) for n in ("gbn:8", "brn", "rms", "evob0", "ws")])
def test_model_fields_are_refused_exactly_where_they_change_nothing(model, norm):
    base = {"model": model, **({"norm": norm} if norm else {})}
    for field, value in MODEL_CHANGES.items():
        if field == "fc_norm" and not model.startswith("lenet"):
            continue  # not an option of these models: create_model refuses it (below)
        if field == "fc_norm" and norm == "none":  # off is what norm none means: accepted, as on is not
            assert not refused({**base, "fc_norm": False}) and refused({**base, "fc_norm": True})
            continue
        effect = built_model(base) != built_model({**base, field: value})
        assert refused({**base, field: value}) == (not effect), (model, norm, field)
    for extra in ({"dropout": 0.3}, {"hidden_dropout": 0.3}):
        if model != "logistic" or "dropout" in extra:
            assert not refused({**base, **extra, "dropout_mode": "non-inverted"})


def test_clip_mode_and_decay_exemptions_need_what_they_modify():
    assert refused({"clip_mode": "value"}) and not refused({"clip_mode": "value", "clip_grad": 1.0})
    assert refused({"decay_norm_bias": False})
    other = "penalty"  # the default is proximal
    assert refused({"l1_mode": other}) and not refused({"l1_mode": other, "l1": 1e-4})
    assert not refused({"decay_norm_bias": False, "weight_decay": 0.1})
    assert not refused({"decay_norm_bias": False, "l2": 0.1})
    assert refused({"dist_backend": "gloo"}) and refused({"dist_timeout": 5.0})


def test_model_options_a_model_does_not_take_are_refused():
    with pytest.raises(ConfigError) as e:
        create_model("lenet-bn", nosuch=1)
    assert str(e.value) == "nosuch: model 'lenet-bn' has no such option (it takes: fc_norm, hidden_dropout)"
    with pytest.raises(ConfigError, match=r"^block_order, bogus: model 'resnet-simple' has no such option"):
        create_model("resnet-simple", block_order="full-preact", bogus=1)
    with pytest.raises(ConfigError, match="^norm: model 'logistic' has no norm layers"):
        create_model("logistic", norm="bn")
    with pytest.raises(ConfigError, match="^act: model 'gru-rows' brings its own nonlinearity"):
        create_model("gru-rows", act="relu")
    for fc_norm in (True, None):  # on, or left at its default: refused, never a silent Identity
        with pytest.raises(ConfigError) as e:
            create_model("lenet-bn", norm="in", fc_norm=fc_norm)
        assert str(e.value) == ("fc_norm: norm in normalizes over spatial positions and has no form for the (N, C) "
                                "features of lenet-bn's Linear layers; add --no-fc-norm (norms after the "
                                "convolutions only) or use another norm")
    with pytest.raises(ConfigError, match="^depth: model 'lenet-bn' has no such option"):
        normlab.train({"model": "lenet-bn", "depth": 3, "dataset": "synthetic"})


# ---------------------------------------------------------------- resume
def test_the_api_refuses_what_resume_on_the_command_line_refuses(tmp_path, capsys):
    run = tmp_path / "r"
    normlab.train({"dataset": "digits", "model": "logistic", "epochs": 1, "progress": False, "out": str(run)},
                  log=lambda *a: None)
    msg = ("--resume continues a run with its own config; only --device, --epochs, --progress, --threads may be "
           "given (got --lr)")
    with pytest.raises(ConfigError) as e:
        normlab.train({"lr": 0.1}, resume=run, log=lambda *a: None)
    assert str(e.value) == msg
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert capsys.readouterr().err.strip().endswith(msg)
    with pytest.raises(ConfigError, match=r"\(got --lr\)$"):
        normlab.train(normlab.TrainConfig(lr=0.1), resume=run, log=lambda *a: None)
    res = normlab.train({"epochs": 2, "progress": False}, resume=run, log=lambda *a: None)
    assert len(res.metrics) == 2  # a resume option still goes through
