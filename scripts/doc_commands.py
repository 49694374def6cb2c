"""Run every shell command that README.md and docs/*.md show, as a reader would type them.

Each fenced ```bash block is run with bash (-e -o pipefail), in order, one temporary folder per
document (so a block can use what an earlier block of the same page made, as a reader's session
would). `normlab`, `torchrun`, `python`, `python3` and `.venv/bin/...` resolve to this Python's
environment. The folder holds copies of the repository's examples/, experiments/ and
benchmarks/, so a command can change nothing in the repository. Data sets come from a temporary
data root, offline (NORMLAB_OFFLINE=1): nothing leaves the machine.

An HTML comment on the line just before a fence says how to treat the block:
    <!-- doc-test: skip (why) -->   never run here (the install commands, which CI runs itself)
    <!-- doc-test: long (why) -->   too long for every CI run; run with --all
A block fails on a non-zero exit or a Python traceback in its output.

Each page's `normlab` commands are forked from a server that imported torch once
(scripts/warm_normlab.py: normlab itself is imported fresh by each, in its own environment; a
command whose environment changes what torch reads at import runs cold), which saves the 2-3 s
of torch's import per command.

    python scripts/doc_commands.py                 # what CI runs (tests/test_docs.py)
    python scripts/doc_commands.py --all           # the long blocks too
    python scripts/doc_commands.py docs/data.md    # one page
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```bash\s*$")
DIRECTIVE = re.compile(r"<!--\s*doc-test:\s*(skip|long)\b(.*?)-->")
COPIED = ("examples", "experiments", "benchmarks", "tests")
WARM = Path(__file__).resolve().parent / "warm_normlab.py"


@dataclass
class Block:
    doc: str
    line: int  # the fence's line, 1-based
    text: str
    mode: str  # "run", "long" or "skip"

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def documents(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").glob("*.md"))]


def blocks(path: Path, root: Path = ROOT) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            m = DIRECTIVE.search(lines[i - 1]) if i > 0 else None
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append(Block(str(path.relative_to(root)), start, "\n".join(body), m.group(1) if m else "run"))
        i += 1
    return out


def shims(bindir: Path, warm: Path = None) -> None:
    """The reader's `normlab`, `torchrun`, `python`: this interpreter, wherever it lives; with
    `warm` (a warm_normlab.py server's socket) `normlab` is forked from that server."""
    bindir.mkdir(parents=True, exist_ok=True)
    exe = sys.executable
    normlab = f'"{exe}" "{WARM}" client "{warm}"' if warm else f'"{exe}" -m normlab'
    for name, target in (("normlab", normlab), ("torchrun", f'"{exe}" -m torch.distributed.run'),
                         ("python", f'"{exe}"'), ("python3", f'"{exe}"'), ("pytest", f'"{exe}" -m pytest')):
        p = bindir / name
        p.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        p.chmod(0o755)


def session(tmp: Path, root: Path = ROOT, warm: Path = None) -> dict:
    """The page's folder and environment; `warm`: the socket of the warm_normlab.py server its
    `normlab` commands go through (run_document starts and stops it)."""
    for name in COPIED:
        if (root / name).is_dir():
            shutil.copytree(root / name, tmp / name, ignore=shutil.ignore_patterns("results", "__pycache__", "runs"))
    env = dict(os.environ, PATH=f"{tmp / '.shims'}{os.pathsep}{os.environ.get('PATH', '')}",
               NORMLAB_DATA=str(tmp / ".data"), NORMLAB_OFFLINE="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(root / "src"), os.environ.get("PYTHONPATH")])))
    env.pop("NORMLAB_DATA_MIRROR", None)
    shims(tmp / ".shims", warm)
    return env


def run_block(b: Block, cwd: Path, env: dict, timeout: float = 900) -> tuple[bool, str, float]:
    # `.venv/bin/normlab` in the README is the same program as `normlab` after activation
    script = b.text.replace(".venv/bin/", "")
    t0 = time.perf_counter()
    try:
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return False, f"timed out after {timeout:.0f} s\n{e.stdout or ''}{e.stderr or ''}", time.perf_counter() - t0
    out = r.stdout + r.stderr
    ok = r.returncode == 0 and "Traceback (most recent call last)" not in out
    return ok, f"exit {r.returncode}\n{out}", time.perf_counter() - t0


def run_document(path: Path, include_long: bool = False, log=print, root: Path = ROOT,
                 warm: bool = True) -> list[tuple[Block, str]]:
    """Run a page's blocks in order; the failures as (block, output). `warm`: its `normlab`
    commands are forked from a server that imported torch once (scripts/warm_normlab.py)."""
    failures = []
    todo = [b for b in blocks(path, root) if b.mode == "run" or (include_long and b.mode == "long")]
    if not todo:
        return failures
    with tempfile.TemporaryDirectory(prefix="normlab-doc-") as tmp:
        sock = Path(tmp) / ".warm.sock" if warm else None
        env = session(Path(tmp), root, sock)
        # the shim runs a command cold while (or if) no server answers
        server = warm_normlab().start(sock, env) if warm else None
        try:
            for b in todo:
                ok, out, secs = run_block(b, Path(tmp), env)
                log(f"{'ok  ' if ok else 'FAIL'} {b.where} ({secs:.1f} s)")
                if not ok:
                    failures.append((b, out))
        finally:
            if server is not None:
                warm_normlab().stop(server)
    return failures


def warm_normlab():
    spec = importlib.util.spec_from_file_location("warm_normlab", WARM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("docs", nargs="*", help="pages to run (default: README.md and docs/*.md)")
    ap.add_argument("--all", action="store_true", help="also the blocks marked long")
    args = ap.parse_args(argv)
    pages = [Path(p).resolve() for p in args.docs] or documents()
    failures = []
    for page in pages:
        failures += run_document(page, args.all)
    for b, out in failures:
        print(f"\n--- {b.where} failed:\n{b.text}\n--- output:\n{out[-3000:]}")
    print(f"{len(failures)} block(s) failed" if failures else "every block ran")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
