"""A torchvision that does not fit this torch, or a missing package, is one line naming the
versions and the fix, from every command that needs it; never torchvision's own traceback."""

import subprocess
import sys

import pytest
import torch

from normlab import cli, deps
from normlab.errors import NormlabError


@pytest.fixture
def broken_torchvision(tmp_path):
    """A CUDA torchvision 0.30 beside this torch, as pip leaves it: its import fails the way a real
    mismatched pair does (torchvision registers kernels for an operator this torch lacks)."""
    (tmp_path / "torchvision").mkdir()
    (tmp_path / "torchvision" / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    meta = tmp_path / "torchvision-0.30.0+cu130.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.30.0+cu130\n")
    return tmp_path


@pytest.mark.parametrize("args", [["datasets"], ["train", "--dataset", "fashion-mnist", "--offline"]])
def test_a_mismatched_torchvision_is_one_line(args, broken_torchvision, tmp_path):
    r = subprocess.run([sys.executable, "-m", "normlab", *args], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, env={"PYTHONPATH": str(broken_torchvision), "PATH": "/usr/bin:/bin",
                                          "NORMLAB_DATA": str(tmp_path / "data")})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    want = deps.matching_torchvision(torch.__version__)
    assert r.stderr.startswith(f"normlab {args[0]}: error: torchvision 0.30.0+cu130 does not work with torch "
                               f"{torch.__version__} (RuntimeError: operator torchvision::nms does not exist)")
    assert f"pip install 'torchvision=={want}.*'" in r.stderr


@pytest.mark.parametrize("torch_version, tv", [("2.4.0", "0.19"), ("2.14.1+cu130", "0.29"), ("2.9.1+cpu", "0.24")])
def test_the_matching_torchvision_release(torch_version, tv):
    assert deps.matching_torchvision(torch_version) == tv  # the pairs pytorch.org lists


def test_a_missing_package_is_one_line_from_the_cli(monkeypatch, capsys):
    def needs_onnx(args):
        import normlab_no_such_package  # noqa: F401  (stands for onnx on a machine without it)

    monkeypatch.setitem(cli.COMMANDS, "models", ("", lambda p: None, needs_onnx))
    assert cli.main(["models"]) == 2
    assert capsys.readouterr().err == ("normlab models: error: the package 'normlab_no_such_package' is not "
                                       "installed (needed by normlab models): pip install normlab_no_such_package\n")
    assert deps.missing_message("onnxruntime.capi") == ("the package 'onnxruntime' is not installed: pip install "
                                                        "onnxruntime (or normlab's extra: pip install -e '.[onnx]')")
    assert deps.missing_message("PIL.Image").startswith("the package 'pillow' is not installed")


def test_a_working_torchvision_is_returned():
    assert deps.torchvision("torchvision.io").__name__ == "torchvision.io"
    with pytest.raises(NormlabError, match=r"does not work with torch .*ModuleNotFoundError: No module named "
                                           r"'torchvision.no_such_module_here'"):
        deps.torchvision("torchvision.no_such_module_here")
