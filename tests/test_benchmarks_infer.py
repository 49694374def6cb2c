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
    assert set(diffs) == {"eager_cl", "folded", "folded_cl", "onnx", "jit", "normlab", "normlab_ort"}
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


def test_utilization_and_ort_ratios_follow_from_images_per_second(capsys):
    # d2l's lenet-bn at 28 px: conv 6x1x5x5 -> 24x24, conv 16x6x5x5 -> 8x8, then 256-120-84-10
    # linears, counted by hand (a conv: output elements x input channels x kernel area)
    hand = 6 * 24 * 24 * 1 * 25 + 16 * 8 * 8 * 6 * 25 + 256 * 120 + 120 * 84 + 84 * 10
    flops = infer.forward_flops(infer.build_model("lenet-bn", 28), (1, 28, 28))
    assert flops == 2 * hand
    rows = [{"model": "m", "size": 28, "batch": 1, "forward_flops_per_image": 1e6,
             "img_s": {"eager": 100.0, "onnx": 400.0, "normlab": 200.0, "normlab_ort": 360.0}}]
    infer.utilization(rows, peak_fp32=1e9)
    assert rows[0]["gflop_s"]["onnx"] == pytest.approx(0.4) and rows[0]["frac_fp32_peak"]["eager"] == pytest.approx(0.1)
    infer.ort_ratios(rows)
    assert rows[0]["vs_onnx"] == {"normlab": 0.5, "normlab_ort": 0.9}
    assert rows[0]["ort_target_met"] == {"normlab": False, "normlab_ort": True}
    out = capsys.readouterr().out
    assert "normlab 0.50x NOT met  normlab_ort 0.90x met" in out
