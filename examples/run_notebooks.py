"""Execute the tutorials' notebooks top to bottom and save them with their outputs.

    python examples/run_notebooks.py                 # all five, full settings, outputs saved in place
    python examples/run_notebooks.py 02_nn_basics.ipynb
    python examples/run_notebooks.py --quick         # tiny settings (as CI), nothing saved

A full run records, in each notebook's metadata, a hash of its code cells: tests/test_notebooks.py
checks that the committed outputs were made from the code beside them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def code_hash(nb) -> str:
    """sha256 over the code cells' sources, in order."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode("utf-8") + b"\0")
    return h.hexdigest()


def main(argv=None) -> int:
    import nbformat
    from nbclient import NotebookClient

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="notebook names in examples/ (default: all)")
    ap.add_argument("--quick", action="store_true", help="NORMLAB_NOTEBOOK_QUICK=1; outputs are not saved")
    args = ap.parse_args(argv)
    paths = [HERE / n for n in args.notebooks] or sorted(HERE.glob("*.ipynb"))
    if args.quick:
        os.environ["NORMLAB_NOTEBOOK_QUICK"] = "1"
    else:
        os.environ.pop("NORMLAB_NOTEBOOK_QUICK", None)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.time()
        with tempfile.TemporaryDirectory() as cwd:
            NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": cwd}}).execute()
        if not args.quick:
            nb.metadata["normlab"] = {"settings": "full", "code_sha256": code_hash(nb)}
            nbformat.write(nb, path)
        print(f"{path.name}: {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
