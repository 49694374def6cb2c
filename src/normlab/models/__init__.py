"""The model zoo. Importing a family module registers its models."""

from __future__ import annotations

import re
from typing import Optional

from . import classic, densenet, digitnet, googlenet, lenet, mlp, nin, resnet, rnn, seed003  # noqa: F401  (registration side effects)
from .registry import MODELS, ModelSpec, create_model, get_spec, list_models, register


def catalog(family: Optional[str] = None) -> list[dict]:
    """name, family, parameter count at the default input and 10 classes, default input, description.

    Models are built on the meta device, so counting even the ImageNet nets allocates nothing.
    """
    import torch

    from ..errors import unknown_name

    families = sorted({s.family for s in MODELS.values()})
    if family is not None and family not in families:
        raise unknown_name("model family", family, families)
    rows = []
    # Natural order, so resnet20 comes before resnet110.
    def key(name):
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]

    for name in sorted(list_models(), key=key):
        spec = MODELS[name]
        if family is not None and spec.family != family:
            continue
        with torch.device("meta"):
            model = create_model(name, num_classes=spec.num_classes or 10)
        rows.append({"name": name, "family": spec.family, "params": sum(p.numel() for p in model.parameters()),
                     "input": list(spec.default_input), "description": spec.description})
    return rows


__all__ = ["MODELS", "ModelSpec", "catalog", "create_model", "get_spec", "list_models", "register"]
