"""Export: ONNX run in onnxruntime and TorchScript agree with the PyTorch model."""

import pytest
import torch

import normlab
from normlab import cli
from normlab.export import export_run


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "run"
    return normlab.train(dict(dataset="synthetic", model="lenet-bn", epochs=1, progress=False, out=str(out)),
                         log=lambda *a: None)


def test_onnx_round_trip(bn_run):
    res = export_run(bn_run.run_dir, "onnx")
    assert res["max_abs_diff"] < 1e-4
    import onnxruntime as ort
    sess = ort.InferenceSession(res["path"], providers=["CPUExecutionProvider"])
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        want = bn_run.model.eval()(x)
    got = torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])  # a batch size not seen at export
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_torchscript_round_trip(bn_run, tmp_path):
    res = export_run(bn_run.run_dir, "torchscript", out=str(tmp_path / "m.pt"))
    assert res["max_abs_diff"] == 0.0


def test_fused_export_has_no_batchnorm(bn_run, tmp_path):
    import onnx
    res = export_run(bn_run.run_dir, "onnx", out=str(tmp_path / "f.onnx"), fuse_bn=True)
    ops = {n.op_type for n in onnx.load(res["path"]).graph.node}
    assert "BatchNormalization" not in ops and res["max_abs_diff"] < 1e-4


def test_unknown_format(bn_run, capsys):
    assert cli.main(["export", str(bn_run.run_dir), "--format", "tflite"]) == 2
    assert "unknown export format 'tflite'. Valid choices: onnx, torchscript." in capsys.readouterr().err
