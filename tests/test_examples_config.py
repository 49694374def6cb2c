"""examples/train.yaml is a valid config whose values are what its comments say."""

from pathlib import Path

from normlab.config import load_config_file, make_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train.yaml"


def test_example_config_loads_and_sets_what_it_says():
    cfg = make_config(load_config_file(str(EXAMPLE)))
    assert (cfg.dataset, cfg.model, cfg.norm, cfg.act, cfg.epochs, cfg.batch_size) == (
        "mnist5k", "lenet-bn", "bn", "sigmoid", 5, 64)
    assert (cfg.optimizer, cfg.lr, cfg.schedule, cfg.seed, cfg.out) == ("adam", 0.01, "linear", 0, None)
