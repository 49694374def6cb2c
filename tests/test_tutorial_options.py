"""Issue 17 items 9-11: dropout in hidden layers and seed 002's non-inverted dropout, maxout,
binary logistic regression with BCE on two classes, L-BFGS, seed 001's Pad+RandomCrop and
--log-every."""

import itertools

import pytest
import torch
import torchvision.transforms.v2 as T
from torch import nn
from torch.nn import functional as F

import normlab
from normlab import cli
from normlab.data import augment
from normlab.errors import ConfigError
from normlab.models import create_model
from normlab.nn.layers import Maxout, NonInvertedDropout

QUIET = lambda *a: None  # noqa: E731


def _expectation_over_masks(layer_fn, x, p):
    """E[layer(x)] over all 2^n keep-masks, each weighted by its probability (exact, no sampling)."""
    n = x.numel()
    total = torch.zeros_like(x, dtype=torch.float64)
    for bits in itertools.product((0.0, 1.0), repeat=n):
        mask = torch.tensor(bits, dtype=torch.float64).view_as(x)
        kept = int(mask.sum())
        total += (1 - p) ** kept * p ** (n - kept) * layer_fn(mask)
    return total


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_non_inverted_and_inverted_dropout_are_equal_in_expectation(p):
    x = torch.tensor([1.5, -2.0, 0.25, 3.0], dtype=torch.float64)
    w = torch.tensor([[0.3, -1.0, 2.0, 0.5], [1.0, 1.0, -0.5, 0.2]], dtype=torch.float64)
    layer = NonInvertedDropout(p)
    # Training draws x * mask; seed 002's test time multiplies by 1 - p; torch scales kept units
    # by 1 / (1 - p) in training and leaves test time alone.
    non_inv = _expectation_over_masks(lambda m: x * m, x, p)
    inv = _expectation_over_masks(lambda m: x * m / (1 - p), x, p)
    assert torch.allclose(non_inv, layer.eval()(x))  # E_train == test output, (1 - p) x
    assert torch.allclose(inv, nn.Dropout(p).eval()(x))  # E_train == test output, x
    # Through the next linear layer: a net with non-inverted dropout computes, in expectation and at
    # test time, what the inverted net computes with its weights times (1 - p): the same function.
    assert torch.allclose(w @ non_inv, ((1 - p) * w) @ inv)
    # And the layer's own training masks are the ones enumerated: kept units pass unscaled.
    torch.manual_seed(0)
    y = layer.train()(x)
    assert set(torch.unique(y / x).tolist()) <= {0.0, 1.0}


def test_dropout_mode_non_inverted_swaps_every_dropout():
    m = create_model("nin", input_size=(67, 67), dropout_mode="non-inverted")
    kinds = [type(mod) for mod in m.modules() if isinstance(mod, (nn.Dropout, NonInvertedDropout))]
    assert kinds == [NonInvertedDropout]
    with pytest.raises(ConfigError, match="unknown dropout mode 'scaled'"):
        create_model("mlp", dropout_mode="scaled")


def test_hidden_dropout_sits_after_every_hidden_activation():
    m = create_model("mlp", depth=3, width=8, hidden_dropout=0.3, dropout=0.1)
    order = [type(x).__name__ for x in m.features]
    assert order == ["Flatten"] + ["Linear", "Identity", "ReLU", "Dropout"] * 3
    lenet = create_model("lenet-bn", hidden_dropout=0.5)
    assert [type(x).__name__ for x in lenet.fc] == ["Linear", "BatchNorm1d", "Sigmoid", "Dropout"] * 2
    assert cli.main(["train", "--model", "resnet20", "--hidden-dropout", "0.2", "--epochs", "1"]) == 2


def test_maxout_is_the_max_of_its_affine_pieces():
    torch.manual_seed(0)
    m = Maxout(5, 3, pieces=4)
    x = torch.randn(2, 5)
    pieces = (x @ m.linear.weight.t() + m.linear.bias).view(2, 3, 4)
    assert torch.equal(m(x), pieces.max(-1).values)
    net = create_model("maxout-mlp", in_channels=1, input_size=(8, 8), depth=2, width=16)
    assert sum(isinstance(mod, Maxout) for mod in net.modules()) == 2
    assert sum(p.numel() for p in net.parameters()) == (64 * 32 + 32) + (16 * 32 + 32) + (16 * 10 + 10)


def test_binary_logistic_cross_entropy_is_bce():
    torch.manual_seed(0)
    m = create_model("logistic-binary", num_classes=2, in_channels=1, input_size=(4, 4))
    x, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 1, 0, 1, 0])
    z = m.score(x)
    ce = F.cross_entropy(m(x), y)
    bce = nn.BCELoss()(torch.sigmoid(z), y.float())  # seed 002: Sigmoid then BCELoss
    assert torch.allclose(ce, bce, atol=1e-6)
    assert sum(p.numel() for p in m.parameters()) == 17  # one weight per pixel and a bias
    with pytest.raises(ConfigError, match="logistic-binary separates two classes, got 10; keep two with --classes"):
        create_model("logistic-binary", num_classes=10)


