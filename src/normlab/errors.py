"""The few exception types normlab raises on purpose.

The CLI prints these without a traceback (they carry a message written for a person); anything
else reaching the top is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib


class NormlabError(Exception):
    """Base class: an error whose message already says what went wrong and how to fix it."""


class ConfigError(NormlabError, ValueError):
    """A configuration value is invalid (unknown name, out-of-range number, bad file)."""


class DataError(NormlabError):
    """A dataset is missing, malformed, or does not fit the model."""


class CheckpointError(NormlabError):
    """A run directory or checkpoint is missing, corrupt, or unsafe to load."""

    errno: "int | None" = None  # set where the machine caused it (a full disk): a sweep retries such a run


def unknown_name(kind: str, name: str, valid) -> ConfigError:
    """ConfigError for an unknown `name`, listing the valid choices and the closest match."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}.{hint} Valid choices: {', '.join(valid)}.")


class TrainingError(NormlabError):
    """Training cannot go on (the loss diverged); the last good checkpoint is kept."""


class DistributedError(NormlabError):
    """Under torchrun, another process died or stalled; not the user's input, hence exit code 1."""

    exit_code = 1


class WriteError(NormlabError, OSError):
    """A file could not be written (disk full, no permission); the previous version is intact."""

    def __init__(self, path, cause: OSError):
        self.path, self.cause = path, cause
        reason = f"[Errno {cause.errno}] {cause.strerror}" if cause.strerror else str(cause)
        super().__init__(f"could not write {str(path)!r}: {reason}; nothing earlier was lost (the file's "
                         f"previous version, if any, is unchanged)")
        self.errno = cause.errno

    def __str__(self) -> str:
        return self.args[0]
