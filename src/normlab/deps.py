"""The packages normlab imports on first use, turned into one-line errors when they are missing or
do not fit this torch: a CPU torch beside a CUDA torchvision (or two releases apart) fails inside
torchvision's import with "operator torchvision::nms does not exist", which names neither package's
version nor the fix.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType

import torch

from .errors import NormlabError

# Import name -> the name pip installs it by, where the two differ.
PIP_NAMES = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml", "cv2": "opencv-python"}
# normlab's extras, for the packages only they install.
EXTRAS = {"onnx": "onnx", "onnxruntime": "onnx", "tensorboard": "tensorboard"}


class DependencyError(NormlabError):
    """A package normlab needs is missing or does not work with this torch."""


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def matching_torchvision(torch_version: str) -> str:
    """The torchvision release line built for a torch release (2.4 -> 0.19, ..., 2.14 -> 0.29)."""
    major, minor = (int(p) for p in torch_version.split("+")[0].split(".")[:2])
    return f"0.{minor + 15}" if major == 2 else "the one pytorch.org lists for it"


def torchvision_problem(exc: BaseException) -> str:
    tv, th = version("torchvision"), torch.__version__
    cause = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    want = matching_torchvision(th)
    build = "a CPU" if "+cpu" in th or not torch.backends.cuda.is_built() else "a CUDA"
    return (f"torchvision {tv} does not work with torch {th} ({cause}); install the torchvision built for "
            f"this torch, from the same index: pip install 'torchvision=={want}.*' (torch {th} is {build} build; "
            f"for the CPU pair: pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu)")


def torchvision(module: str = "torchvision") -> ModuleType:
    """torchvision, or one of its modules, imported; a one-line DependencyError if it cannot be."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == "torchvision":
            raise DependencyError(missing_message(exc.name)) from None
        raise DependencyError(torchvision_problem(exc)) from None
    except Exception as exc:  # RuntimeError (operators missing), OSError (a CUDA library missing), ...
        raise DependencyError(torchvision_problem(exc)) from None


def missing_message(module: str, needed_by: str = "") -> str:
    top = module.split(".")[0]
    pip = PIP_NAMES.get(top, top)
    extra = EXTRAS.get(top)
    fix = f"pip install {pip}" + (f" (or normlab's extra: pip install -e '.[{extra}]')" if extra else "")
    by = f" (needed by {needed_by})" if needed_by else ""
    return f"the package {pip!r} is not installed{by}: {fix}"
