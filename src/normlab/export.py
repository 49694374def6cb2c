"""Export a trained run for inference: ONNX (checked in onnxruntime) or TorchScript.

The exported graph takes the *normalized* float input (N, C, H, W); preprocess.json in the run
says how to get there from uint8 pixels. `fuse_bn` folds BatchNorm into the preceding conv or
linear layer first, which removes the norm layers from the graph.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .api import load
from .errors import ConfigError, NormlabError, unknown_name
from .fileio import atomic_write_bytes
from .serving import onnx_bytes as _onnx_bytes

FORMATS = ("onnx", "torchscript")


def export_run(run_dir, fmt: str = "onnx", out: Optional[str] = None, fuse_bn: bool = False,
               check: bool = True) -> dict:
    if fmt not in FORMATS:
        raise unknown_name("export format", fmt, FORMATS)
    if out is not None and (Path(out).exists() or Path(out).is_symlink()):
        raise ConfigError(f"out: {str(out)!r} already exists; export never overwrites a file (it could be a "
                          f"run's weights): choose another --out, or delete that file first")
    r = load(run_dir)
    model = r.model.eval()
    if fuse_bn:
        from .nn.surgery import fuse_bn as fuse

        model = fuse(model)
    example = torch.randn(2, *r.input_shape, generator=torch.Generator().manual_seed(0))
    path = Path(out) if out else Path(r.run_dir) / ("model.onnx" if fmt == "onnx" else "model.torchscript.pt")
    with torch.no_grad():
        reference = model(example)
    if fmt == "onnx":
        data = _onnx_bytes(model, example)
    else:
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still widely loaded
            torch.jit.save(torch.jit.trace(model, example), buf)
        data = buf.getvalue()
    atomic_write_bytes(path, data)
    result: dict[str, object] = {"path": str(path), "format": fmt, "fused_bn": fuse_bn, "max_abs_diff": None}
    if check:
        got = _run_exported(path, fmt, example)
        diff = float((torch.from_numpy(got) - reference).abs().max())
        result["max_abs_diff"] = diff
        if diff > 1e-3:
            raise NormlabError(f"exported model disagrees with PyTorch by {diff:.2e}")
    return result


def _run_exported(path: Path, fmt: str, example: torch.Tensor) -> np.ndarray:
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path)).eval()(example).numpy()
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("checking the ONNX file needs onnxruntime: pip install onnxruntime, "
                          "or pass --no-check") from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": example.numpy()})[0]
