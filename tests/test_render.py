"""The shared Markdown/HTML rendering of reports and claims (analysis/render.py)."""

import math

from normlab.analysis import render


def test_inline_markdown_becomes_escaped_html():
    assert render.inline("use `a<b` and **this** [here](x.csv) & more") == \
        'use <code>a&lt;b</code> and <strong>this</strong> <a href="x.csv">here</a> &amp; more'
    assert "`" not in render.inline("`norm` `dropout`")


def test_numbers_have_thousands_separators_and_a_dash_for_none():
    assert render.num(1234567) == "1,234,567" and render.num(-1234.5, 1) == "-1,234.5"
    assert render.num(0.5, 2, sign=True) == "+0.50" and render.num(12345, sign=True) == "+12,345"
    assert render.num(None) == render.num(math.nan) == render.mean_sd(math.nan, 1.0) == "–"
    assert render.mean_sd(1234.5, 10.25, 1) == "1,234.5 ± 10.2"


def test_tables_in_both_formats():
    rows = [["cell", "value"], ["a|b", "1,234"], [render.Link("cfg", "configs/a.yaml"), render.Mark("holds", "holds")]]
    md = render.md_table(rows)
    assert md.splitlines() == ["| cell | value |", "|---|---|", "| a\\|b | 1,234 |", "| [cfg](configs/a.yaml) | **holds** |"]
    h = render.html_table(rows)
    assert h.startswith('<div class="scroll"') and h.rstrip().endswith("</div>")
    assert '<td class="num">1,234</td>' in h and '<td class="holds">holds</td>' in h
    assert '<td><a href="configs/a.yaml">cfg</a></td>' in h


def test_page_has_a_viewport_and_every_block():
    fig = render.Figure(b"\x89PNG fake", "c.png", "alt <text>", "a `caption`")
    blocks = [("p", "**bold**"), ("h2", "Tables"), ("table", [["x"], ["1"]]), ("code", "a: 1\nb: <2>"),
              ("figure", fig), ("note", "n"), ("foot", "f")]
    page = render.html_page("T & t", blocks)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "<title>T &amp; t</title>" in page and "<pre><code>a: 1\nb: &lt;2&gt;</code></pre>" in page
    assert 'alt="alt &lt;text&gt;" src="data:image/png;base64,iVBORyBmYWtl"' in page
    assert '<figcaption>a <code>caption</code> (<a href="c.svg">SVG</a>)</figcaption>' in page and '<p class="foot">f</p>' in page
    assert '<figure><a href="c.svg"><img alt=' in page  # the phone reader opens the SVG at full size
    md = render.markdown("T", blocks)
    assert "```yaml\na: 1\nb: <2>\n```" in md and "![alt <text>](c.png)" in md and "([SVG](c.svg))" in md
    assert render.yaml_text({"model": "mlp", "milestones": [1, 2]}) == "model: mlp\nmilestones:\n- 1\n- 2"
