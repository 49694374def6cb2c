"""What a new user meets in the first hour: install hints that work from a clone."""

import sys

import pytest
import torch

from normlab.errors import ConfigError


def test_onnx_hint_names_packages_that_install_from_a_clone_too(monkeypatch):
    from normlab import export

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.raises(ConfigError) as e:
        export._onnx_bytes(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    assert str(e.value) == ('ONNX export needs the onnx package: pip install onnx onnxruntime '
                            '(the [onnx] extra; from a clone: pip install -e ".[onnx]")')


def test_help_says_each_default_once():
    from normlab.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    helps = [a.help for a in subparsers.choices["train"]._actions if a.help]
    assert helps and all(h.count("default:") <= 1 for h in helps), [h for h in helps if h.count("default:") > 1]
    norm = next(a.help for a in subparsers.choices["train"]._actions if "--norm" in a.option_strings)
    assert norm.endswith("(default: the model's own)") or "default: the model's own" in norm


def test_runs_without_out_get_new_folders_and_runs_latest_follows(tmp_path, monkeypatch):
    import os

    import normlab

    monkeypatch.chdir(tmp_path)
    cfg = {"dataset": "digits", "model": "mlp", "epochs": 1, "progress": False}
    first = normlab.train(dict(cfg), log=lambda *a: None)
    second = normlab.train(dict(cfg, seed=1), log=lambda *a: None)
    assert first.run_dir != second.run_dir  # in the same second too: the second gets a -2 suffix
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink() and os.readlink(latest) == second.run_dir.name
    assert normlab.evaluate_run("runs/latest")["test_acc"] == second.summary["final_test_acc"]
    # an explicit --out does not move the link
    normlab.train(dict(cfg, out=str(tmp_path / "runs" / "mine")), log=lambda *a: None)
    assert os.readlink(latest) == second.run_dir.name


def test_an_interrupted_out_folder_is_refused_with_the_resume_command(tmp_path):
    import normlab

    out = tmp_path / "cut"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(ConfigError) as e:
        normlab.train({"dataset": "digits", "model": "mlp", "out": str(out)}, log=lambda *a: None)
    assert str(e.value) == (f"out: {str(out)!r} holds an interrupted run; continue it with "
                            f"`normlab train --resume {out}` or choose another --out (nothing there was changed)")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
