"""Batched augmentation on the device: one call transforms a whole uint8 batch (N, C, H, W).

Every random draw comes from the loader's CPU generator (then moves to the batch's device), so a
seed gives the same augmented batches on any device. Geometry is done with index arithmetic and
masks on the whole batch; there is no per-sample Python.

Spec strings (`--augment`): comma-separated ops applied in order, e.g. "crop:4,flip,cutout:8".
  crop:P       pad P zero pixels on each side, take a random H x W window (torchvision RandomCrop(padding=P))
  translate:T  shift by a random integer -T..T pixels in each direction, zero fill
  flip         horizontal flip with probability 1/2
  cutout:S     zero a random S x S square (its centre anywhere in the image; it may stick out)
  rotate:D     rotate by a random angle in -D..D degrees about the centre, zero fill
  zoom:P       scale by a random factor in 1-P/100..1+P/100 about the centre, zero fill
  elastic:A    a smooth random displacement field with RMS A pixels (Simard et al. 2003)
  resize:HxW   resize (antialiased bilinear) to H x W (or resize:S for S x S)
  pad:P        pad P zero pixels on each side: the image grows by 2P (torchvision Pad(P))
  randcrop:S   a random S x S window (torchvision RandomCrop(S)); seed 001's augmentation is
               "pad:4,flip,randcrop:32": 28x28 digits become random 32x32 crops of the 36x36 pad
Test and validation images get the deterministic part of the spec: pad stays, randcrop becomes
the centre S x S window, resize stays (then a resize to the final size if they still differ).
Adjacent rotate, zoom and elastic ops are drawn per image and applied in one resampling
(bilinear), so the image is interpolated once.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from ..errors import ConfigError


def _uniform_int(n: int, low: int, high: int, generator, device) -> torch.Tensor:
    """n integers in [low, high], drawn on the CPU generator."""
    return torch.randint(low, high + 1, (n,), generator=generator).to(device)


def shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """out[n, :, i, j] = x[n, :, i + dy[n], j + dx[n]] or 0 outside the image (|d| <= pad)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    # Every H x W window of the padded batch, as a view (N, 2P+1, 2P+1, C, H, W); picking one
    # window per sample is then a single gather of contiguous images.
    windows = padded.unfold(2, h, 1).unfold(3, w, 1).permute(0, 2, 3, 1, 4, 5)
    return windows[torch.arange(n, device=x.device), dy + pad, dx + pad]


def random_crop(x, pad: int, generator=None):
    n = x.shape[0]
    dy = _uniform_int(n, -pad, pad, generator, x.device)
    dx = _uniform_int(n, -pad, pad, generator, x.device)
    return shift(x, dy, dx, pad)


def pad(x, p: int, generator=None):
    return F.pad(x, (p, p, p, p))


def crop_windows(x, size: int, oy: torch.Tensor, ox: torch.Tensor) -> torch.Tensor:
    """out[n] = x[n, :, oy[n]:oy[n]+S, ox[n]:ox[n]+S], one gather for the batch."""
    windows = x.unfold(2, size, 1).unfold(3, size, 1).permute(0, 2, 3, 1, 4, 5)
    return windows[torch.arange(x.shape[0], device=x.device), oy, ox]


def random_crop_to(x, size: int, generator=None):
    n, _, h, w = x.shape
    if size > min(h, w):
        raise ConfigError(f"augment: randcrop:{size} is larger than the {h}x{w} image; pad first (pad:P)")
    return crop_windows(x, size, _uniform_int(n, 0, h - size, generator, x.device),
                        _uniform_int(n, 0, w - size, generator, x.device))


def center_crop(x, size: int):
    _, _, h, w = x.shape
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, :, top:top + size, left:left + size]


def hflip(x, generator=None, p: float = 0.5):
    mask = torch.rand(x.shape[0], generator=generator) < p
    sel = mask.nonzero().flatten().to(x.device)
    # Flip only the chosen images (index_copy is much cheaper than a where over two full batches).
    return x.clone().index_copy_(0, sel, x.index_select(0, sel).flip(-1))


def cutout(x, size: int, generator=None):
    n, _, h, w = x.shape
    cy = _uniform_int(n, 0, h - 1, generator, x.device).view(n, 1, 1)
    cx = _uniform_int(n, 0, w - 1, generator, x.device).view(n, 1, 1)
    top, left = cy - size // 2, cx - size // 2
    r = torch.arange(h, device=x.device).view(1, h, 1)
    c = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (r >= top) & (r < top + size) & (c >= left) & (c < left + size)
    return x.masked_fill(hole.unsqueeze(1), 0)


