"""The walking skeleton: train -> eval -> predict, config rules, errors, determinism."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import normlab
from normlab import cli
from normlab.config import make_config
from normlab.data.sources import load_dataset, stratified_split
from normlab.errors import CheckpointError, ConfigError

TINY = dict(dataset="digits", model="mlp", epochs=2, batch_size=32, lr=0.01, progress=False)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits-mlp"
    return normlab.train(dict(TINY, out=str(out)), log=lambda *a: None)


def test_run_directory_contents(digits_run):
    d = digits_run.run_dir
    for name in ("config.json", "preprocess.json", "metrics.csv", "summary.json", "weights.safetensors",
                 "curves.png"):
        assert (d / name).is_file(), name
    header = (d / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_seconds",
                      "elapsed_seconds", "examples_per_s", "test_top5"]
    cfg = json.loads((d / "config.json").read_text())
    # fully resolved: the model's default norm/act and the run dir are written out
    assert cfg["norm"] == "none" and cfg["act"] == "relu" and cfg["out"] == str(d)
    s = json.loads((d / "summary.json").read_text())
    assert s["parameters"] == 64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    assert s["seed"] == 0 and s["versions"]["torch"] == torch.__version__
    assert s["final_test_acc"] > 0.85  # 2 epochs of an MLP on 8x8 digits


def test_eval_recomputes_summary_accuracy(digits_run):
    res = normlab.evaluate_run(digits_run.run_dir)
    assert res["test_acc"] == digits_run.summary["final_test_acc"]
    assert res["test_size"] == 359


def test_predict_images_any_size_and_colour(digits_run, tmp_path):
    data = load_dataset("digits")
    files = []
    for i, mode in enumerate(("L", "RGB")):
        img = data.test_x[i, 0].numpy()
        pil = Image.fromarray(img, "L").resize((64, 64), Image.NEAREST).convert(mode)
        p = tmp_path / f"digit{i}.{'png' if i == 0 else 'jpg'}"
        pil.save(p)
        files.append(str(p))
    preds = normlab.predict(digits_run.run_dir, files)
    assert [set(p) for p in preds] == [{"file", "class", "probability"}] * 2
    assert all(0.0 <= p["probability"] <= 1.0 for p in preds)
    # a 64x64 upscale resized back to 8x8 must give the class the model gives the original digit
    r = normlab.load(digits_run.run_dir)
    with torch.no_grad():
        direct = r.model(r.transform(data.test_x[:2])).argmax(1).tolist()
    assert [int(p["class"]) for p in preds] == direct


def test_cli_predict_json(digits_run, tmp_path, capsys):
    p = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(p)
    assert cli.main(["predict", str(digits_run.run_dir), str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["file"] == str(p) and out[0]["class"] in [str(i) for i in range(10)]


def test_predict_undecodable_image(digits_run, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert cli.main(["predict", str(digits_run.run_dir), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.png" in err and "could not be decoded" in err and "Traceback" not in err


def test_determinism_same_seed_same_metrics(tmp_path):
    a = normlab.train(dict(TINY, out=str(tmp_path / "a"), norm="bn"), log=lambda *x: None)
    b = normlab.train(dict(TINY, out=str(tmp_path / "b"), norm="bn"), log=lambda *x: None)
    strip = lambda rows: [{k: v for k, v in r.items() if "second" not in k and "per_s" not in k} for r in rows]
    assert strip(a.metrics) == strip(b.metrics)
    ca = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    cb = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    cols = ca[0].split(",")
    keep = [i for i, c in enumerate(cols) if "second" not in c and "per_s" not in c]
    assert [[r.split(",")[i] for i in keep] for r in ca] == [[r.split(",")[i] for i in keep] for r in cb]
    c = normlab.train(dict(TINY, out=str(tmp_path / "c"), norm="bn", seed=1), log=lambda *x: None)
    assert strip(c.metrics) != strip(a.metrics)


def test_stratified_split_fixed_and_balanced():
    y = np.repeat(np.arange(10), 500)
    tr, te = stratified_split(y, 0.2, 0)
    assert len(tr) == 4000 and len(te) == 1000
    assert np.bincount(y[te]).tolist() == [100] * 10
    assert not set(tr) & set(te)
    tr2, te2 = stratified_split(y, 0.2, 0)
    assert (te == te2).all()
    d = load_dataset("mnist5k")
    assert d.train_x.shape == (4000, 1, 28, 28) and d.test_x.dtype == torch.uint8
    assert d.test_y.bincount().tolist() == [100] * 10


# ---------------------------------------------------------------- config rules
def test_config_file_and_cli_override(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: mlp\ndataset: digits\nepochs: 7\nbatch-size: 16\nlr: 0.5\n")
    args = cli.build_parser().parse_args(["train", "--config", str(f), "--epochs", "3"])
    cfg = cli.config_from_args(args)
    assert (cfg.model, cfg.dataset, cfg.epochs, cfg.batch_size, cfg.lr) == ("mlp", "digits", 3, 16, 0.5)
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"model": "logistic", "lr": 0.1}))
    args = cli.build_parser().parse_args(["train", "--config", str(j), "--lr", "0.2", "--no-progress"])
    cfg = cli.config_from_args(args)
    assert (cfg.model, cfg.lr, cfg.progress) == ("logistic", 0.2, False)


@pytest.mark.parametrize("values, message", [
    ({"model": "lenet-nb"}, "unknown model 'lenet-nb'. Did you mean 'lenet-bn'? Valid choices:"),
    ({"dataset": "mnist5"}, "unknown dataset 'mnist5'. Did you mean 'mnist5k'?"),
    ({"optimizer": "adamm"}, "unknown optimizer 'adamm'. Did you mean 'adam'?"),
    ({"lr": 0}, "lr: must be > 0, got 0.0"),
    ({"lr": -1}, "lr: must be > 0, got -1.0"),
    ({"epochs": 0}, "epochs: must be >= 1, got 0"),
    ({"batch_size": 0}, "batch_size: must be >= 1, got 0"),
    ({"epochs": "ten"}, "epochs: expected int, got 'ten'"),
    ({"epochs": True}, "epochs: expected int, got True"),
    ({"lr": False}, "lr: expected float, got False"),
    ({"progress": 5}, "progress: expected bool, got 5"),
    ({"curves": [1]}, "curves: expected bool, got [1]"),
    ({"bach_size": 3}, "unknown config key 'bach_size'. Did you mean 'batch_size'?"),
])
def test_bad_values_fail_before_work(values, message):
    from normlab.train.resolve import resolve_config

    with pytest.raises(ConfigError) as e:
        resolve_config(make_config(values))  # types and ranges in make_config, names in resolve_config
    assert message in str(e.value)


def test_a_switch_takes_true_false_or_0_1():
    assert make_config({"progress": 0, "curves": 1}).progress is False
    assert make_config({"progress": 0, "curves": 1}).curves is True
    assert make_config({"progress": "off", "curves": True}).progress is False


def test_bad_config_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="could not be parsed"):
        cli.config_from_args(cli.build_parser().parse_args(["train", "--config", str(f)]))
    with pytest.raises(ConfigError, match="does not exist"):
        cli.config_from_args(cli.build_parser().parse_args(["train", "--config", str(tmp_path / "nope.yaml")]))
    with pytest.raises(ConfigError, match=r"is a folder; give the path of a YAML or JSON file in it$"):
        cli.config_from_args(cli.build_parser().parse_args(["train", "--config", str(tmp_path)]))


def test_a_config_can_come_through_a_pipe(tmp_path):
    """`--config <(...)` in a shell hands normlab a pipe, not a regular file."""
    import os
    import threading

    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("epochs: 3\nlr: 0.2\n"))
    writer.start()
    cfg = cli.config_from_args(cli.build_parser().parse_args(["train", "--config", str(fifo)]))
    writer.join()
    assert (cfg.epochs, cfg.lr) == (3, 0.2)


def test_out_dir_is_never_overwritten(digits_run):
    before = (digits_run.run_dir / "summary.json").read_bytes()
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        normlab.train(dict(TINY, out=str(digits_run.run_dir)), log=lambda *a: None)
    assert (digits_run.run_dir / "summary.json").read_bytes() == before


def test_model_too_small_input():
    with pytest.raises(ConfigError, match="lenet-bn needs inputs of at least 16x16 pixels, got 8x8"):
        normlab.train(dict(TINY, model="lenet-bn"), log=lambda *a: None)


def test_missing_or_corrupt_run_dir(tmp_path, digits_run):
    with pytest.raises(CheckpointError, match="does not exist"):
        normlab.load(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="missing preprocess.json, weights.safetensors"):
        normlab.load(tmp_path / "half")
    broken = tmp_path / "broken"
    broken.mkdir()
    for n in ("config.json", "preprocess.json"):
        (broken / n).write_bytes((digits_run.run_dir / n).read_bytes())
    (broken / "weights.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt or not a safetensors file"):
        normlab.load(broken)


def test_cli_errors_have_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "normlab", "train", "--model", "resnett", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "normlab train: error: unknown model 'resnett'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()
    r = subprocess.run([sys.executable, "-m", "normlab", "eval", str(tmp_path / "nothing")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_cli_train_prints_epoch_lines(tmp_path, capsys):
    assert cli.main(["train", "--dataset", "digits", "--model", "logistic", "--epochs", "2", "--no-progress",
                     "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = [l for l in out if l.startswith("epoch ")]
    assert len(lines) == 2
    import re
    assert re.fullmatch(r"epoch 2/2  loss \d\.\d{3}  train acc \d\.\d{3}  test acc \d\.\d{3}  [\d,]+ ex/s  \d+\.\d s",
                        lines[1]), lines[1]


def test_default_lr_is_the_models():
    from normlab.train.resolve import resolve_config

    assert make_config({"model": "lenet-bn"}).lr is None  # unset until the run is built
    assert resolve_config(make_config({"model": "lenet-bn"})).lr == 0.01
    # the tutorial's norm-free GoogLeNet dies at 0.01 with Adam (chance accuracy); it gets 0.001
    assert resolve_config(make_config({"model": "googlenet-mini"})).lr == 0.001
    assert resolve_config(make_config({"model": "googlenet-mini", "lr": 0.05})).lr == 0.05


def test_fuse_bn_inference_matches_the_trained_model(tmp_path):
    from torch.nn.modules.batchnorm import _BatchNorm

    run = normlab.train(dict(TINY, norm="bn", out=str(tmp_path / "bn")), log=lambda *a: None)
    plain, fused = normlab.load(run.run_dir), normlab.load(run.run_dir, fuse_bn=True)
    assert any(isinstance(m, _BatchNorm) for m in plain.model.modules())
    assert not any(isinstance(m, _BatchNorm) for m in fused.model.modules())
    x = plain.transform(load_dataset("digits").test_x)
    with torch.no_grad():
        torch.testing.assert_close(fused.model(x), plain.model(x), rtol=1e-5, atol=1e-5)
    same = normlab.evaluate_run(run.run_dir)
    assert same["test_acc"] == run.summary["final_test_acc"]
    folded = normlab.evaluate_run(run.run_dir, fuse_bn=True)
    assert abs(folded["test_acc"] - same["test_acc"]) <= 1 / same["test_size"]  # at most a near-tie moves
    img = tmp_path / "d.png"
    Image.fromarray(load_dataset("digits").test_x[0, 0].numpy(), "L").save(img)
    a = normlab.predict(run.run_dir, [str(img)])
    b = normlab.predict(run.run_dir, [str(img)], fuse_bn=False)
    assert a[0]["class"] == b[0]["class"] and a[0]["probability"] == pytest.approx(b[0]["probability"], abs=1e-5)
