"""Inference backends (serving.py): ONNX Runtime computes what the torch model computes."""

import subprocess
import sys

import pytest
import torch
from PIL import Image

import normlab
from normlab.data.sources import load_dataset
from normlab.errors import ConfigError
from normlab.serving import OrtModel, check_backend

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bn"
    return normlab.train(dict(dataset="digits", model="mlp", norm="bn", epochs=1, batch_size=32, progress=False,
                              out=str(out)), log=lambda *a: None)


def test_onnxruntime_backend_equals_torch_model(bn_run):
    plain = normlab.load(bn_run.run_dir)
    ort = normlab.load(bn_run.run_dir, backend="onnxruntime", fuse_bn=True)
    assert isinstance(ort.model, OrtModel) and not list(ort.model.parameters())
    x = plain.transform(load_dataset("digits").test_x[:37])  # a batch size the export never saw
    with torch.no_grad():
        want = plain.model(x)
    got = ort.model(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ort.model(x[:1]), want[:1], rtol=1e-5, atol=1e-5)  # batch 1


def test_eval_and_predict_with_onnxruntime(bn_run, tmp_path):
    same = normlab.evaluate_run(bn_run.run_dir)
    ort = normlab.evaluate_run(bn_run.run_dir, backend="onnxruntime")
    assert abs(ort["test_acc"] - same["test_acc"]) <= 1 / same["test_size"]  # equal to rounding
    assert ort["test_loss"] == pytest.approx(same["test_loss"], rel=1e-4)
    img = tmp_path / "d.png"
    Image.fromarray(load_dataset("digits").test_x[3, 0].numpy(), "L").save(img)
    a = normlab.predict(bn_run.run_dir, [str(img)])
    b = normlab.predict(bn_run.run_dir, [str(img)], backend="onnxruntime")
    assert a[0]["class"] == b[0]["class"] and a[0]["probability"] == pytest.approx(b[0]["probability"], abs=1e-5)
    cli = subprocess.run([sys.executable, "-m", "normlab", "predict", str(bn_run.run_dir), str(img), "--backend",
                          "onnxruntime", "--json"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert f'"class": "{a[0]["class"]}"' in cli.stdout


def test_unknown_backend_is_a_one_line_error_exit_2(bn_run):
    r = subprocess.run([sys.executable, "-m", "normlab", "eval", str(bn_run.run_dir), "--backend", "tensorrt"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr == "normlab eval: error: unknown backend 'tensorrt'. Valid choices: onnxruntime, torch.\n"
    assert "Traceback" not in r.stderr


def test_onnxruntime_backend_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"^backend onnxruntime needs the onnx and onnxruntime packages: "
                                          r"pip install onnx onnxruntime"):
        check_backend("onnxruntime")
