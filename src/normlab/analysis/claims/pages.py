"""claims.md, claims.html, claims.json and differences.csv, through the renderer `normlab report`
uses (analysis/render.py): one table of verdicts, a figure of every paired effect, a section per
claim with the cells it trained (links to their run folders and configs), the experiments' base
configs as YAML, and where, when and with what the page was written."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

from ...fileio import atomic_write_text
from .. import figures, paired, render
from ..render import Cell, Link, Mark, num
from .comparisons import effect_text, tests_of, value
from .effects import effects_figure
from .verdict import FAILS, HOLDS, INCONCLUSIVE, METHOD, TOO_FEW

CLAIM_COLUMNS = ("claim", *paired.DIFFERENCE_COLUMNS, "margin", "p_margin_holm")
VERDICT_CLASS = {HOLDS: "holds", FAILS: "fails", INCONCLUSIVE: "inconclusive", TOO_FEW: "inconclusive"}
EFFECTS_FIGURE = "effects.png"

# On a phone the verdict table (the page's first table box) becomes one card per row: the claim,
# its verdict, then each number on its own line with its name, so nothing needs sideways scrolling.
_CARDS = "body>div.scroll:first-of-type"
PHONE_CARDS = (
    "@media (max-width:600px){"
    f"{_CARDS}{{overflow-x:visible;border:none}}"
    f"{_CARDS} table,{_CARDS} tbody,{_CARDS} tr,{_CARDS} td{{display:block;width:auto}}"
    f"{_CARDS} thead{{display:none}}"
    f"{_CARDS} tr{{border:1px solid #ddd;margin:0 0 .6em;padding:.2em 0}}"
    f"{_CARDS} td{{border:none;white-space:normal;text-align:left;padding:1px 8px}}"
    f"{_CARDS} td:empty,{_CARDS} td.num:last-child{{display:none}}"
    f"{_CARDS} td:first-child{{font-weight:600}}"
    + "".join(f'{_CARDS} td:nth-child({i})::before{{content:"{label}: ";color:#555}}'
              for i, label in ((3, "effect [95% interval]"), (4, "p (Holm)"), (5, "n")))
    + "}")


def papers(doc: dict) -> bool:
    """Whether the run holds claims of the normalization papers (issue 31) beside the tutorials'."""
    return any(r.get("source") for r in doc["claims"])


def title(doc: dict) -> str:
    who = "The tutorials' and the normalization papers' claims" if papers(doc) else "The tutorials' claims"
    return f"{who}, measured ({'--quick' if doc['quick'] else 'full'} run)"


INTRO = ("Verdicts are about this small setting (tiny models, few epochs and seeds); effect = arm - "
         "baseline (for the two-factor claims, the arm's drop minus the baseline's drop) paired by seed, "
         f"with a {METHOD}; n (the seeds) is in each setting. Every effect is in its unit (accuracy points, "
         f"decades, L2 norm, ...). The interval covers the true effect {paired.COVERAGE}. Seconds: the "
         "training time of a claim's runs (summed; a run two claims share counts in both) plus its measuring. "
         "Every number behind a verdict is in [differences.csv](differences.csv); what wrote it (git commit, "
         "versions, machine, date) is in [provenance.json](provenance.json) and at the foot of this page.")


def tally(doc: dict) -> str:
    counts = {v: sum(r["verdict"] == v for r in doc["claims"]) for v in (HOLDS, FAILS, INCONCLUSIVE, TOO_FEW)}
    text = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    if doc.get("train_seconds_total"):
        text += f"; {num(doc['train_seconds_total'], 0)} s of training (every run counted once, one thread each)"
    if doc.get("total_seconds") is not None:
        text += f"; {num(doc['total_seconds'], 0)} s for the command that wrote this page"
    return text + "."


# ---------------------------------------------------------------- numbers
def claim_effect(r: dict) -> str:
    """The effect cell of the summary table, with its unit (an exact claim's, if it has one)."""
    e = r.get("effect")
    if e is None:
        return "–"
    if r.get("ci") is None:
        u = r.get("unit", "")
        return (num(e, 3) if isinstance(e, float) else num(e, sign=True)) + (f" {u}" if u else "")
    return effect_text(r)


def below_margin(t: dict) -> bool:
    """Whether a "does not hold" rests on the margin test (an effect too small to count), not on
    an effect shown on the other side."""
    return t["verdict"] == FAILS and (t.get("p_holm") is None or not t["p_holm"] < paired.ALPHA)


MARGIN_RULE = ("How the verdicts read: **holds** when the effect is shown on the predicted side (Holm-adjusted p "
               "< 0.05), whatever its size; **does not hold here** when it is shown on the other side, or, for a "
               "claim with a margin (the size of effect that would matter, fixed before the runs), when a "
               "one-sided test in the same Holm family shows the effect on the predicted side is smaller than "
               "the margin; **inconclusive** otherwise.")