def random_warp(x, degrees: float = 0.0, zoom: float = 0.0, elastic: float = 0.0, generator=None):
    """Rotate each image by U(-degrees, degrees), scale it by U(1 - zoom, 1 + zoom) about its
    centre and, with `elastic` > 0, add a smooth random displacement field of RMS `elastic`
    pixels (Simard et al. 2003); one bilinear resampling of the whole uint8 batch, zero fill."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * zoom
    field = elastic_field(x.shape, elastic, generator).to(x.device) if elastic else None
    return rotate_scale(x, angle, scale, field)


def elastic_field(shape, rms_pixels: float, generator=None) -> torch.Tensor:
    """(N, H, W, 2) displacements in affine_grid's [-1, 1] units: uniform noise blurred by a
    Gaussian of sigma H/7 (4 px at 28, as in Simard et al.), rescaled to RMS `rms_pixels`."""
    n, _, h, w = shape
    sigma = max(h, w) / 7
    radius = int(2 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    noise = torch.rand(n * 2, 1, h, w, generator=generator) * 2 - 1
    # separable blur: rows then columns
    noise = F.conv2d(F.pad(noise, (radius, radius, 0, 0), mode="reflect" if radius < w else "replicate"),
                     g.view(1, 1, 1, -1))
    noise = F.conv2d(F.pad(noise, (0, 0, radius, radius), mode="reflect" if radius < h else "replicate"),
                     g.view(1, 1, -1, 1))
    noise = noise.view(n, 2, h, w)
    noise = noise * (rms_pixels / noise.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12))
    # pixels -> normalized coordinates (x spans w pixels over 2 units, y spans h)
    return torch.stack([noise[:, 0] * (2 / w), noise[:, 1] * (2 / h)], dim=-1)


def rotate_scale(x, angle: torch.Tensor, scale: torch.Tensor, field: Optional[torch.Tensor] = None):
    """Rotate image n by angle[n] radians and scale it by scale[n] about its centre, then
    displace by `field` (N, H, W, 2) in [-1, 1] units if given (bilinear, zero fill)."""
    n = x.shape[0]
    # affine_grid maps output coordinates to input ones: the inverse of the wanted transform.
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    if field is not None:
        grid = grid + field
    y = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return y.round_().clamp_(0, 255).to(x.dtype)


def resize(x, size: tuple[int, int], generator=None):
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def _int_arg(op, arg, low=1):
    try:
        v = int(arg)
    except (TypeError, ValueError):
        raise ConfigError(f"augment: {op} needs an integer, e.g. {op}:4, got {op}:{arg}") from None
    if v < low:
        raise ConfigError(f"augment: {op}:{v} must be >= {low}")
    return v


def _float_arg(op, arg):
    try:
        v = float(arg)
    except (TypeError, ValueError):
        raise ConfigError(f"augment: {op} needs a number, e.g. {op}:10, got {op}:{arg}") from None
    limit, high = {"rotate": ("0 < D < 180 degrees", 180), "zoom": ("0 < P < 100 percent", 100),
                   "elastic": ("0 < A < 10 pixels", 10)}[op]
    if not (0 < v < high):
        raise ConfigError(f"augment: {op}:{arg} is out of range ({limit})")
    return v


def _size_arg(arg):
    try:
        parts = [int(p) for p in str(arg).lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConfigError(f"augment: resize needs a size like resize:32 or resize:32x32, got resize:{arg}")
    return tuple(parts)


OPS = ("crop", "translate", "flip", "cutout", "rotate", "zoom", "elastic", "resize", "pad", "randcrop")
WARPS = ("rotate", "zoom", "elastic")  # adjacent ones share one resampling


def parse(spec: Optional[str]) -> list[tuple[str, Any]]:  # the argument's type depends on the op
    """'crop:4,flip' -> [('crop', 4), ('flip', None)], or ConfigError naming the bad part."""
    ops = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part or part == "none":
            continue
        op, _, arg = part.partition(":")
        op = op.strip().lower()
        if op not in OPS:
            from ..errors import unknown_name

            raise unknown_name("augmentation", op, OPS)
        if op in ("crop", "translate", "cutout", "pad", "randcrop"):
            ops.append((op, _int_arg(op, arg)))
        elif op in WARPS:
            ops.append((op, _float_arg(op, arg)))
        elif op == "flip":
            if arg:
                raise ConfigError(f"augment: flip takes no argument, got {part!r}")
            ops.append((op, None))
        else:
            ops.append((op, _size_arg(arg)))
    return ops


def output_size(spec, size) -> tuple[int, int]:
    h, w = (int(s) for s in size)
    for op, arg in parse(spec):
        if op == "resize":
            h, w = arg
        elif op == "pad":
            h, w = h + 2 * arg, w + 2 * arg
        elif op == "randcrop":
            if arg > min(h, w):
                raise ConfigError(f"augment: randcrop:{arg} is larger than the {h}x{w} image at that "
                                  f"point; pad first (e.g. pad:4,randcrop:{arg})")
            h, w = arg, arg
    return h, w


def deterministic(spec, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """What test and validation images get: pad as in training, a centre crop for randcrop,
    resize; then a resize to the training size `size` if they still differ."""
    for op, arg in parse(spec):
        if op == "pad":
            x = pad(x, arg)
        elif op == "randcrop" and arg <= min(x.shape[-2:]):
            x = center_crop(x, arg)
        elif op == "resize":
            x = resize(x, arg)
    return resize(x, size)


def make_augment(spec: Optional[str]) -> Optional[Callable]:
    """The `augment(x_uint8, generator)` hook for a spec, or None for no augmentation."""
    ops = parse(spec)
    if not ops:
        return None

    # Fold each run of adjacent rotate/zoom/elastic ops into one ("warp", {...}) step.
    steps: list = []
    for op, arg in ops:
        if op in WARPS:
            if not (steps and steps[-1][0] == "warp"):
                steps.append(("warp", {}))
            steps[-1][1][op] = arg
        else:
            steps.append((op, arg))

    def augment(x: torch.Tensor, generator=None) -> torch.Tensor:
        for op, arg in steps:
            if op == "warp":
                x = random_warp(x, arg.get("rotate", 0.0), arg.get("zoom", 0.0) / 100, arg.get("elastic", 0.0),
                                generator)
            elif op in ("crop", "translate"):
                x = random_crop(x, arg, generator)
            elif op == "flip":
                x = hflip(x, generator)
            elif op == "cutout":
                x = cutout(x, arg, generator)
            elif op == "pad":
                x = pad(x, arg)
            elif op == "randcrop":
                x = random_crop_to(x, arg, generator)
            else:
                x = resize(x, arg)
        return x

    return augment
