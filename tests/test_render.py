"""The shared Markdown/HTML rendering of reports and claims (analysis/render.py)."""

import math
import re

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


# ---------------------------------------------------------------- pages safe by construction
def test_only_http_https_mailto_and_relative_links_are_live():
    page = render.inline("[here](javascript:alert(document.domain)) [a](JaVaScRiPt:x) [b](data:text/html,x) "
                         "[c](vbscript:x) [d](file:///etc/passwd) [ok](https://a.org/x?p=1&q=2) "
                         "[m](mailto:a@b.org) [r](runs/a.csv) [f](#top) [q](?x=1) [h](http://a.org)")
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs == ["https://a.org/x?p=1&amp;q=2", "mailto:a@b.org", "runs/a.csv", "#top", "?x=1", "http://a.org"]
    # the refused ones are shown as written, as text
    assert "[here](javascript:alert(document.domain))" in page and "[b](data:text/html,x)" in page


def test_a_link_cell_with_another_scheme_is_text_in_both_formats():
    rows = [["run"], [render.Link("x", "javascript:alert(1)")], [render.Link("ok", "./javascript:alert(1)/")]]
    h = render.html_table(rows)
    assert "<td>x (javascript:alert(1))</td>" in h and '<a href="./javascript:alert(1)/">ok</a>' in h
    assert render.md_table(rows).splitlines()[2:] == ["| x (javascript:alert(1)) |", "| [ok](./javascript:alert(1)/) |"]


def test_every_page_forbids_scripts():
    page = render.html_page("t", [("p", "x")])
    head = page.split("</head>")[0]
    (csp,) = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', head)
    rules = dict(r.strip().split(" ", 1) for r in csp.split(";"))
    assert rules["default-src"] == "'none'" and rules["script-src"] == "'none'" and rules["img-src"] == "data:"
    assert "<script" not in page.lower()


TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "div", "table", "thead", "tbody", "tr",
        "th", "td", "a", "code", "pre", "strong", "figure", "img", "figcaption"}
ATTRS = {"lang", "charset", "name", "content", "http-equiv", "class", "tabindex", "role", "aria-label", "href", "alt",
         "src"}


def markup(page: str) -> list[tuple[str, list]]:
    """Every start tag of the page with its attributes, as a browser's parser sees them."""
    from html.parser import HTMLParser

    found = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    P(convert_charrefs=True).feed(page)
    return found


def check_markup(page: str) -> None:
    """Only the renderer's own tags and attributes, and only allowed links."""
    for tag, attrs in markup(page):
        assert tag in TAGS, (tag, attrs)
        for k, v in attrs:
            assert k in ATTRS, (tag, k, v)
            if k == "href":
                assert render.safe_href(v), v
            if k == "src":
                assert v.startswith("data:image/png;base64,"), v


def test_strings_from_files_cannot_open_a_tag_or_an_attribute():
    evil = '<img src=x onerror=alert(1)>" onclick="x\' <script>alert(1)</script> [a](javascript:x) `<b>` **<i>**'
    page = render.html_page(evil, [("p", evil), ("h2", evil), ("note", evil), ("table", [[evil], [render.Link(evil, evil)],
                                   [render.Mark(evil, evil)]]), ("code", evil),
                                   ("figure", render.Figure(b"png", "a.png", evil, evil))])
    check_markup(page)
    assert [t for t, _ in markup(page)].count("img") == 1  # the figure's own


# ---------------------------------------------------------------- property: any string, a safe page
from hypothesis import given, settings, strategies as st  # noqa: E402

# Pieces an attacker would combine, among random characters.
PIECES = ["<", ">", '"', "'", "&", "#", ";", ":", "/", "?", "[", "]", "(", ")", "](", "`", "**", "\\", "\t", "\n",
          "\x00", "\x01", " ", "=", "javascript:", "JAVASCRIPT:", "data:", "vbscript:", "http:", "https://", "mailto:",
          "<script>", "</script>", "<img src=x onerror=alert(1)>", "onclick=", "&#106;", "&amp;", "&lt;", "%6a", "//"]
HOSTILE = st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=14).map("".join)


@settings(max_examples=60, deadline=20000)
@given(text=HOSTILE, href=HOSTILE)
def test_no_string_yields_a_tag_an_attribute_or_a_link_of_its_own(text, href):
    linked = f"[{text or 'x'}]({href or 'x'})"
    blocks = [("p", text), ("p", linked), ("h2", text), ("note", linked), ("foot", text), ("code", text),
              ("table", [[text, linked], [render.Link(text, href), render.Mark(text, text)]]),
              ("figure", render.Figure(b"png", "a.png", text, linked))]
    page = render.html_page(text, blocks)
    check_markup(page)
    assert sum(t == "img" for t, _ in markup(page)) == 1
    # a live link appears exactly where the target is allowed
    assert render.safe_href(href) == any(k == "href" and v == href for _, attrs in markup(render.html_table(
        [["h"], [render.Link(text, href)]])) for k, v in attrs)
