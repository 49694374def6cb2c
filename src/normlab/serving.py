"""Inference backends for a trained model: `load`, `predict` and `eval` run the model through one.

    torch         the PyTorch model in eval mode (BatchNorm folded when asked), called under
                  torch.inference_mode()
    onnxruntime   the same model exported to ONNX in memory and run by ONNX Runtime's CPU
                  provider with torch's thread count; needs the onnxruntime package (the [onnx]
                  extra). On a 2-core CPU it ran the seed models 1.3-13x faster than eager
                  PyTorch (benchmarks/infer.py), mostly at batch 1, where PyTorch's per-call
                  overhead and its choice of convolution kernels for single images dominate.

Both take and return torch tensors, so evaluation, test-time augmentation and predict do not
know which one runs. Nothing is written to disk: the ONNX graph lives in memory.
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from .errors import ConfigError, unknown_name

BACKENDS = ("torch", "onnxruntime")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise unknown_name("backend", name, BACKENDS)
    if name == "onnxruntime":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ConfigError("backend onnxruntime needs the onnx and onnxruntime packages: pip install onnx "
                              "onnxruntime (the [onnx] extra), or use --backend torch") from None
    return name


def onnx_bytes(model, example) -> bytes:
    """The model as an ONNX graph (opset 17, dynamic batch), input "input", output "logits"."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install onnx onnxruntime "
                          "(the [onnx] extra; from a clone: pip install -e \".[onnx]\")") from None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        # dynamo=False: the TorchScript exporter needs no onnxscript and handles every zoo model.
        # (torch types `f` as a path; a file object is documented and works)
        torch.onnx.export(model, (example,), buf, dynamo=False,  # type: ignore[arg-type]
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    return buf.getvalue()


class OrtModel(nn.Module):
    """An ONNX Runtime session behind the nn.Module interface: tensor in, tensor out.

    It has no parameters and computes the eval-mode function whatever train()/eval() says;
    autograd does not see through it (inference only)."""

    def __init__(self, model: nn.Module, example: torch.Tensor, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # ORT's threads spin after each run by default; on few cores shared with torch (the
        # data pipeline, the benchmark's other variants) the spinning steals their cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        with torch.no_grad():
            data = onnx_bytes(model.eval(), example[:2].float().contiguous().cpu())
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [self.session.get_outputs()[0].name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # At batch 1 a call takes tens of microseconds: convert only what needs converting.
        if x.dtype is not torch.float32 or not x.is_cpu or x.requires_grad or not x.is_contiguous():
            x = x.detach().float().cpu().contiguous()
        return torch.from_numpy(self.session.run(self.output_names, {self.input_name: x.numpy()})[0])

    # Called directly, without nn.Module's hook machinery (a few microseconds a call, a tenth of
    # a batch-1 call of a small net): the session has no submodules or parameters to hook.
    __call__ = forward


def prepare(model: nn.Module, backend: str, example: torch.Tensor, *, fuse: bool = True,
            channels_last: bool = False, threads: int | None = None) -> nn.Module:
    """The eval-mode model as `backend` runs it. `example`: an input batch (any size >= 1), used
    to trace the model for ONNX and to observe BatchNorm inputs for folding.

    torch: BatchNorm folded into the conv/linear before it when `fuse` (nn.surgery.fuse_bn),
    channels_last when asked (predict calls it under torch.inference_mode()).
    onnxruntime: the (folded) model exported to ONNX, run by onnxruntime (ORT folds again and
    fuses conv+relu on its own)."""
    check_backend(backend)
    model = model.eval()
    if fuse:
        from .nn.surgery import fuse_bn

        model = fuse_bn(model, inplace=True, example=example)
    if backend == "onnxruntime":
        return OrtModel(model, example, threads)
    return model.to(memory_format=torch.channels_last) if channels_last else model
