"""One resolve step (train/resolve.py) for the command line, the Python API and experiment files:
what one refuses, the others refuse, with the same one-line message."""

import pytest

import normlab
from normlab.cli import main
from normlab.config import make_config
from normlab.errors import ConfigError
from normlab.experiments.spec import parse_experiment
from normlab.train.resolve import resolve

BASE = {"dataset": "digits", "model": "mlp", "epochs": 1, "progress": False}
REFUSED = [
    ({"patience": 2}, "patience: early stopping needs a validation split (--val-split 0.1)"),
    ({"precision": "fp16", "device": "cpu"}, "precision: fp16 autocast needs a CUDA device"),
    ({"optimizer": "adam", "momentum": 0.9}, "momentum: --momentum 0.9 would not be used"),
    ({"norm": "bn", "norm_impl": "reference", "model": "logistic"}, "would not be used"),
    ({"optimizer": "adamm"}, "unknown optimizer 'adamm'"),
]


def cli_args(cfg: dict) -> list[str]:
    out = []
    for k, v in cfg.items():
        flag = "--" + k.replace("_", "-")
        out += ([flag] if v is True else [f"--no-{flag[2:]}"] if v is False else [flag, str(v)])
    return out


@pytest.mark.parametrize("options,message", REFUSED, ids=[m.split(":")[0] for _, m in REFUSED])
def test_the_api_the_cli_and_experiment_files_refuse_alike(options, message, tmp_path, capsys):
    cfg = dict(BASE, **options, out=str(tmp_path / "run"))
    with pytest.raises(ConfigError) as api:
        normlab.train(cfg, log=lambda *a: None)
    assert message in str(api.value) and "\n" not in str(api.value)
    assert main(["train", *cli_args(cfg)]) == 2
    assert capsys.readouterr().err.strip() == f"normlab train: error: {api.value}"
    with pytest.raises(ConfigError) as exp:
        parse_experiment({"base": {k: v for k, v in cfg.items() if k not in ("out", "progress")}, "seeds": 1})
    assert str(exp.value) == f"experiment: cell base: {api.value}"
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_resolving_is_idempotent_and_fills_the_models_defaults():
    r = resolve(make_config({"model": "lenet-bn", "optimizer": "momentum"}))
    assert (r.norm, r.act, r.momentum) == ("bn", "sigmoid", 0.9) and r.lr is not None
    assert resolve(r) == r


def test_a_resumed_run_takes_only_the_resume_options_from_the_api_as_from_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    normlab.train(dict(BASE, out=str(run)), log=lambda *a: None)
    with pytest.raises(ConfigError) as api:
        normlab.train({"lr": 0.1}, log=lambda *a: None, resume=run)
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert capsys.readouterr().err.strip() == f"normlab train: error: {api.value}"
    assert "--resume continues a run with its own config" in str(api.value)
