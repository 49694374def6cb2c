"""The tutorials' notebooks (examples/*.ipynb) run top to bottom on small settings, and their
committed outputs come from a full run of the code they contain.

CI executes each notebook with NORMLAB_NOTEBOOK_QUICK=1 (tiny datasets and epochs, same code
path); any cell that raises fails the test. The committed outputs are from a full-setting run;
that run records a hash of the code cells in the notebook's metadata, so editing a cell without
re-running the notebook fails `test_committed_outputs_are_from_a_full_run_of_this_code`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
SEEDS = ("000", "001", "002", "003", "004")  # one notebook per tutorial, named by its number


_spec = importlib.util.spec_from_file_location("run_notebooks", EXAMPLES / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)
code_hash = run_notebooks.code_hash  # the same hash the full run recorded


def test_one_notebook_per_tutorial():
    assert [p.name[:2] for p in NOTEBOOKS] == [s[1:] for s in SEEDS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_are_from_a_full_run_of_this_code(path):
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("normlab", {})
    assert meta.get("settings") == "full", f"{path.name}: outputs are not from a full-setting run"
    assert meta.get("code_sha256") == code_hash(nb), \
        f"{path.name}: code changed since its outputs were made; re-run it: python examples/run_notebooks.py {path.name}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    # One uninterrupted run, top to bottom, no errors.
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), "no inline plot"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_small_settings(path, tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    # Raises CellExecutionError (with the cell and its traceback) on the first failing cell.
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("quick settings" in o.get("text", "") for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)
