"""docs/architecture.md's examples run as written (each Python block, in order, in a fresh
namespace, in a temporary directory so their runs/ land there)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parent.parent / "docs" / "architecture.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_its_examples():
    text = DOC.read_text(encoding="utf-8")
    for heading in ("## Layers", "## From the command line to a run directory", "## Adding a model",
                    "## Adding a norm layer", "## Adding a hook"):
        assert heading in text
    assert len(BLOCKS) == 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index, tmp_path, monkeypatch, capsys):
    from normlab.models.registry import MODELS

    monkeypatch.chdir(tmp_path)
    before = set(MODELS)
    try:
        exec(compile(BLOCKS[index], f"{DOC.name} block {index + 1}", "exec"), {"__name__": "doc_example"})
    finally:
        for name in set(MODELS) - before:  # the model example registers one for its run only
            del MODELS[name]
    out = capsys.readouterr().out
    if "class StopAtAccuracy" in BLOCKS[index]:
        assert re.search(r"reached 0\.\d+ at epoch \d+", out) and re.search(r"^\d+ epochs$", out, re.M)
    if "RMSNorm2d" in BLOCKS[index]:
        assert "custom:torch.nn.modules.normalization.GroupNorm(2)" in out
        assert re.search(r"^[1-9]\d* RMSNorm2d layers$", out, re.M)
    if "OptimConfig" in BLOCKS[index]:
        assert "OptimConfig(optimizer='sgd', lr=0.1" in out
