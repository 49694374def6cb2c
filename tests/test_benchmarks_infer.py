"""benchmarks/infer.py's correctness check (not its timing: speed lives in the benchmark)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from normlab.errors import NormlabError

pytest.importorskip("onnxruntime")

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "infer.py"
_spec = importlib.util.spec_from_file_location("normlab_bench_infer", _PATH)
infer = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = infer  # dataclasses look their module up there
_spec.loader.exec_module(infer)


@pytest.fixture(scope="module")
def lenet_variants():
    model = infer.build_model("lenet-bn", 28)
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return model, x, infer.make_variants(model, x, infer.VARIANTS, threads=1)


def test_every_variant_agrees_with_eager_on_lenet_bn(lenet_variants):
    model, x, variants = lenet_variants
    diffs = infer.check(variants)
    assert set(diffs) == {"eager_cl", "folded", "folded_cl", "onnx", "jit"}
    with torch.no_grad():
        scale = float(model(x).abs().max())
    assert all(d <= infer.REL_TOL * scale for d in diffs.values()), diffs
    # the folded model really is folded: no BatchNorm left to run
    assert infer.count_bn(model) == 4
    assert infer.count_bn(infer.fuse_bn(model)) == 0


def test_check_fails_loudly_when_batchnorm_is_dropped_instead_of_folded(lenet_variants):
    model, x, variants = lenet_variants
    # What a broken fuse_bn would give: BatchNorms removed, convs untouched. build_model's
    # randomized statistics make that visibly wrong (with fresh ones, BN is nearly the identity).
    broken = infer.build_model("lenet-bn", 28)
    for name, m in list(broken.named_modules()):
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            parent, _, attr = name.rpartition(".")
            setattr(broken.get_submodule(parent), attr, nn.Identity())
    bad = dict(variants)
    bad["folded"] = infer.Variant("folded", infer._torch_fn(broken), x)
    with pytest.raises(NormlabError, match=r"variants disagree with eager eval .*folded: max \|diff\|"):
        infer.check(bad)


def test_check_rejects_a_wrong_output_shape(lenet_variants):
    _, x, variants = lenet_variants
    bad = {"eager": variants["eager"], "onnx": infer.Variant("onnx", lambda a: a[:, :, 0, :10], x)}
    with pytest.raises(NormlabError, match=r"onnx gives shape \(2, 1, 10\), eager \(2, 10\)"):
        infer.check(bad)
