"""The Python API over run directories: load a trained run, evaluate it, predict with it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .config import TrainConfig, make_config
from .data import pipeline
from .data.inputs import Inputs
from .data.tta import parse as parse_tta
from .data.tta import predict_proba
from .device import precision_on, resolve_device
from .errors import CheckpointError, ConfigError, DataError, NormlabError
from .evaluation import evaluate
from .models.from_config import build_model, with_model_defaults
from .rundir import RunDir


@dataclass
class LoadedRun:
    run_dir: Path
    config: TrainConfig
    model: torch.nn.Module
    transform: Callable[[torch.Tensor], torch.Tensor]  # uint8 batch -> model input, as fitted in training
    inputs: Inputs     # what the run's inputs were (preprocess.json)
    classes: list[str]
    input_shape: tuple[int, int, int]
    summary: dict
    device: torch.device

    @property
    def preprocess(self) -> dict:
        """The run's preprocess.json record, as a dict (the typed record is `inputs`)."""
        return self.inputs.to_dict()


def load(run_dir, device: str = "cpu", fuse_bn: bool = False, norm=None, act=None,
         backend: str = "torch") -> LoadedRun:
    """Rebuild a run's model from config.json and weights.safetensors, in eval mode.

    Nothing in a run directory is executed: the config is JSON, the weights safetensors.
    fuse_bn=True folds each BatchNorm into the conv/linear before it (the same function to
    rounding, 1.1-1.8x faster on a CPU with channels_last, which the run's own setting picks).
    backend="onnxruntime" runs the (folded) model in ONNX Runtime instead (serving.py: the
    fastest CPU inference measured here; needs onnxruntime; CPU only; model is then an
    inference-only module with no parameters).
    norm/act: the callables a run trained with from Python (its config.json records only
    their names, "custom:...", since nothing in a run directory is executed).
    """
    from .serving import check_backend, prepare

    check_backend(backend)
    run = RunDir.open(run_dir)
    try:
        cfg = make_config(run.read_json("config.json"))
        cfg = with_model_defaults(cfg.replace(**{k: v for k, v in (("norm", norm), ("act", act)) if v is not None}))
    except NormlabError as exc:
        raise CheckpointError(f"{str(run / 'config.json')!r} is not a valid normlab config: {exc}") from None
    inputs, transform = read_inputs(run)
    dev = resolve_device(device or cfg.device)
    cfg = cfg.replace(precision=precision_on(cfg.precision, dev))
    model = build_model(cfg.section("model"), inputs.model_input_shape, inputs.num_classes)
    state = run.load_weights()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {str(run.path)!r} do not fit model {cfg.model!r}: "
                              f"{str(exc).splitlines()[0]}") from None
    model.to(dev).eval()
    if backend != "torch" and dev.type != "cpu":
        raise ConfigError(f"backend {backend}: runs on the CPU only; use --device cpu or --backend torch")
    example = torch.zeros((1, *inputs.model_input_shape), device=dev)
    model = prepare(model, backend, example, fuse=fuse_bn, channels_last=bool(cfg.channels_last))
    summary = run.read_json("summary.json") if (run / "summary.json").is_file() else {}
    return LoadedRun(run.path, cfg, model, transform, inputs, list(inputs.classes), inputs.input_shape, summary, dev)


def read_inputs(run: RunDir):
    """preprocess.json checked in full, with its input transform: (Inputs, transform).
    A damaged file is a CheckpointError naming what is wrong, never a KeyError deep inside."""
    pre = run.read_json("preprocess.json")
    try:
        inputs = Inputs.from_dict(pre)
        transform = inputs.input_transform()
    except Exception as exc:  # KeyError, base64/shape errors of the fitted transform, ...
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0] or type(exc).__name__
        raise CheckpointError(f"{str(run / 'preprocess.json')!r} is damaged ({detail}); it is written when "
                              f"training starts and cannot be rebuilt without the training data: train the "
                              f"run again") from None
    return inputs, transform


def evaluate_run(run_dir, device: str = "cpu", fuse_bn: bool = False, split: str = "test",
                 backend: str = "torch") -> dict:
    """Recompute test loss and accuracy from the saved weights (as trained: fuse_bn=False
    reproduces the run's own score exactly; True is faster and may move a near-tie).

    split="train" scores the run's training split instead, in eval mode and without
    augmentation: the clean train accuracy (the trainer logs a running one, in train mode with
    dropout active); its keys are train_loss, train_acc, train_top5 and train_size.
    backend: torch or onnxruntime (see `load`; equal to rounding, so a near-tie may move)."""
    r = load(run_dir, device, fuse_bn, backend=backend)
    loader = pipeline.eval_loader(r.config.section("data"), r.inputs, r.device, split)
    res = evaluate(r.model, loader, r.config.precision, bool(r.config.channels_last),
                   r.config.tta if split == "test" else "")
    out = {"run_dir": str(r.run_dir), f"{split}_loss": res["loss"], f"{split}_acc": res["acc"],
           f"{split}_top5": res.get("top5"), f"{split}_size": loader.num_samples}
    if split == "test":
        out["summary_test_acc"] = r.summary.get("final_test_acc")
    return out


