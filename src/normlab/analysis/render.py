"""Markdown and HTML rendering shared by the sweep report (`normlab report`) and the claims page.

A page is built as a list of blocks: ("h2", text), ("p", text), ("note", text), ("foot", text), ("table", rows),
("code", text), ("figure", Figure). `markdown(title, blocks)` and `html_page(title, blocks)` turn
the same list into a Markdown file and one self-contained HTML file that reads on a phone:

- a viewport meta tag; text that wraps; each table scrolls sideways inside its own box, so every
  column stays reachable at 390 pixels, and the page itself never scrolls sideways;
- figures scale to the width (PNG embedded as a data URI), each linked to its SVG beside the page;
- the little Markdown the texts use (`code`, **bold**, [text](link)) becomes HTML, never raw
  backticks; table cells may hold links, Link(text, href), and marked cells, Mark(text, css class).
"""

from __future__ import annotations

import base64
import html
import math
import os
import platform
import re
import time
from dataclasses import dataclass
from typing import Optional, Sequence, Union


@dataclass(frozen=True)
class Link:
    text: str
    href: str


@dataclass(frozen=True)
class Mark:
    """A table cell with a CSS class in HTML (e.g. a verdict coloured by its value), bold in Markdown."""
    text: str
    cls: str


@dataclass(frozen=True)
class Figure:
    png: bytes          # embedded in the HTML page
    name: str           # file name of the PNG beside the Markdown file (an .svg with the same stem too)
    alt: str
    caption: str = ""


Cell = Union[str, Link, Mark]


# ---------------------------------------------------------------- numbers
def num(x, digits: int = 4, sign: bool = False) -> str:
    """A number with thousands separators, or an en dash when there is none (None, NaN)."""
    if x is None or isinstance(x, float) and not math.isfinite(x):
        return "–"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:+,}" if sign else f"{x:,}"
    return f"{x:+,.{digits}f}" if sign else f"{x:,.{digits}f}"


def mean_sd(m: float, s: Optional[float], digits: int = 4) -> str:
    if m is None or not math.isfinite(m):
        return "–"
    return num(m, digits) if s is None else f"{num(m, digits)} ± {num(s, digits)}"


def yaml_text(mapping: dict) -> str:
    import yaml

    return yaml.safe_dump(mapping, sort_keys=False, default_flow_style=False, allow_unicode=True).rstrip()


def git_commit() -> str:
    """The commit of the checkout normlab's code runs from, "+ uncommitted changes" when its
    source differs from it, or "not a git checkout" (an installed package)."""
    import subprocess

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the normlab package
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return "not a git checkout"
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return head.stdout.strip() + (" + uncommitted changes to the package" if dirty else "")


def provenance_info() -> dict:
    """Where, when and with what a page or a data file was written: git commit, the versions of
    normlab, torch, numpy and scipy, the machine and the date (provenance.json beside each
    differences.csv; the foot of each page)."""
    import numpy
    import scipy
    import torch

    from .._version import __version__

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "git_commit": git_commit(),
            "normlab": __version__, "torch": torch.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPU cores, {gpu}"}


def provenance(extra: str = "", info: Optional[dict] = None) -> str:
    """One line for the foot of a report: when, where and with what it was written."""
    i = info or provenance_info()
    text = (f"Written {i['date']} by normlab {i['normlab']} (git commit {i['git_commit']}) with torch {i['torch']}, "
            f"numpy {i['numpy']}, scipy {i['scipy']} on {i['machine']}.")
    return f"{text} {extra}".strip()


# ---------------------------------------------------------------- links
SCHEMES = ("http", "https", "mailto")


def safe_href(url: str) -> bool:
    """Whether a link target may become a live link: http, https, mailto, or relative (no scheme).
    Anything else (javascript:, data:, vbscript:, file:, a scheme hidden behind control characters)
    is shown as text instead: the strings on a page come from configs, experiment files and folder
    names that anyone may have written."""
    url = str(url)
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        return False  # browsers drop or reinterpret these, which can reveal a scheme
    head = re.split(r"[/?#]", url, maxsplit=1)[0]
    if ":" not in head:
        return True  # relative: a path, a query or a fragment
    return head.split(":", 1)[0].lower() in SCHEMES


