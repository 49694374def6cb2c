import os

# Tests are small; one thread keeps them deterministic and stops oversubscribing 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def quiet():
    """A log function that collects lines instead of printing."""
    lines = []
    f = lines.append
    f.lines = lines
    return f
