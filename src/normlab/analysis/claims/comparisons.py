"""The shapes a trained claim's analysis takes, over the runs the sweep runner trained:
two arms paired by seed, or a difference of drops over four cells.

`runs` maps an arm's label to its run directories, one per seed in the same seed order for
every label (see runner.Runs), so position i of every list is the same seed.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from ..render import num
from .measures import failure
from .verdict import all_of, compare_arms, difference_of_drops, mean


def failed_note(runs, labels) -> str:

    bad = [(lab, i) for lab in labels for i, d in enumerate(runs.dirs(lab)) if failure(d)]
    if not bad:
        return ""
    return "; runs that failed: " + ", ".join(f"{lab} seed {runs.seeds[i]}" for lab, i in bad)


def unit_of(measure: Callable) -> tuple[str, float]:
    """The unit a measure's differences are reported in and the factor from its raw values
    (measures.unit marks them; 100 turns an accuracy in [0, 1] into accuracy points)."""
    return getattr(measure, "unit", ""), getattr(measure, "scale", 1.0)


def in_unit(runs, label: str, measure: Callable) -> list[float]:
    return [v * unit_of(measure)[1] for v in runs.values(label, measure)]


def digits(unit: str) -> int:
    """Decimals for a value in `unit`: points of a percentage need 2, raw numbers 4."""
    return 2 if "points" in unit else 4


def value(x: float, unit: str, sign: bool = False) -> str:

    return num(x, digits(unit), sign=sign)


def what_in(what: str, unit: str) -> str:
    """The measure's name with the unit of its values: % for accuracies and fractions shown in points."""
    if not unit or unit.lower() in what.lower():
        return what
    return f"{what} (%)" if "points" in unit else f"{what} ({unit})"


def effect_text(c: dict) -> str:
    """"+1.23 accuracy points [+0.45, +2.01]": the mean difference, its interval, its unit."""
    u = c.get("unit", "")
    return (f"{value(c['effect'], u, True)} [{value(c['ci'][0], u, True)}, {value(c['ci'][1], u, True)}]"
            + (f" {u}" if u else ""))


def side_effects(runs, base: str, arm: str, also: dict) -> dict:
    """Secondary measures of the same runs, reported with their interval, not in the verdict."""
    out = {}
    for label, fn in also.items():
        c = compare_arms(in_unit(runs, base, fn), in_unit(runs, arm, fn), +1, unit_of(fn)[0])
        out[label] = {"baseline_mean": mean(c["baseline"]), "arm_mean": mean(c["arm"]),
                      "effect": c["effect"], "ci": c["ci"], "unit": c["unit"]}
    return out


def also_text(also: dict) -> str:
    return "".join(f"; {what_in(k, v['unit'])}: {value(v['baseline_mean'], v['unit'])} -> "
                   f"{value(v['arm_mean'], v['unit'])}, effect {effect_text(v)}" for k, v in also.items())


def two_arms(runs, base: str, arm: str, measure: Callable, direction: int, what: str, setting: str,
             also: Optional[dict] = None, margin: Optional[float] = None) -> dict:
    """The arm against the baseline on `measure`, paired by seed, in the measure's unit; `margin`
    (in that unit) is the smallest effect that would count (see paired.decide)."""
    u = unit_of(measure)[0]
    a, b = in_unit(runs, base, measure), in_unit(runs, arm, measure)
    c = compare_arms(a, b, direction, u, (base, arm), what, margin)
    c["setting"] = f"{setting}; n = {len(a)} paired seeds"
    c["numbers"] = {"baseline_mean": mean(a), "arm_mean": mean(b)}
    extra = side_effects(runs, base, arm, also or {})
    if extra:
        c["numbers"]["also"] = extra
    c["summary"] = (f"{what_in(what, u)}: {value(mean(a), u)} -> {value(mean(b), u)}, effect {effect_text(c)}"
                    + also_text(extra) + failed_note(runs, (base, arm)))
    return c


def interaction(runs, arm: tuple, baseline: tuple, measure: Callable, direction: int, what: str,
                setting: str) -> dict:
    """A difference of differences: the arm's drop between two conditions (arm[0] - arm[1]) against
    the baseline's drop between the same two (baseline[0] - baseline[1]), all on the same seeds."""
    labels = (*arm, *baseline)
    u = unit_of(measure)[0]
    vals = {lab: in_unit(runs, lab, measure) for lab in labels}
    arm_drop = [h - lo for h, lo in zip(vals[arm[0]], vals[arm[1]])]
    base_drop = [h - lo for h, lo in zip(vals[baseline[0]], vals[baseline[1]])]
    c = compare_arms(base_drop, arm_drop, direction, u, (f"{baseline[0]} - {baseline[1]}", f"{arm[0]} - {arm[1]}"),
                     f"drop in {what}")
    means = {lab: mean(v) for lab, v in vals.items()}
    c["setting"] = (f"{setting}; effect = ({arm[0]} - {arm[1]}) - ({baseline[0]} - {baseline[1]}) per seed; "
                    f"n = {len(arm_drop)} paired seeds")
    c["numbers"] = {"cells": means, "per_seed": vals, "arm_drop_mean": mean(arm_drop),
                    "baseline_drop_mean": mean(base_drop),
                    "effect_per_seed": difference_of_drops(vals[arm[0]], vals[arm[1]],
                                                           vals[baseline[0]], vals[baseline[1]])}
    c["summary"] = (f"{what_in(what, u)}: " + ", ".join(f"{k} {value(v, u)}" for k, v in means.items()) +
                    f"; drop {arm[0]}->{arm[1]} {value(mean(arm_drop), u, True)} vs {baseline[0]}->{baseline[1]} "
                    f"{value(mean(base_drop), u, True)}, effect {effect_text(c)}" + failed_note(runs, labels))
    return c


def several(parts: dict, setting: str, what: str) -> dict:
    """A claim made of several paired predictions (label -> a two_arms/interaction result): the
    verdict is all_of theirs (set again by the runner once the family's statistics are known);
    effect and interval shown in the table are the first prediction's."""
    first = next(iter(parts.values()))
    return {"setting": setting + "; " + first["setting"].rsplit("; ", 1)[-1],
            "verdict": all_of(p["verdict"] for p in parts.values()),
            "effect": first["effect"], "ci": first["ci"], "direction": first["direction"], "unit": first["unit"],
            "baseline": first["baseline"], "arm": first["arm"], "numbers": {"predictions": parts},
            "summary": f"{what}: " + "; ".join(f"{k}: {p['summary']}" for k, p in parts.items())}


def tests_of(result: dict) -> list[dict]:
    """The comparisons a result's verdict rests on: its predictions, or itself when it is one
    paired comparison; none for an exact claim."""
    preds = (result.get("numbers") or {}).get("predictions")
    if preds:
        return list(preds.values())
    return [result] if result.get("direction") in (1, -1) else []


def finite_mean(xs) -> float:
    v = [x for x in xs if math.isfinite(x)]
    return mean(v) if v else float("nan")
