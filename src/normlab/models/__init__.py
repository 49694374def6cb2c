"""The model zoo. Importing a family module registers its models."""

from . import lenet, mlp  # noqa: F401  (registration side effects)
from .registry import MODELS, ModelSpec, create_model, get_spec, list_models, register

__all__ = ["MODELS", "ModelSpec", "create_model", "get_spec", "list_models", "register"]
