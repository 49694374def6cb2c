"""claims.md, claims.html and claims.json: one table of verdicts, a section per claim, and the
figures a claim draws (PNG files beside claims.md, embedded in claims.html)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from ...fileio import atomic_write_bytes, atomic_write_text
from .verdict import FAILS, HOLDS, INCONCLUSIVE, METHOD


def write_reports(out: Path, doc: dict) -> None:
    """claims.json (numbers only), claims.md with each figure as a PNG beside it, claims.html."""
    figures = {}
    for r in doc["claims"]:
        for fname, png in (r.get("figures") or {}).items():
            atomic_write_bytes(Path(out) / fname, png)
            figures[fname] = png
    plain = {**doc, "claims": [{k: v for k, v in r.items() if k != "figures"} | {"figures": sorted(r.get("figures") or {})}
                               for r in doc["claims"]]}
    atomic_write_text(Path(out) / "claims.json", json.dumps(plain, indent=2) + "\n")
    atomic_write_text(Path(out) / "claims.md", render_markdown(plain))
    atomic_write_text(Path(out) / "claims.html", render_html(plain, figures))


def _title(doc: dict) -> str:
    return f"The tutorials' claims, measured ({'--quick' if doc['quick'] else 'full'} run)"


INTRO = ("Verdicts are about this small setting (tiny models, few epochs and seeds); effect = arm - "
         "baseline (for the two-factor claims, the arm's drop minus the baseline's drop) paired by seed, "
         f"with a {METHOD}; n (the seeds) is in each setting. Seconds: the training time of a claim's "
         "runs (summed; a run two claims share counts in both) plus its measuring.")


def _tally(doc: dict) -> str:
    counts = {v: sum(r["verdict"] == v for r in doc["claims"]) for v in (HOLDS, FAILS, INCONCLUSIVE)}
    text = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    if doc.get("total_seconds") is not None:
        text += f"; {doc['total_seconds']:.0f} s in all"
    return text + "."


def render_markdown(doc: dict) -> str:
    lines = [f"# {_title(doc)}", "", INTRO, "", _tally(doc), "",
             "| claim | verdict | measured | seconds |", "|---|---|---|---|"]
    for r in doc["claims"]:
        cells = (r["claim"], f"**{r['verdict']}**", r["summary"], f"{r['seconds']:.1f}")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    for r in doc["claims"]:
        lines += [f"## {r['name']}: {r['claim']}", "", f"- verdict: **{r['verdict']}**",
                  f"- setting: {r['setting']}", f"- measured: {r['summary']}"]
        if r.get("p_holm") is not None:
            lines.append(f"- statistics: {stats_text(r)}")
        for k, p in ((r.get("numbers") or {}).get("predictions") or {}).items():
            lines.append(f"- prediction {k}: **{p['verdict']}**, {effect_text(p)}; {stats_text(p)}")
        cells = (r.get("numbers") or {}).get("per_seed")
        if cells:
            lines.append("- per seed: " + ", ".join(f"{k} {[round(v, 4) for v in vs]}" for k, vs in cells.items()))
        elif r.get("baseline") is not None:
            lines.append(f"- per seed: baseline {[round(v, 4) for v in r['baseline']]}, "
                         f"arm {[round(v, 4) for v in r['arm']]}")
        lines += [f"![{f}]({f})" for f in r.get("figures") or []]
        lines.append("")
    return "\n".join(lines)


VERDICT_CLASS = {HOLDS: "holds", FAILS: "fails", INCONCLUSIVE: "inconclusive"}


def effect_text(r: dict) -> str:
    e = r.get("effect")
    if e is None:
        return "–"
    if r.get("ci") is None:
        return f"{e:+,}" if isinstance(e, int) else f"{e:+.4g}"
    return f"{e:+.4f} [{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]"


def stats_text(t: dict) -> str:
    """n, p, Holm-adjusted p over the family, the share of seeds the arm won, and for an
    inconclusive comparison the seeds a test would need."""
    text = (f"n = {t['n']} seeds, p = {t['p']:.2g}, Holm-adjusted p = {t['p_holm']:.2g} over {t['family']} "
            f"comparisons, arm better in {t['prob_better']:.0%} of the seeds")
    if t.get("seeds_needed"):
        text += f"; about {t['seeds_needed']} seeds would detect the observed difference (power 0.8)"
    return text


def render_html(doc: dict, figures: dict = None) -> str:
    """One self-contained page: the claims in one table, the verdict cell coloured by verdict."""
    from html import escape as e

    from ..report import _inline

    rows = []
    for r in doc["claims"]:
        cls = VERDICT_CLASS.get(r["verdict"], "inconclusive")
        rows.append(f"<tr id=\"{e(r['name'])}\"><td><code>{e(r['name'])}</code><br>{e(r['claim'])}</td>"
                    f"<td class=\"verdict {cls}\">{e(r['verdict'])}</td><td class=\"num\">{e(effect_text(r))}</td>"
                    f"<td>{e(r['summary'])}</td><td class=\"setting\">{_inline(r['setting'])}</td>"
                    f"<td class=\"num\">{r['seconds']:.1f}</td></tr>")
    style = ("body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "vertical-align:top;text-align:left}.num{text-align:right;white-space:nowrap}"
             ".setting{color:#555;font-size:90%}.verdict{font-weight:bold;white-space:nowrap}"
             ".holds{background:#d4edda;color:#155724}.fails{background:#f8d7da;color:#721c24}"
             ".inconclusive{background:#fff3cd;color:#856404}")
    head = "".join(f"<th>{h}</th>" for h in ("claim", "verdict", "effect [95% CI]", "measured", "setting",
                                                  "seconds"))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{e(_title(doc))}</title>\n<style>{style}</style>\n</head>\n<body>\n"
            f"<h1>{e(_title(doc))}</h1>\n<p>{e(INTRO)}</p>\n<p>{e(_tally(doc))}</p>\n"
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) +
            "\n</tbody>\n</table>\n" + _figures_html(figures or {}) + "</body>\n</html>\n")


def _figures_html(figures: dict) -> str:
    from html import escape as e

    return "".join(f"<figure><img alt=\"{e(name)}\" src=\"data:image/png;base64,"
                   f"{base64.b64encode(png).decode('ascii')}\"><figcaption>{e(name)}</figcaption></figure>\n"
                   for name, png in figures.items())
