"""`--recipe d2l`: the tutorial's Fashion-MNIST runs (seed 000) by name, and `--preprocess scale`."""

import gzip
import json

import numpy as np
import pytest
import torch

from normlab.cli import main
from normlab.config import make_config
from normlab.data import preprocess


# What seed 000 (000_26586db6ac5f041a.txt) types for its runs: `batch_size=16`,
# `lr, num_epochs = 0.001, 5`, `torch.optim.Adam(net.parameters(), lr=lr)`, no scheduler,
# `transforms.ToTensor()` only, and `load_data_fashion_mnist(batch_size, resize=96)` for DenseNet
# (its ResNet cell trains on the 28x28 `train_iter`; the book's section 5.11 resizes to 96).
TUTORIAL = {"dataset": "fashion-mnist", "batch_size": 16, "lr": 0.001, "epochs": 5, "optimizer": "adam",
            "schedule": "constant", "preprocess": "scale", "weight_decay": 0.0, "augment": "", "warmup": 0.0,
            "label_smoothing": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


@pytest.mark.parametrize("recipe,model,resize", [("d2l", "lenet-bn", None), ("d2l-resnet18", "resnet18-d2l", None),
                                                 ("d2l-resnet18-96", "resnet18-d2l", "96"),
                                                 ("d2l-densenet", "densenet-d2l", "96")])
def test_recipes_set_what_the_tutorial_types(recipe, model, resize):
    cfg = make_config({"recipe": recipe})
    assert {k: getattr(cfg, k) for k in TUTORIAL} == TUTORIAL
    assert cfg.model == model and cfg.resize == resize
    # torch.optim.Adam's defaults are the tutorial's betas and eps
    d = torch.optim.Adam([torch.zeros(1)]).defaults
    assert (d["betas"], d["eps"], d["weight_decay"]) == ((cfg.beta1, cfg.beta2), cfg.eps, cfg.weight_decay)


def test_scale_is_to_tensor():
    from PIL import Image
    from torchvision.transforms import ToTensor

    x = torch.randint(0, 256, (3, 1, 5, 4), dtype=torch.uint8)
    p = preprocess.fit("scale", x)
    expected = torch.stack([ToTensor()(Image.fromarray(a[0].numpy(), mode="L")) for a in x])
    # x * (1/255) against ToTensor's x / 255: equal to one float32 rounding
    torch.testing.assert_close(p(x), expected, rtol=0, atol=6e-8)
    torch.testing.assert_close(preprocess.Preprocess.from_dict(p.to_dict())(x), expected, rtol=0, atol=6e-8)
    assert not torch.allclose(preprocess.fit("channel", x)(x), expected)


def test_train_recipe_d2l_runs_on_fashion_mnist(tmp_path):
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 48), ("t10k", 16)):
        arrays = {"images-idx3": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                  "labels-idx1": (np.arange(n) % 10).astype(np.uint8)}
        for kind, a in arrays.items():
            header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
            (raw / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + a.tobytes()))
    out = tmp_path / "run"
    assert main(["train", "--recipe", "d2l", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                 "--out", str(out), "--no-progress", "--offline"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert {k: cfg[k] for k in ("recipe", "dataset", "model", "batch_size", "lr", "preprocess")} == \
        {"recipe": "d2l", "dataset": "fashion-mnist", "model": "lenet-bn", "batch_size": 16, "lr": 0.001,
         "preprocess": "scale"}


def test_seed001_recipe_is_what_the_seed_types():
    # seed 001: num_epochs = 100, batch_size = 32, learning_rate = 0.001, transforms.Pad(4),
    # RandomHorizontalFlip(), RandomCrop(32), ToTensor(); torchvision.datasets.MNIST; no scheduler.
    cfg = make_config({"recipe": "seed001"})
    assert (cfg.dataset, cfg.model, cfg.epochs, cfg.batch_size, cfg.lr) == (
        "mnist", "resnet14-tutorial-avgpool8", 100, 32, 0.001)
    assert (cfg.optimizer, cfg.schedule, cfg.preprocess, cfg.augment, cfg.log_every) == (
        "adam", "constant", "scale", "pad:4,flip,randcrop:32", 100)