def test_two_chosen_classes_with_bce_and_lbfgs(tmp_path):
    lines = []
    res = normlab.train(dict(dataset="mnist5k", model="logistic-binary", classes="3,8", optimizer="lbfgs", lr=1.0,
                             batch_size=512, epochs=2, progress=False, out=str(tmp_path / "bin")), log=lines.append)
    pre = normlab.load(res.run_dir).preprocess
    assert pre["classes"] == ["3", "8"]
    assert 0.9 < res.summary["final_test_acc"] <= 1.0  # 3 vs 8 is nearly linearly separable
    with pytest.raises(ConfigError, match="classes: '11' is neither a class of mnist5k"):
        normlab.train(dict(dataset="mnist5k", model="logistic-binary", classes="3,11", epochs=1))
    with pytest.raises(ConfigError, match="L-BFGS has no weight decay; use --l2"):
        normlab.train(dict(dataset="synthetic", model="mlp", optimizer="lbfgs", weight_decay=1e-4, epochs=1,
                           progress=False, out=str(tmp_path / "wd")), log=QUIET)


def test_lbfgs_step_evaluates_a_closure_and_lowers_the_batch_loss():
    from normlab.config import make_config
    from normlab.train.optim import make_optimizer
    from normlab.train.step import Step
    from normlab.train.schedule import make_scheduler

    torch.manual_seed(0)
    model = create_model("mlp", in_channels=1, input_size=(4, 4), depth=1, width=8)
    cfg = make_config(dict(model="mlp", optimizer="lbfgs", lr=1.0, epochs=1))
    opt = make_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.LBFGS)
    step = Step(model, opt, make_scheduler(opt, cfg, 1), cfg)
    x, y = torch.randn(32, 1, 4, 4), torch.randint(0, 10, (32,))
    before = F.cross_entropy(model(x), y).item()
    out, loss = step(x, y)
    assert loss.item() == pytest.approx(before, rel=1e-6)  # the step reports the loss before it
    assert F.cross_entropy(model(x), y).item() < 0.5 * before
    assert opt.state[opt._params[0]]["func_evals"] > 1  # the closure ran more than once


def test_pad_randcrop_flip_is_seed_001s_transform():
    x = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    assert augment.output_size("pad:4,flip,randcrop:32", (28, 28)) == (32, 32)
    fn = augment.make_augment("pad:4,flip,randcrop:32")
    g = torch.Generator().manual_seed(0)
    y = fn(x, g)
    assert y.shape == (64, 1, 32, 32)
    # Every output is some 32x32 window of the zero-padded (maybe flipped) 36x36 image, as
    # torchvision's Pad(4) -> RandomHorizontalFlip -> RandomCrop(32) produces.
    padded = T.Pad(4)(x)
    for i in range(8):
        cands = [w for img in (padded[i], padded[i].flip(-1))
                 for w in img.unfold(1, 32, 1).unfold(2, 32, 1).reshape(1, -1, 32, 32).permute(1, 0, 2, 3)]
        assert any(torch.equal(y[i], c) for c in cands)
    # all 25 offsets occur over a large batch (uniform over 0..4 in each direction)
    big = torch.arange(36 * 36, dtype=torch.float32).view(1, 1, 36, 36).expand(2000, 1, 36, 36)
    crops = augment.random_crop_to(big, 32, torch.Generator().manual_seed(1))
    offsets = {(int(c[0, 0, 0]) // 36, int(c[0, 0, 0]) % 36) for c in crops}
    assert offsets == {(a, b) for a in range(5) for b in range(5)}
    # Test images: pad, then the centre crop.
    assert torch.equal(augment.deterministic("pad:4,flip,randcrop:32", x, (32, 32)), T.Pad(2)(x))
    with pytest.raises(ConfigError, match="randcrop:40 is larger than the 28x28 image at that point"):
        augment.output_size("randcrop:40", (28, 28))


def test_log_every_prints_the_loss_every_n_steps(tmp_path):
    lines = []
    normlab.train(dict(dataset="synthetic", model="mlp", epochs=1, batch_size=32, log_every=5, progress=False,
                       out=str(tmp_path / "r")), log=lines.append)
    steps = [ln for ln in lines if ln.startswith("epoch 1, step ")]
    assert steps and all(int(ln.split("step ")[1].split("/")[0]) % 5 == 0 for ln in steps)
    assert "loss " in steps[0]


def test_predict_pads_and_centre_crops_like_the_test_images(tmp_path):
    """A run trained with seed 001's pad + random crop sees its test images padded (2 pixels a
    side after the centre crop), not stretched: predict gives an image file the same, and its
    probabilities equal the model's on the test pipeline's own image."""
    import numpy as np
    from PIL import Image

    from normlab.data.sources import load_dataset

    run = normlab.train({"dataset": "digits", "model": "mlp", "epochs": 1, "augment": "pad:2,randcrop:10",
                         "progress": False, "out": str(tmp_path / "run")}, log=QUIET)
    digit = load_dataset("digits").test_x[0]  # 1x8x8 uint8
    Image.fromarray(digit[0].numpy()).save(tmp_path / "d.png")
    r = normlab.load(tmp_path / "run")
    seen = normlab.api.read_images(r, [tmp_path / "d.png"])
    assert torch.equal(seen[0], F.pad(digit, (1, 1, 1, 1)))  # pad 2 to 12x12, centre 10x10
    want = torch.softmax(r.model(r.transform(F.pad(digit, (1, 1, 1, 1))[None])), 1).max().item()
    got = normlab.predict(tmp_path / "run", [tmp_path / "d.png"])[0]["probability"]
    assert got == pytest.approx(want, rel=1e-5)
    assert run.summary["final_test_acc"] > 0.5
