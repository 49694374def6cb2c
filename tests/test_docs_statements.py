"""docs/experiments.md's table of every statement the five tutorials make: each claim it names is
in the catalog of `normlab claims`, each claim of the catalog is named there, and the README's
counts (claims, statements measured, statements in all) are the table's."""

import re
from pathlib import Path

from normlab.experiments.claims import CLAIMS

ROOT = Path(__file__).resolve().parents[1]


def table_rows() -> list[list[str]]:
    text = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    body = text.split("<!-- statements:start -->")[1].split("<!-- statements:end -->")[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in body.splitlines()
            if re.match(r"\| 00[0-4] \|", line)]


def test_every_claim_in_the_table_is_in_the_catalog_and_back():
    rows = table_rows()
    assert [r[0] for r in rows] == sorted(r[0] for r in rows), "the statements go in the tutorials' order"
    named = {n for r in rows for n in re.findall(r"`([a-z0-9-]+)`", r[2])}
    assert named <= set(CLAIMS), f"not in the catalog: {sorted(named - set(CLAIMS))}"
    assert set(CLAIMS) <= named, f"not in the table: {sorted(set(CLAIMS) - named)}"
    # a statement without a claim says what else measures it, or why it is not measured here
    assert all(r[2] or r[3] for r in rows)
    assert all("not measured here (" in r[3] for r in rows if not r[2] and "report" not in r[3])


def test_readmes_count_what_the_table_holds():
    rows = table_rows()
    measured, total = sum(bool(r[2]) for r in rows), len(rows)
    en = (ROOT / "README.md").read_text(encoding="utf-8")
    assert (f"`normlab claims` runs {len(CLAIMS)} claims, which measure {measured} of the {total} statements"
            in " ".join(en.split()))
    assert f"the other {total - measured} are not measured here" in " ".join(en.split())
    zh = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    assert f"`normlab claims` 的 {len(CLAIMS)} 个说法度量了五篇教程中 {total} 条关于网络行为的陈述里的 {measured} 条" in zh
