"""Every shell command in README.md and docs/*.md runs as written (scripts/doc_commands.py).

One test per page, so a failure names the page; blocks marked `<!-- doc-test: long -->` run
with `python scripts/doc_commands.py --all` instead.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("doc_commands", ROOT / "scripts" / "doc_commands.py")
doc_commands = importlib.util.module_from_spec(spec)
sys.modules["doc_commands"] = doc_commands  # dataclasses look their module up there
spec.loader.exec_module(doc_commands)

PAGES = [p for p in doc_commands.documents() if any(b.mode == "run" for b in doc_commands.blocks(p))]


def errors(out: str) -> str:
    """normlab's one-line errors, which torchrun's own report would push out of the tail."""
    return "\n".join(line for line in out.splitlines() if line.startswith("normlab") and "error:" in line)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_command_on_the_page_runs(page):
    failures = doc_commands.run_document(page, log=lambda *a: None)
    report = "\n\n".join(f"{b.where}:\n{b.text}\n--- normlab's errors:\n{errors(out)}\n--- output (end):\n{out[-2000:]}"
                         for b, out in failures)
    assert not failures, report


def test_blocks_and_directives_are_read(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("intro\n<!-- doc-test: skip (installs) -->\n```bash\npip install x\n```\n\n```bash\n"
                    "echo one\necho two\n```\n<!-- doc-test: long (8 min) -->\n```bash\nsleep 1\n```\n```\nnot bash\n```\n")
    got = [(b.line, b.text, b.mode) for b in doc_commands.blocks(page, tmp_path)]
    assert got == [(3, "pip install x", "skip"), (7, "echo one\necho two", "run"), (12, "sleep 1", "long")]


def test_a_failing_or_crashing_block_is_reported(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```bash\ntrue\n```\n```bash\nfalse\n```\n```bash\n"
                    "python -c 'raise SystemExit(0) if 0 else 1/0' || true\n```\n")
    failures = doc_commands.run_document(page, log=lambda *a: None, root=tmp_path)
    # `false` exits 1; the third exits 0 but printed a traceback
    assert [b.line for b, _ in failures] == [4, 7]
    assert "ZeroDivisionError" in failures[1][1]
