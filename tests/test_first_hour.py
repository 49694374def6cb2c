"""What a new user meets in the first hour: install hints that work from a clone."""

import sys

import pytest
import torch

from normlab.errors import ConfigError


def test_onnx_hint_names_packages_that_install_from_a_clone_too(monkeypatch):
    from normlab.train import export

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.raises(ConfigError) as e:
        export._onnx_bytes(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    assert str(e.value) == ('ONNX export needs the onnx package: pip install onnx onnxruntime '
                            '(the [onnx] extra; from a clone: pip install -e ".[onnx]")')
