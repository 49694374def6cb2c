"""Test-time augmentation: average the model's probabilities over a few fixed views of each image.

Views are cheap, deterministic transforms of the already normalized batch:
  shift  the image and its four one-pixel shifts (up, down, left, right). The pixels that come
         in at the border repeat the border (replicate padding), so no value outside the
         image's own range appears, whatever the normalization.
  flip   the image and its mirror image (left-right); right for natural images, wrong for digits.
Both together give every shift with and without the mirror (10 views).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import ConfigError

VIEWS = ("shift", "flip")
_SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def parse(spec: Optional[str]) -> tuple[str, ...]:
    """'shift,flip' -> ('shift', 'flip'); '' or 'none' -> ()."""
    names = []
    for part in (spec or "").split(","):
        part = part.strip().lower()
        if not part or part == "none":
            continue
        if part not in VIEWS:
            from ..errors import unknown_name

            raise unknown_name("tta view", part, VIEWS)
        if part in names:
            raise ConfigError(f"tta: {part!r} is given twice; use e.g. --tta shift,flip")
        names.append(part)
    return tuple(names)


def shift_image(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[..., i, j] = x[..., i + dy, j + dx], with the border repeated where that falls outside."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    padded = F.pad(x, (p, p, p, p), mode="replicate")
    return padded[..., p + dy:p + dy + h, p + dx:p + dx + w]


def views(x: torch.Tensor, names: tuple[str, ...]):
    """Yield each view of batch x (N, C, H, W) that the parsed spec asks for; the first is x."""
    shifts = _SHIFTS if "shift" in names else _SHIFTS[:1]
    flips = (False, True) if "flip" in names else (False,)
    for flip in flips:
        base = x.flip(-1) if flip else x
        for dy, dx in shifts:
            yield shift_image(base, dy, dx)


def predict_proba(model, x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
    """Mean softmax over the views; with no views, the softmax of one forward pass."""
    if not names:
        return model(x).float().softmax(1)
    total: Optional[torch.Tensor] = None
    count = 0
    for v in views(x, names):
        p = model(v).float().softmax(1)
        total = p if total is None else total.add_(p)
        count += 1
    assert total is not None  # names is not empty
    return total / count
