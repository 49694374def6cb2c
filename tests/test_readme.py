"""The README's figures and snippets, as a new user meets them (issue 32).

- The main job's accuracies in the README are what `normlab train --seed S --threads 2` prints
  here: to the digit on the machine they were measured on (the development machine, described in
  tests/reference/bit_for_bit.json), and within 0.01 elsewhere (another CPU's fp32 kernels round
  differently, so a run there may end a few test images apart). The bound is about three times
  the spread measured on 2026-12-07 over the code paths one machine can take: seeds 0-2, AVX-512
  and AVX2 kernels (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2), 1 and 2 threads, moved the
  final accuracy by at most 0.003 from the README's figures (seed 2 on AVX2: 0.980).
- Every other accuracy the README quotes for a command names where and in what precision it was
  measured.
- The Python snippet runs twice in a row in one folder.
- README.zh-CN.md keeps step with README.md: the same statistics method, options that exist and
  that the English pages use, and figures that the English page gives.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from normlab import machine
from normlab.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
EN = (ROOT / "README.md").read_text(encoding="utf-8")
ZH = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
DEV_MACHINE = json.loads((ROOT / "tests" / "reference" / "bit_for_bit.json").read_text())["machine"]


def main_job_table() -> dict[int, float]:
    rows = re.findall(r"^\| (\d) \| (0\.\d{3}) \| [\d.]+ s \|$", EN, re.M)
    assert len(rows) == 3, "the README's table of the main job's seeds moved"
    return {int(s): float(a) for s, a in rows}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_main_job_accuracy_is_the_readme_figure(seed, tmp_path, monkeypatch, capsys):
    from normlab.cli import main

    want = main_job_table()[seed]
    monkeypatch.chdir(tmp_path)
    # --threads 2: what the command uses on the 2-core machine of the table (torch's default there);
    # the thread count changes the summation order, and seed 1 ends at 0.977 on one thread.
    assert main(["train", "--seed", str(seed), "--threads", "2", "--no-progress", "--out", "run"]) == 0
    got = float(re.search(r"^done: test acc (0\.\d+)", capsys.readouterr().out, re.M).group(1))
    if machine.differences(DEV_MACHINE):
        assert abs(got - want) <= 0.01  # another CPU kind: 3x the measured spread (docstring)
    else:
        assert f"{got:.3f}" == f"{want:.3f}"


def test_every_quoted_recipe_accuracy_says_where_it_was_measured():
    """Recipe accuracies differ between CPU kinds and precisions: each quote names both, in the
    README's headline table (per row) and in docs/performance.md (per paragraph)."""
    rows = [r for r in EN.splitlines() if r.startswith("|") and "--recipe" in r and re.search(r"\b9\d\.\d%", r)]
    assert len(rows) >= 3
    for r in rows:
        assert re.search(r"measured on|the AMD EPYC", r) and re.search(r"\b(bf16|fp32)\b", r), r
    perf = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    paragraphs = [p for p in perf.split("\n\n") if "--recipe" in p and re.search(r"\b9\d\.\d%", p)]
    assert len(paragraphs) >= 3
    for p in paragraphs:
        assert "measured on" in p and re.search(r"\b(bf16|fp32)\b", p), p[:200]


def test_python_snippet_runs_twice_in_one_folder(tmp_path):
    code = re.findall(r"```python\n(.*?)```", EN, re.S)[0]
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        recomputed, at_training = map(float, r.stdout.split()[-2:])
        assert recomputed == at_training


# ---------------------------------------------------------------- the Chinese page in step
def commands(text: str) -> list[list[str]]:
    """Every `normlab VERB ...` command of a page's bash blocks, as argv lists."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#", line)[0]
            for part in line.split("&&"):
                try:
                    words = shlex.split(part.replace(".venv/bin/normlab", "normlab"))
                except ValueError:  # a here-document's body, not a command
                    continue
                if words[:1] == ["normlab"]:
                    out.append(words[1:])
    return out


def options_used(text: str) -> set[tuple[str, str]]:
    return {(c[0], w.split("=")[0]) for c in commands(text) if c for w in c[1:] if w.startswith("--")}


def test_the_chinese_page_uses_the_same_statistics_as_the_english_one():
    assert "paired t interval" in EN and "配对 t" in ZH
    assert "Holm" in EN and "Holm" in ZH
    assert ("bootstrap" in ZH) <= ("bootstrap" in EN)
    assert "differences.csv" in ZH


def test_the_chinese_pages_options_exist_and_the_english_pages_use_them():
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "command").choices
    english = options_used(EN)
    for page in sorted((ROOT / "docs").glob("*.md")):
        english |= options_used(page.read_text(encoding="utf-8"))
    zh = options_used(ZH)
    assert len(zh) >= 8
    for verb, option in sorted(zh):
        known = {s for a in verbs[verb]._actions for s in a.option_strings}
        assert option in known, f"README.zh-CN.md: normlab {verb} has no option {option}"
        assert (verb, option) in english, f"README.zh-CN.md uses normlab {verb} {option}, which no English page shows"
    assert {c[0] for c in commands(ZH)} <= {verb for verb, _ in english} | {c[0] for c in commands(EN)}


def test_the_chinese_pages_figures_are_the_english_pages():
    figures = set(re.findall(r"\d[\d,]*(?:\.\d+)?(?= ?(?:GB|%|ex/s|张| /))", ZH))
    assert {"5,000", "1.2", "6.1"} <= figures
    for f in figures:
        assert f in EN, f"README.zh-CN.md quotes {f}, which README.md does not"
