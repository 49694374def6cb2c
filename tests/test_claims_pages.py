"""The committed claims pages: every number a page prints for a comparison (effect, interval, p,
Holm-adjusted p, verdict, seeds needed, n) is the one in that comparison's row of the
differences.csv beside it, and the committed page is what the code renders from its claims.json."""

import csv
import json
import math
from pathlib import Path

import pytest

from normlab.experiments import claims
from normlab.analysis.claims import comparisons as claim_shapes

REPORTS = Path(__file__).resolve().parents[1] / "experiments" / "reports"
PAGES = ("claims", "claims-quick")


def fmt(x: float, unit: str, sign: bool = True) -> str:
    """Written out here, not with the renderer's helpers: 2 decimals for points, 4 otherwise."""
    d = 2 if "points" in unit else 4
    return f"{x:+,.{d}f}" if sign else f"{x:,.{d}f}"


def fmt_p(p: str) -> str:
    return "–" if p == "" else "< 0.0001" if float(p) < 1e-4 else f"{float(p):.4f}"


def load(page):
    doc = json.loads((REPORTS / page / "claims.json").read_text())
    rows = list(csv.DictReader(open(REPORTS / page / "differences.csv", newline="")))
    return doc, rows


def table_rows(md: str, first_cell: str) -> list[list[str]]:
    out = []
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and cells[0] == first_cell:
            out.append(cells)
    return out


@pytest.mark.parametrize("page", PAGES)
def test_every_printed_number_comes_from_its_differences_row(page):
    doc, rows = load(page)
    md = claims.render_markdown(doc)
    by_key = {(r["claim"], r["cell"], r["baseline"]): r for r in rows}
    checked = 0
    for r in doc["claims"]:
        tests = claim_shapes.tests_of(r)
        preds = list(((r.get("numbers") or {}).get("predictions") or {}).items())
        for i, t in enumerate(tests):
            base, arm = t["labels"]
            row = by_key.pop((r["name"], arm, base))
            u = row["unit"]
            # a comparison a failed run left without numbers prints a dash for each
            num = lambda v, u=u: "–" if v == "" else fmt(float(v), u)  # noqa: E731
            effect = f"{num(row['mean_difference'])} [{num(row['low'])}, {num(row['high'])}] {u}"
            verdict = row["verdict"]
            if row["seeds_needed"]:
                assert verdict == claims.INCONCLUSIVE
                verdict = f"inconclusive (about {int(row['seeds_needed']):,} seeds in all for this size)"
            first = f"`{r['name']}`" if len(tests) == 1 else f"`{r['name']}`: {preds[i][0]}"
            [line] = table_rows(md, first)
            assert line[1].startswith(f"**{verdict}"), (page, first, line)
            assert line[2:5] == [effect, fmt_p(row["p_holm"]), row["n"]], (page, first, line)
            # the statistics in words: n, p and Holm's p of the same row
            said = (f"n = {row['n']} seeds, p {'' if fmt_p(row['p']).startswith('<') else '= '}{fmt_p(row['p'])}, "
                    f"Holm-adjusted p {'' if fmt_p(row['p_holm']).startswith('<') else '= '}{fmt_p(row['p_holm'])} "
                    f"over {row['method'].split('over ')[1].split(';')[0]} tests")
            assert said in md, (page, first, said)
            if row["seeds_needed"]:
                assert f"about {int(row['seeds_needed']):,} seeds in all (not more)" in md
            if row["margin"]:
                assert f"margin {fmt(float(row['margin']), u, sign=False)} {u}" in md
            checked += 1
        if not tests:
            row = by_key.pop((r["name"], "exact", ""))
            [line] = table_rows(md, f"`{r['name']}`")
            assert line[1] == f"**{row['verdict']}**" and line[4] == "exact"
    assert by_key == {}  # every row of the file is on the page
    assert checked >= 15


@pytest.mark.parametrize("page", PAGES)
def test_the_committed_page_is_the_rendered_one(page):
    # the committed claims.md shows what the code renders from its claims.json, table for table
    doc, _ = load(page)
    fresh = claims.render_markdown(doc).splitlines()
    committed = (REPORTS / page / "claims.md").read_text().splitlines()
    tables = lambda lines: [x for x in lines if x.startswith("| ") or x.startswith("Statistics: ")]  # noqa: E731
    assert tables(committed) == tables(fresh)
    for r in doc["claims"]:
        assert math.isfinite(r["seconds"])
