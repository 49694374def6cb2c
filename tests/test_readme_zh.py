"""README.zh-CN.md's commands run as written (the Chinese quickstart must not drift from the CLI).

Every `.venv/bin/normlab ...` line of its bash blocks runs, in order, in a fresh folder (with the
repository's experiments/ beside it), as `python -m normlab ...` from this interpreter (forked from a
warm server that imported torch once, as the docs' commands are: scripts/warm_normlab.py); the Python
block runs as a script; the error example prints what the quickstart shows. The install and test
lines are the ones CI itself runs (.ci/run); the Jupyter line starts a server and is not run.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
NOT_RUN = {"python3 -m venv .venv", ".venv/bin/pip install -e .", '.venv/bin/pip install -e ".[test]"',
           ".venv/bin/pytest", ".venv/bin/pip install notebook", ".venv/bin/jupyter notebook examples/"}


def bash_commands() -> list[str]:
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", TEXT, re.S):
        for line in block.splitlines():
            line = re.split(r"\s+#", line)[0].strip()
            cmds += [part.strip() for part in line.split("&&") if part.strip()]
    return cmds


def normlab(args: list[str], cwd: Path, warm=None) -> subprocess.CompletedProcess:
    """`python -m normlab ARGS`, or the same forked from a warm server (the `warm_server` fixture)."""
    cmd = warm.client if warm else [sys.executable, "-m", "normlab"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_readme_zh_is_linked_from_the_top_of_readme():
    head = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:5]
    assert any("README.zh-CN.md" in line for line in head)
    for nb in sorted((ROOT / "examples").glob("*.ipynb")):
        assert f"examples/{nb.name}" in TEXT, f"README.zh-CN.md does not link {nb.name}"


def test_every_command_runs_as_written(tmp_path, warm_server):
    (tmp_path / "experiments").symlink_to(ROOT / "experiments", target_is_directory=True)
    cmds = bash_commands()
    assert set(c for c in cmds if not c.startswith(".venv/bin/normlab")) <= NOT_RUN
    ran = []
    for cmd in cmds:
        if not cmd.startswith(".venv/bin/normlab"):
            continue
        proc = normlab(shlex.split(cmd)[1:], tmp_path, warm_server)
        assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        ran.append(cmd)
    assert len(ran) >= 8
    # What the workflows promise to leave behind.
    assert (tmp_path / "runs/latest/weights.safetensors").is_file()
    assert (tmp_path / "runs/sweeps/quick/results.csv").is_file()
    assert (tmp_path / "runs/claims/claims.md").is_file()
    assert (tmp_path / "stats.png").is_file()


def test_python_block_runs(tmp_path):
    (code,) = re.findall(r"```python\n(.*?)```", TEXT, re.S)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recomputed, at_training = map(float, proc.stdout.split()[-2:])
    assert recomputed == at_training


def test_error_example_prints_what_it_shows(tmp_path):
    shown = re.search(r"\$ normlab (train --model lenet-nb)\n(.*?)\.\.\.", TEXT).groups()
    proc = normlab(shlex.split(shown[0]), tmp_path)
    assert proc.returncode == 2
    assert shown[1] in proc.stderr
