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


def test_run_time_left_is_the_mean_epoch_time_times_the_epochs_to_go():
    from normlab.train.hooks import ProgressBar

    bar = ProgressBar(enabled=False)
    assert bar.run_left(1, 10, now=100.0) is None          # nothing measured yet
    assert bar.run_left(3, 10, now=120.0) == 20 / 2 * 8    # 2 epochs in 20 s; epochs 3..10 to go


def test_interrupt_clears_the_progress_bar_before_its_message(tmp_path):
    import normlab
    from normlab.train import hooks as H

    events = []

    class StopAtSecondStep(H.Hook):
        steps = 0

        def on_step_end(self, loop):
            self.steps += 1
            if self.steps == 2:
                loop.stop_event.set()

        def close(self, loop):
            events.append("close")

    with pytest.raises(KeyboardInterrupt):
        normlab.train({"dataset": "digits", "model": "mlp", "epochs": 2, "progress": False,
                       "out": str(tmp_path / "r")}, log=lambda msg: events.append(msg), hooks=[StopAtSecondStep()])
    said = next(i for i, e in enumerate(events) if "interrupted in epoch 1" in e)
    assert "close" in events[:said]


def test_an_extended_run_continues_on_the_longer_schedule_at_once(tmp_path):
    """Resuming a finished 2-epoch linear run with --epochs 4 trains epochs 3-4 exactly as a
    4-epoch run would from the same weights: lr = base * (1 - step / total) from the first step."""
    import normlab

    said = []
    cfg = {"dataset": "digits", "model": "mlp", "epochs": 2, "progress": False, "optimizer": "sgd", "lr": 0.1,
           "schedule": "linear", "out": str(tmp_path / "r")}
    normlab.train(cfg, log=lambda *a: None)
    more = normlab.train({"epochs": 4}, log=said.append, resume=tmp_path / "r")
    note = next(m for m in said if "re-planned" in m)
    assert note == ("normlab: the linear schedule is re-planned for 4 epochs (it was 2), as if the run had "
                    "started with --epochs 4: lr 0 -> 0.05")
    # the lr column is the lr at each epoch's first step: epoch 3 of 4 starts half-way down
    assert more.metrics[2]["lr"] == pytest.approx(0.1 * (1 - 2 / 4))


def test_lr_find_plot_goes_under_runs_by_default(tmp_path, monkeypatch):
    from normlab import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["lr-find", "--dataset", "digits", "--model", "mlp", "--steps", "20"]) == 0
    assert (tmp_path / "runs" / "lr_find.png").is_file() and not (tmp_path / "lr_find.png").exists()
