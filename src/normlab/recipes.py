"""Recipes: named sets of option values, tuned for one goal, that fill the options a run leaves unset.

`normlab train --recipe fast` is the same as typing the options below; anything given on the
command line, in a config file or in the API dict overrides the recipe's value. docs/recipes.md
says how each recipe was tuned and what it measured.
"""

from __future__ import annotations

_FAST_V1 = {
    "dataset": "mnist5k", "model": "digitnet", "width": 32, "norm": "bn", "act": "relu",
    "epochs": 28, "batch_size": 64, "optimizer": "adam", "lr": 0.01, "schedule": "linear",
    "warmup": 1.0, "label_smoothing": 0.1, "augment": "translate:2,rotate:8,zoom:5",
    "channels_last": True, "precision": "bf16",
}
# The same training in about half the time: three quarters of the width (about 0.6x the
# compute per image) and 16 epochs instead of 28 (docs/recipes.md: measured side by side).
_FAST = {**_FAST_V1, "width": 24, "epochs": 16}
# The best accuracy found for about 3 minutes of wall time on 2 CPU cores: fast-v1's training
# at 1.5x the width for 60 epochs (docs/recipes.md: what was measured, and the variants that did
# not help: elastic, stronger warps, dropout, depth 2, test-time shifts).
_BEST = {**_FAST_V1, "width": 48, "epochs": 60}
# The d2l book's (Dive into Deep Learning, PyTorch edition) Fashion-MNIST runs as the tutorial
# seed 000 types them: Adam lr 0.001, 5 epochs, batch 16, constant lr, ToTensor only.
_D2L = {"dataset": "fashion-mnist", "epochs": 5, "batch_size": 16, "optimizer": "adam", "lr": 0.001,
        "schedule": "constant", "preprocess": "scale"}

# Seed 001's ResNet run on MNIST as it types it: num_epochs = 100, batch_size = 32, learning_rate =
# 0.001 with no scheduler, Pad(4) + RandomHorizontalFlip + RandomCrop(32) + ToTensor() (no
# Normalize) for training and ToTensor() for test (at 32x32 here: its AvgPool2d(8) head cannot take
# the 28x28 test images the seed gives it). The seed never shows its optimizer; the code it follows
# (yunjey's pytorch-tutorial, deep_residual_network) uses torch.optim.Adam at that lr: Adam here.
_SEED001 = {"dataset": "mnist", "model": "resnet14-tutorial-avgpool8", "epochs": 100, "batch_size": 32,
            "optimizer": "adam", "lr": 0.001, "schedule": "constant", "preprocess": "scale",
            "augment": "pad:4,flip,randcrop:32", "log_every": 100}

RECIPES: dict[str, dict] = {
    "fast": {
        "goal": "time to >= 99% test accuracy on small grayscale digits (mnist5k) on a 2-core CPU",
        "options": _FAST,
    },
    # The fast recipe until issue 19, kept for the side-by-side comparison (benchmarks/train.py
    # --time-to-99) and for runs that cite it.
    "fast-v1": {
        "goal": "the first fast recipe (width 32, 28 epochs): >= 99% on mnist5k in under 30 s on 2 CPU cores",
        "options": _FAST_V1,
    },
    # The same training for one GPU: a small net's GPU step costs about the same at batch 64 and
    # 256 (the time is Python and kernel launches), so 4x the batch is 4x fewer steps; the lr
    # doubles with it, and CUDA graphs take out most of the launches (the same numbers, bit for
    # bit, in half the time). Measured on an H100 and an H200 (docs/gpu.md).
    "fast-gpu": {
        "goal": "time to >= 99% test accuracy on mnist5k on one GPU",
        "options": {**_FAST_V1, "batch_size": 256, "lr": 0.02, "cuda_graphs": True},
    },
    "best": {
        "goal": "the best test accuracy on mnist5k in under 3 minutes of wall time on 2 CPU cores "
                "(aimed at a median of 99.4% over 5 seeds)",
        "options": _BEST,
    },
    "d2l": {
        "goal": "the tutorial's BN-LeNet run on Fashion-MNIST (seed 000; d2l section 5.10)",
        "options": {**_D2L, "model": "lenet-bn"},
    },
    # Seed 000's ResNet cell trains on the 28x28 loaders built for LeNet (only its DenseNet cell
    # reloads the data with resize=96); the book's section 5.11 resizes to 96, a recipe of its own.
    "d2l-resnet18": {
        "goal": "the tutorial's ResNet-18 run on Fashion-MNIST at 28x28, as seed 000 trains it",
        "options": {**_D2L, "model": "resnet18-d2l"},
    },
    "d2l-resnet18-96": {
        "goal": "the d2l book's ResNet-18 run on Fashion-MNIST at 96x96 (section 5.11; seed 000 does not resize)",
        "options": {**_D2L, "model": "resnet18-d2l", "resize": "96"},
    },
    "seed001": {
        "goal": "tutorial seed 001's ResNet (16/32/64 channels, [2, 2, 2] blocks) on MNIST as it types it "
                "(100 epochs, batch 32, Adam at a fixed lr 0.001, ToTensor only, pad 4 + flip + crop 32)",
        "options": _SEED001,
    },
    "d2l-densenet": {
        "goal": "the tutorial's DenseNet run on Fashion-MNIST at 96x96 (seed 000; d2l section 5.12)",
        "options": {**_D2L, "model": "densenet-d2l", "resize": "96"},
    },
}


def precision_note(recipe, precision: str, device_type: str, native_bf16: bool) -> str | None:
    """One line for a run whose recipe chose bf16 on a CPU: bf16's numbers depend on the CPU's
    kernels (and without native bf16 it is emulated, and slower than fp32), while fp32 gives the
    same numbers on every CPU. None where there is nothing to say."""
    if recipe is None or RECIPES[recipe]["options"].get("precision") != "bf16" or precision != "bf16" \
            or device_type != "cpu":
        return None
    if native_bf16:
        return (f"recipe {recipe}: bf16 autocast, the precision it was tuned and measured in (docs/recipes.md); "
                f"bf16 numbers differ between CPU kinds: --precision fp32 gives the same numbers on every CPU, "
                f"a little slower")
    return (f"recipe {recipe}: bf16 autocast, but this CPU has no native bf16 (AVX-512 BF16 or AMX), so bf16 is "
            f"emulated: slower than fp32 here and not the figures of docs/recipes.md; --precision fp32 is faster "
            f"here and gives the same numbers on every CPU")
