"""What a run's inputs were, as one typed record: written to preprocess.json when training
starts, read back by everything that feeds the trained model (eval, predict, export, reports).

Runs written by older versions lack some fields; `Inputs.from_dict` is the one place that knows
what each lacks and what it meant, so no other module reads preprocess.json by key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .loader import Normalize


def _shape(d: dict, key: str, default=None) -> tuple:
    v = d.get(key, default)
    if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(n, int) and n > 0 for n in v)):
        raise ValueError(f"{key} must be a list of 3 positive integers, got {v!r}")
    return tuple(v)


@dataclass(frozen=True)
class Inputs:
    input_shape: tuple            # (C, H, W) of the images the model is given, after resize/pad/crop
    classes: tuple                # class names, in label order
    source_shape: tuple           # the training images' own (C, H, W), before augmentation's pad/crop
    model_input_shape: tuple      # what the model sees: input_shape, or (D, 1, 1) after pca:D
    transform: Optional[dict] = None   # the fitted preprocessing (data/preprocess.py)
    normalize: Optional[dict] = None   # per-channel mean/std: the record before --preprocess existed
    augment: str = ""
    val_split: float = 0.0
    background: Optional[float] = None  # the training images' border level, 0..1 (None: not recorded)
    dataset: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def size(self) -> tuple:
        return tuple(self.input_shape[1:])

    def input_transform(self):
        """uint8 batch -> model input, as fitted at training time."""
        from . import preprocess as preprocess_mod

        if self.transform is not None:
            return preprocess_mod.Preprocess.from_dict(self.transform)
        if self.normalize is None:
            raise ValueError("it records neither transform nor normalize")
        return Normalize.from_dict(self.normalize)

    def to_dict(self) -> dict:
        """The preprocess.json record (lists, not tuples, as JSON has them)."""
        d: dict[str, Any] = {"input_shape": list(self.input_shape), "source_shape": list(self.source_shape),
                             "classes": list(self.classes), "dataset": self.dataset,
                             "model_input_shape": list(self.model_input_shape), "augment": self.augment,
                             "val_split": self.val_split}
        for key in ("transform", "normalize", "background"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_dict(cls, d) -> "Inputs":
        """A preprocess.json record, of this version or an older one, its shapes and classes checked
        (ValueError names what is wrong); the fitted transform is checked where it is rebuilt,
        `input_transform()` (api.read_inputs does both, so it is decoded once)."""
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        input_shape = _shape(d, "input_shape")
        classes = d.get("classes")
        if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
            raise ValueError(f"classes must be a non-empty list of names, got {classes!r}")
        background = d.get("background")
        return cls(input_shape, tuple(classes),
                     source_shape=_shape(d, "source_shape", list(input_shape)),  # older runs: read at input size
                     model_input_shape=_shape(d, "model_input_shape", list(input_shape)),
                     transform=d.get("transform"), normalize=d.get("normalize"), augment=d.get("augment") or "",
                     val_split=float(d.get("val_split") or 0.0),
                     background=float(background) if isinstance(background, (int, float)) else None,
                     dataset=d.get("dataset") or {})