def _moves(t: dict) -> str:
    """What the predicted side does to the measure, in words: rises for +1, falls for -1."""
    return "rises" if t["direction"] > 0 else "falls"


def margin_shown(t: dict) -> str:
    """What a verdict resting on the margin showed, with positive numbers on the predicted side:
    "the train - test accuracy gap falls by less than 1.00 accuracy points"."""
    u = t.get("unit", "")
    what = t.get("metric") or "the measure"
    return f"{what} {_moves(t)} by less than {value(t['margin'], u)}{' ' + u if u else ''} (the margin)"


def verdict_text(t: dict) -> str:
    if t["verdict"] == INCONCLUSIVE and t.get("seeds_needed"):
        return f"inconclusive (about {t['seeds_needed']:,} seeds in all for this size)"
    if below_margin(t):
        return f"{t['verdict']}: {margin_shown(t)}"
    return t["verdict"]


def _p(p) -> str:
    return "–" if p is None or not math.isfinite(p) else "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def p_is(name: str, p) -> str:
    """"p = 0.0123", "p < 0.0001" (never "p = < 0.0001")."""
    text = _p(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def seed_count(t: dict) -> str:
    """In how many seeds the arm beat the baseline, ties counted apart (never "0.5 of 3 seeds")."""
    n = t["n"]
    base, arm = t.get("baseline"), t.get("arm")
    if isinstance(base, list) and isinstance(arm, list) and len(base) == len(arm) == n:
        d = [b - a for a, b in zip(base, arm)]
        wins = sum(1 for x in d if x * t["direction"] > 0)
        ties = sum(1 for x in d if x == 0)
    else:  # no per-seed values: prob_better counts ties as half a seed
        wins, ties = round(t["prob_better"] * n), 0
    return f"arm better in {wins} of {n} seeds" + (f", tied in {ties}" if ties else "")


def stats_text(t: dict) -> str:
    """n, p, Holm-adjusted p over the family, the seeds the arm won, and for an inconclusive
    comparison the seeds a test would need."""
    text = (f"n = {t['n']} seeds, {p_is('p', t['p'])}, {p_is('Holm-adjusted p', t['p_holm'])} over {t['family']} "
            f"tests, {seed_count(t)}")
    if t.get("margin") is not None and math.isfinite(t["margin"]):
        u = t.get("unit", "")
        text += (f"; margin {value(t['margin'], u)}{' ' + u if u else ''} (an effect this large on the predicted "
                 f"side would matter; fixed before the runs): one-sided {p_is('p', t.get('p_margin'))} that the "
                 f"effect is smaller, {p_is('Holm-adjusted', t.get('p_margin_holm'))}")
    if t.get("seeds_needed"):
        text += (f"; about {t['seeds_needed']:,} seeds in all (not more) would detect the observed difference "
                 f"with power {paired.POWER:g} at level {paired.ALPHA:g}/{t['family']} (the strictest Holm step)")
    return text


def difference_rows(doc: dict) -> list[dict]:
    """One row per comparison of the run (Holm family) and one per exact claim: differences.csv."""
    rows = []
    for r in doc["claims"]:
        tests = tests_of(r)
        if not tests:
            rows.append({"claim": r["name"], "cell": "exact", "baseline": "", "metric": r["claim"],
                         "unit": r.get("unit", ""), "n": "",
                         "mean_difference": r.get("effect") if r.get("effect") is not None else math.nan,
                         "low": math.nan, "high": math.nan, "method": "exact (counted or computed, no sampling)",
                         "p": math.nan, "p_holm": math.nan, "prob_better": math.nan, "verdict": r["verdict"],
                         "seeds_needed": ""})
            continue
        for t in tests:
            base, arm = t.get("labels") or ("baseline", "arm")
            c = paired.Comparison(t["n"], t["effect"], t["sd"], t["ci"][0], t["ci"][1], t["p"], t["prob_better"],
                                  p_holm=t["p_holm"], verdict=t["verdict"], seeds_needed=t.get("seeds_needed"),
                                  family=t["family"], margin=math.nan if t.get("margin") is None else t["margin"],
                                  p_margin_holm=t.get("p_margin_holm", math.nan))
            rows.append({"claim": r["name"], **paired.difference_row(arm, base, t.get("metric", ""), t.get("unit", ""),
                                                                       c)})
    return rows


# ---------------------------------------------------------------- tables
def summary_table(doc: dict) -> list[list]:
    """One row per claim; a claim of several predictions gets its own row and one per prediction,
    each with that comparison's effect, p and verdict (the row of differences.csv it comes from).
    The verdict comes second, so a phone shows it without scrolling sideways."""
    said = "what the tutorials and papers say" if papers(doc) else "what the tutorials say"
    rows: list[list[Cell]] = [["claim", "verdict", "effect [95% interval] (unit)", "p (Holm)", "n", said, "seconds"]]
    for r in doc["claims"]:
        tests = tests_of(r)
        name, cls = f"`{r['name']}`", VERDICT_CLASS.get(r["verdict"], "inconclusive")
        if not tests:
            rows.append([name, Mark(r["verdict"], cls), claim_effect(r), "–", "exact", r["claim"],
                         num(r["seconds"], 1)])
        elif len(tests) == 1:
            t = tests[0]
            rows.append([name, Mark(verdict_text(t), cls), effect_text(t), _p(t["p_holm"]), str(t["n"]), r["claim"],
                         num(r["seconds"], 1)])
        else:
            every = "both" if len(tests) == 2 else f"all {len(tests)}"
            rows.append([name, Mark(f"{r['verdict']} (holds when {every} predictions below hold)", cls),
                         "–", "–", "", r["claim"], num(r["seconds"], 1)])
            for label, t in r["numbers"]["predictions"].items():
                rows.append([f"{name}: {label}", Mark(verdict_text(t), VERDICT_CLASS.get(t["verdict"], "inconclusive")),
                             effect_text(t), _p(t["p_holm"]), str(t["n"]), "", ""])
    return rows


def predictions_table(r: dict) -> list[list]:
    rows: list[list[Cell]] = [["prediction", "effect [95% interval] (unit)", "p", "p (Holm)", "verdict"]]
    for k, t in r["numbers"]["predictions"].items():
        rows.append([k, effect_text(t), _p(t["p"]), _p(t["p_holm"]),
                     Mark(verdict_text(t), VERDICT_CLASS.get(t["verdict"], "inconclusive"))])
    return rows


def per_seed_table(r: dict, seeds: list) -> list[list]:
    """Values per seed of the arms (or of the four cells of a two-factor claim), in the measure's unit."""
    cells = (r.get("numbers") or {}).get("per_seed")
    u = r.get("unit", "")
    if not cells:
        if r.get("baseline") is None or r.get("direction") not in (1, -1):
            return []
        base, arm = r.get("labels") or ("baseline", "arm")
        cells = {f"{base} (baseline)": r["baseline"], f"{arm} (arm)": r["arm"]}
    seeds = seeds if seeds and len(seeds) == len(next(iter(cells.values()))) else \
        list(range(len(next(iter(cells.values())))))
    rows = [[f"arm ({'%' if 'points' in u else u or 'value'})", *(f"seed {s}" for s in seeds), "mean"]]
    for k, vs in cells.items():
        finite = [v for v in vs if math.isfinite(v)]
        rows.append([k, *(value(v, u) for v in vs), value(sum(finite) / len(finite), u) if finite else "–"])
    return rows


def cells_table(doc: dict, name: str) -> list[list]:
    """The trained cells of a claim: its experiment, its config, one link per seed's run folder."""
    arms = (doc.get("arms") or {}).get(name)
    if not arms:
        return []
    rows: list[list[Cell]] = [["arm", "experiment", "cell", "config", "run folders"]]
    for label, (ename, cell) in arms.items():
        exp = doc["experiments"][ename]
        runs = " ".join(f"[s{s}]({doc['work']}/{ename}/runs/{cell}-s{s}/)" for s in exp["seeds"])
        rows.append([label, ename, cell, Link(f"{cell}.yaml", f"configs/{ename}/{cell}.yaml"), runs])
    return rows


# ---------------------------------------------------------------- the page
def claim_blocks(doc: dict, r: dict, figs: dict) -> list[tuple]:
    out: list[tuple] = [("h2", f"{r['name']}: {r['claim']}"),
           ("p", f"Verdict: **{verdict_text(r) if tests_of(r) and len(tests_of(r)) == 1 else r['verdict']}**. "
                 f"Setting: {r['setting']}."),
           ("p", f"Measured: {r['summary']}.")]
    if r.get("quote"):
        seed, zh, en = r["quote"]
        out.insert(1, ("p", f"Seed {seed}: 「{zh}」 ({en})"))
    if r.get("source"):
        ref, sentence = r["source"]
        out.insert(1, ("p", f"{ref}: “{sentence}”"))
    tests = tests_of(r)
    if len(tests) == 1:
        out.append(("p", f"Statistics: {stats_text(tests[0])}."))
    if (r.get("numbers") or {}).get("predictions"):
        out += [("table", predictions_table(r)),
                ("note", "; ".join(f"{k}: {stats_text(t)}" for k, t in r["numbers"]["predictions"].items()) + ".")]
    seeds = doc["experiments"][next(iter(doc["arms"][r["name"]].values()))[0]]["seeds"] \
        if r["name"] in (doc.get("arms") or {}) else []
    per_seed = per_seed_table(r, seeds)
    if per_seed:
        out.append(("table", per_seed))
    out += [("figure", figs[f]) for f in r.get("figures") or [] if f in figs]
    cells = cells_table(doc, r["name"])
    if cells:
        out += [("table", cells)]
    return out


def experiment_blocks(doc: dict) -> list[tuple]:
    if not doc.get("experiments"):
        return []
    out = [("h2", "Experiments: base configs"),
           ("note", "Each trained claim is a set of cells of these `normlab compare` experiments, run by the sweep "
                    f"runner under `{doc['work']}/EXPERIMENT/` (not committed: a committed copy of this page "
                    "carries the configs, not the run folders and their weights). Every cell runs the listed "
                    "seeds, so the arms are paired by seed.")]
    for ename, e in doc["experiments"].items():
        out += [("p", f"**{ename}**: factors " + "; ".join(f"`{k}` {', '.join(map(str, v))}" for k, v in
                                                           e["factors"].items())
                 + f"; seeds {', '.join(map(str, e['seeds']))}; cells trained: {', '.join(e['cells'])}."),
                ("code", render.yaml_text(e["base"]))]
    return out


def page_blocks(doc: dict, figs: dict) -> list[tuple]:
    # The verdicts first: on a phone the first screen shows the tally, how to read a verdict and the
    # table's first rows; what the effects and intervals are comes after the table.
    out = [("p", tally(doc)), ("note", MARGIN_RULE), ("table", summary_table(doc)), ("p", INTRO)]
    if EFFECTS_FIGURE in figs:
        out.append(("figure", figs[EFFECTS_FIGURE]))
    for r in doc["claims"]:
        out += claim_blocks(doc, r, figs)
    out += experiment_blocks(doc)
    out.append(("foot", doc.get("provenance") or render.provenance()))
    return out


# ---------------------------------------------------------------- files
def _figures(out: Path, doc: dict, live: dict) -> dict:
    """Save the claims' figures (matplotlib Figures in `live`, by file name) and the effects figure
    as PNG + SVG beside claims.md; return file name -> render.Figure."""

    figs = {}
    for name, (fig, caption) in live.items():
        png = figures.save(fig, out / name)
        figs[name] = render.Figure(png, name, name.rsplit(".", 1)[0], caption)
    fig = effects_figure(doc)
    if fig is not None:
        png = figures.save(fig, out / EFFECTS_FIGURE, layout=False)  # laid out around its legend already
        figs[EFFECTS_FIGURE] = render.Figure(
            png, EFFECTS_FIGURE, "every paired effect with its 95% interval",
            "Every paired comparison of the run: the mean effect (marker) with its 95% paired t interval, the "
            "per-seed differences as small dots, 0 dotted; the shaded side is the one the claim predicts. Each "
            "panel has its own axis and unit.")
    return figs


def write_reports(out: Path, doc: dict) -> None:
    """claims.json (numbers only), differences.csv, claims.md with its figures as PNG + SVG beside
    it, claims.html (the same page, figures embedded)."""
    out = Path(out)
    live: dict = {}
    for r in doc["claims"]:
        live.update(r.get("figures") or {})
    plain = {**doc, "claims": [{k: v for k, v in r.items() if k != "figures"} | {"figures": sorted(r.get("figures") or {})}
                               for r in doc["claims"]]}
    figs = _figures(out, plain, live)
    atomic_write_text(out / "claims.json", json.dumps(plain, indent=2) + "\n")
    atomic_write_text(out / "differences.csv", paired.differences_csv(difference_rows(plain), CLAIM_COLUMNS))
    # what wrote differences.csv: git commit, versions of normlab, torch, numpy, scipy, machine, date
    atomic_write_text(out / "provenance.json", json.dumps(plain.get("provenance_info") or render.provenance_info(),
                                                          indent=2) + "\n")
    blocks = page_blocks(plain, figs)
    atomic_write_text(out / "claims.md", render.markdown(title(plain), blocks))
    atomic_write_text(out / "claims.html", render.html_page(title(plain), blocks, PHONE_CARDS))


def render_markdown(doc: dict, figs: Optional[dict] = None) -> str:
    return render.markdown(title(doc), page_blocks(doc, figs or {}))


def render_html(doc: dict, figs: Optional[dict] = None) -> str:
    return render.html_page(title(doc), page_blocks(doc, figs or {}), PHONE_CARDS)
