"""docs/experiments.md's table of every statement the five tutorials make, and its table of the
normalization papers' claims: each claim they name is in the catalog of `normlab claims`, each
claim of the catalog is named in one of them, and the README's counts (claims, statements
measured, statements in all, papers' claims) are the tables'."""

import re
from pathlib import Path

from normlab.experiments.claims import CLAIMS

ROOT = Path(__file__).resolve().parents[1]


def table_rows() -> list[list[str]]:
    text = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    body = text.split("<!-- statements:start -->")[1].split("<!-- statements:end -->")[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in body.splitlines()
            if re.match(r"\| 00[0-4] \|", line)]


def paper_rows() -> list[list[str]]:
    text = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    body = text.split("<!-- papers:start -->")[1].split("<!-- papers:end -->")[0]
    return [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in body.splitlines()
            if line.startswith("| ") and "`" in line]


def paper_claims() -> set:
    return {n for r in paper_rows() for n in re.findall(r"`([a-z0-9-]+)`", r[2])}


def test_every_claim_in_the_table_is_in_the_catalog_and_back():
    rows = table_rows()
    assert [r[0] for r in rows] == sorted(r[0] for r in rows), "the statements go in the tutorials' order"
    named = {n for r in rows for n in re.findall(r"`([a-z0-9-]+)`", r[2])}
    papers = paper_claims()
    assert not named & papers, f"in both tables: {sorted(named & papers)}"
    named |= papers
    assert named <= set(CLAIMS), f"not in the catalog: {sorted(named - set(CLAIMS))}"
    assert set(CLAIMS) <= named, f"not in the tables: {sorted(set(CLAIMS) - named)}"
    # a paper's claim quotes its paper, whose reference the table gives
    for r in paper_rows():
        [name] = re.findall(r"`([a-z0-9-]+)`", r[2])
        assert CLAIMS[name].source and not CLAIMS[name].quote, name
        assert r[0].split(" 20")[0] in CLAIMS[name].source[0], (r[0], CLAIMS[name].source[0])
    # a statement without a claim says what else measures it, or why it is not measured here
    assert all(r[2] or r[3] for r in rows)
    assert all("not measured here (" in r[3] for r in rows if not r[2] and "report" not in r[3])


def test_readmes_count_what_the_table_holds():
    rows = table_rows()
    measured, total = sum(bool(r[2]) for r in rows), len(rows)
    papers = len(paper_claims())
    tutorials = len(CLAIMS) - papers
    en = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert (f"`normlab claims` runs {len(CLAIMS)} claims: {tutorials} of them measure {measured} of the {total} "
            f"statements" in en)
    assert f"the other {total - measured} are not measured here" in en
    assert f"and {papers} measure what the normalization papers after the tutorials claim" in en
    zh = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    assert (f"`normlab claims` 的 {len(CLAIMS)} 个说法中，{tutorials} 个度量了五篇教程中 {total} 条关于网络行为的陈述里的 "
            f"{measured} 条" in zh)
    assert f"另外 {papers} 个度量教程之后的归一化论文" in zh
