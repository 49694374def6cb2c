"""normlab: build, train, inspect and compare classic image classifiers, with normalization,
regularization and residual connections as first-class, swappable parts."""

from ._version import __version__  # noqa: E402,F401
from .api import LoadedRun, evaluate_run, load, predict  # noqa: E402
from .config import TrainConfig, make_config  # noqa: E402
from .errors import CheckpointError, ConfigError, DataError, NormlabError  # noqa: E402
from .models import create_model, list_models  # noqa: E402
from .train.hooks import Hook  # noqa: E402
from .train.trainer import Result, train  # noqa: E402

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "Hook", "LoadedRun", "NormlabError", "Result", "TrainConfig",
    "create_model", "evaluate_run", "list_models", "load", "make_config", "predict", "train",
]
