"""benchmarks/train.py runs and compares like with like (not its timing: speed lives in the benchmark)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from normlab.config import make_config

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "train.py"
_spec = importlib.util.spec_from_file_location("normlab_bench_train", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench
_spec.loader.exec_module(bench)


def test_time_to_96_ways_are_valid_configs_and_the_first_is_the_tutorials_setting():
    for way, options in bench.NORMLAB_WAYS.items():
        make_config(options)  # raises ConfigError on a stale option
    first = make_config(next(iter(bench.NORMLAB_WAYS.values())))
    # same model, optimizer, lr and batch as tutorial_time_to: only the loop and pipeline differ
    assert (first.model, first.optimizer, first.lr, first.batch_size, first.schedule) == \
        ("lenet-bn", "adam", 1e-3, 256, "constant")


def test_tutorial_pipeline_gives_the_same_normalized_images_as_normlabs():
    from normlab.data.loader import DeviceLoader, Normalize, channel_stats
    from normlab.data.sources import load_dataset

    d = load_dataset("synthetic", size=40)
    mean, std = channel_stats(d.train_x)
    tut = bench.PILDigits(d.train_x, d.train_y, 28, mean, std)
    ours = next(iter(DeviceLoader(d.train_x, d.train_y, len(d.train_y), Normalize(mean, std))))[0]
    for i in (0, 5, len(tut) - 1):
        x, y = tut[i]
        assert y == int(d.train_y[i])
        torch.testing.assert_close(x, ours[i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model, options", [("lenet-bn", {}), ("digitnet", {"width": 8})])
def test_throughput_measures_every_way(model, options):
    r = bench.throughput(model, 28, 8, 2, options, torch.device("cpu"), False)
    for way in ("tutorial", "normlab", "normlab_cl", "normlab_cl_bf16"):
        assert r[way] > 0, way
    assert r["ratio"] == pytest.approx(r["normlab"] / r["tutorial"])
    assert r["ratio_cl_bf16"] == pytest.approx(r["normlab_cl_bf16"] / r["tutorial"])


def test_utilization_counts_a_training_step_as_three_forward_passes():
    # 3 x 2 x inspect's mult-adds of d2l's lenet-bn (281,640; see test_benchmarks_infer)
    assert bench.train_flops_per_image("lenet-bn", 28, {}) == 3 * 2 * 281_640
    row = {"train_flops_per_image": 1e6, "tutorial": 10.0, "normlab": 100.0, "normlab_cl": 50.0,
           "normlab_cl_bf16": 200.0}
    bench.utilization(row, {"fp32": 1e9, "bf16": 4e9})
    assert row["frac_peak"] == pytest.approx({"tutorial": 0.01, "normlab": 0.1, "normlab_cl": 0.05,
                                              "normlab_cl_bf16": 0.05})  # bf16 against the bf16 peak
    assert row["gflop_s"]["normlab_cl_bf16"] == pytest.approx(0.2)


@pytest.mark.parametrize("batch, steps", [(8, 2), (16, 5), (64, 3)])
def test_throughput_data_has_a_full_batch_for_every_warm_up_and_timed_step(batch, steps):
    from normlab.data.sources import load_dataset

    d = load_dataset("synthetic", size=bench.synthetic_size(batch, steps))
    assert len(d.train_y) // batch >= 3 + steps  # 3 warm-up steps when compiling