def read_image(path, shape, invert: bool = False) -> torch.Tensor:
    """An image file as uint8 (C, H, W), converted the way the training data was: to the
    model's channel count (grayscale or RGB), inverted if asked (before resizing, as if the file
    had been inverted) and resized (antialiased) to its input size."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from .data.imagefolder import check_pixels, to_uint8
    from .data.validate import regular

    c, h, w = shape
    regular(path, "image")  # a FIFO or a device would block or never end: refused before opening
    try:
        check_pixels(path)
        with Image.open(path) as img:
            if img.mode.startswith("I;16"):  # 16-bit grayscale: Pillow's convert("L") would clip at 255
                img = Image.fromarray(to_uint8(np.asarray(img).astype(np.uint16)), "L")
            img = img.convert("L" if c == 1 else "RGB")
            if invert:
                img = ImageOps.invert(img)
            if img.size != (w, h):
                img = img.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=None)
            arr = np.array(img, dtype=np.uint8)  # a writable copy: torch refuses read-only arrays
    except FileNotFoundError:
        raise DataError(f"image {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image {str(path)!r} could not be decoded ({exc}); give a PNG or JPEG file") from None
    except ValueError as exc:
        raise DataError(f"image {str(path)!r} was refused: {exc}") from None
    if c == 1:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    if c not in (1, 3):
        raise DataError(f"the model expects {c} input channels; predict reads grayscale or RGB images only")
    return torch.from_numpy(np.ascontiguousarray(arr))


def read_images(r: LoadedRun, images: Sequence, invert: bool = False) -> torch.Tensor:
    """Image files as the run's test images are given to it: read at the training images' own
    size, then the augmentation's deterministic part (pad, centre crop, resize), as uint8 on the
    run's device. (Runs from before source_shape was recorded read at the input size.)"""
    x = torch.stack([read_image(p, r.inputs.source_shape, invert) for p in images])
    return pipeline.eval_resize(r.inputs)(x).to(r.device)


DARK, LIGHT = 0.35, 0.65  # background levels (0..1) that are clearly dark or clearly light


def training_background(inputs: Inputs) -> Optional[float]:
    """The training images' background level; for runs from before it was recorded, their
    mean pixel where it is clearly dark or light (MNIST's 0.13), else unknown."""
    if inputs.background is not None:
        return inputs.background
    mean = (inputs.normalize or {}).get("mean")
    level = float(np.mean(mean)) if mean else None
    return level if level is not None and not DARK <= level <= LIGHT else None


def invert_hint(inputs: Inputs, x: torch.Tensor, invert: bool) -> Optional[str]:
    """One line when the images (uint8, as the model will see them) have the opposite background
    of the training images', else None."""
    trained = training_background(inputs)
    if trained is None or DARK <= trained <= LIGHT:
        return None
    levels = pipeline.background(x.cpu())
    opposite = (levels > LIGHT) if trained < DARK else (levels < DARK)
    n = int(opposite.sum())
    if not n:
        return None
    was, now = ("dark", "light") if trained < DARK else ("light", "dark")
    fix = "drop --invert" if invert else "add --invert"
    return (f"hint: {n} of {len(levels)} images have a {now} background{' after --invert' if invert else ''} "
            f"where the training images' was {was} ({trained:.2f} on a 0-1 scale); the predictions are likely "
            f"wrong: {fix}")


@torch.inference_mode()
def predict(run_dir, images: Sequence, device: str = "cpu", run: Optional[LoadedRun] = None,
            fuse_bn: bool = True, invert: bool = False, backend: str = "torch",
            hint: Optional[Callable[[str], None]] = None) -> list[dict]:
    """Class and probability for each image file (BatchNorm folded unless fuse_bn=False).

    invert: use 255 - pixel, for dark-on-light images given to a model trained on light-on-dark
    ones (MNIST's digits are white on black; a scan of ink on paper is the opposite).
    hint: called with one line when images' backgrounds are the opposite of the training
    images' (light where they were dark, or the reverse), saying to add or drop --invert
    (default: a UserWarning).
    backend: torch or onnxruntime (see `load`). For many calls, load once and pass `run=`.
    """
    r = run or load(run_dir, device, fuse_bn, backend=backend)
    x = read_images(r, images, invert)
    message = invert_hint(r.inputs, x, invert)
    if message:
        if hint is not None:
            hint(message)
        else:
            warnings.warn(message, stacklevel=2)
    probs = predict_proba(r.model, r.transform(x), parse_tta(r.config.tta))
    p, k = probs.max(1)
    return [{"file": str(f), "class": r.classes[int(ki)], "probability": float(pi)}
            for f, ki, pi in zip(images, k, p)]