# ---------------------------------------------------------------- Markdown
def _md_cell(c: Cell) -> str:
    if isinstance(c, Link):
        text = f"[{c.text}]({c.href})" if safe_href(c.href) else f"{c.text} ({c.href})"
    else:
        text = f"**{c.text}**" if isinstance(c, Mark) else str(c)
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(rows: Sequence[Sequence[Cell]]) -> str:
    out = ["| " + " | ".join(_md_cell(c) for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows[1:]]
    return "\n".join(out)


def markdown(title: str, blocks: Sequence[tuple]) -> str:
    parts = [f"# {title}", ""]
    for kind, value in blocks:
        if kind == "h2":
            parts += [f"## {value}", ""]
        elif kind in ("p", "note", "foot"):
            parts += [value, ""]
        elif kind == "table":
            parts += [md_table(value), ""]
        elif kind == "code":
            parts += ["```yaml", value, "```", ""]
        elif kind == "figure":
            svg = re.sub(r"\.png$", ".svg", value.name)
            parts += [f"![{value.alt}]({value.name})", ""]
            if value.caption:
                parts += [f"{value.caption} ([SVG]({svg}))", ""]
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------- HTML
def inline(text: str) -> str:
    """The little Markdown the texts use (`code`, **bold**, [text](link)), as escaped HTML."""
    out = html.escape(str(text), quote=False)
    out = re.sub(r"`([^`]*)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]*)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", _link, out)


def _link(m: re.Match) -> str:
    """[text](target) of already escaped text: a live link only for an allowed target, else as written."""
    target = html.unescape(m.group(2))
    if not safe_href(target):
        return m.group(0)
    return f'<a href="{html.escape(target)}">{m.group(1)}</a>'


def _html_cell(c: Cell, tag: str) -> str:
    if isinstance(c, Link):
        if not safe_href(c.href):
            return f"<{tag}>{html.escape(c.text)} ({html.escape(c.href)})</{tag}>"
        return f'<{tag}><a href="{html.escape(c.href)}">{html.escape(c.text)}</a></{tag}>'
    if isinstance(c, Mark):
        return f'<{tag} class="{html.escape(c.cls)}">{inline(c.text)}</{tag}>'
    text = str(c)
    numeric = tag == "td" and re.fullmatch(r"[-+−–]?[\d,.]+( ± [\d,.]+)?%?|\[.*\]|–|< [\d.]+", text)
    cls = ' class="num"' if numeric else ""
    return f"<{tag}{cls}>{inline(text)}</{tag}>"


def html_table(rows: Sequence[Sequence[Cell]]) -> str:
    head = "".join(_html_cell(c, "th") for c in rows[0])
    body = "\n".join("<tr>" + "".join(_html_cell(c, "td") for c in r) + "</tr>" for r in rows[1:])
    # The box scrolls, not the page: on a phone every column stays reachable by swiping the table.
    return (f'<div class="scroll" tabindex="0" role="region" aria-label="table">\n<table>\n<thead><tr>{head}</tr>'
            f"</thead>\n<tbody>\n{body}\n</tbody>\n</table>\n</div>")


STYLE = ("*{box-sizing:border-box}"
         "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;line-height:1.45;max-width:1100px;"
         "margin:0 auto;padding:1em;color:#222;overflow-wrap:anywhere}"
         "h1{font-size:1.6em;margin:.4em 0}h2{font-size:1.25em;margin-top:1.6em}"
         ".scroll{overflow-x:auto;max-width:100%;margin:1em 0;border:1px solid #ddd}"
         "table{border-collapse:collapse;font-size:.92em;overflow-wrap:normal}"
         "td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
         "th{background:#f4f4f4;position:sticky;top:0}"
         "td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}"
         "td:first-child{white-space:nowrap}"
         ".note{color:#555;font-size:.95em}.foot{color:#666;font-size:.85em;margin-top:2em}"
         "code{background:#f4f4f4;padding:0 .2em;border-radius:3px}"
         "pre{background:#f4f4f4;padding:.6em;overflow-x:auto;font-size:.9em}"
         "figure{margin:1em 0}img{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}"
         ".holds{background:#d4edda;color:#155724}.fails{background:#f8d7da;color:#721c24}"
         ".inconclusive{background:#fff3cd;color:#856404}"
         "@media (max-width:600px){body{padding:.6em;font-size:15px}}")


# No script of any kind runs on a page normlab writes: only its inline style and embedded images.
CSP = ("default-src 'none'; script-src 'none'; object-src 'none'; style-src 'unsafe-inline'; img-src data:; "
       "base-uri 'none'; form-action 'none'")


def html_page(title: str, blocks: Sequence[tuple], extra_style: str = "") -> str:
    e = html.escape
    body = [f"<h1>{e(title)}</h1>"]
    for kind, value in blocks:
        if kind == "h2":
            body.append(f"<h2>{inline(value)}</h2>")
        elif kind == "p":
            body.append(f"<p>{inline(value)}</p>")
        elif kind in ("note", "foot"):
            body.append(f'<p class="{kind}">{inline(value)}</p>')
        elif kind == "table":
            body.append(html_table(value))
        elif kind == "code":
            body.append(f"<pre><code>{e(value)}</code></pre>")
        elif kind == "figure":
            data = base64.b64encode(value.png).decode("ascii")
            # the SVG beside the page, as the Markdown page links it: on a phone, the figure at full size
            svg = re.sub(r"\.png$", ".svg", value.name)
            cap = f"<figcaption>{inline(value.caption)} {inline(f'([SVG]({svg}))')}</figcaption>"
            body.append(f'<figure><a href="{e(svg)}"><img alt="{e(value.alt)}" src="data:image/png;base64,{data}">'
                        f'</a>{cap}</figure>')
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
            f"<title>{e(title)}</title>\n<style>{STYLE}{extra_style}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
