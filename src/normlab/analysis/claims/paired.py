"""The shapes a trained claim's analysis takes, over the runs the sweep runner trained:
two arms paired by seed, or a difference of drops over four cells.

`runs` maps an arm's label to its run directories, one per seed in the same seed order for
every label (see runner.Runs), so position i of every list is the same seed.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from .verdict import all_of, compare_arms, difference_of_drops, mean


def failed_note(runs, labels) -> str:
    from .measures import failure

    bad = [(lab, i) for lab in labels for i, d in enumerate(runs.dirs(lab)) if failure(d)]
    if not bad:
        return ""
    return "; runs that failed: " + ", ".join(f"{lab} seed {runs.seeds[i]}" for lab, i in bad)


def _interval_text(c: dict) -> str:
    return f"effect {c['effect']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]"


def side_effects(runs, base: str, arm: str, also: dict) -> dict:
    """Secondary measures of the same runs, reported with their interval, not in the verdict."""
    out = {}
    for label, fn in also.items():
        c = compare_arms(runs.values(base, fn), runs.values(arm, fn), +1)
        out[label] = {"baseline_mean": mean(c["baseline"]), "arm_mean": mean(c["arm"]),
                      "effect": c["effect"], "ci": c["ci"]}
    return out


def also_text(also: dict) -> str:
    return "".join(f"; {k}: {v['baseline_mean']:.4f} -> {v['arm_mean']:.4f}, effect {v['effect']:+.4f} "
                   f"[{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]" for k, v in also.items())


def two_arms(runs, base: str, arm: str, measure: Callable, direction: int, what: str, setting: str,
             also: Optional[dict] = None) -> dict:
    """The arm against the baseline on `measure`, paired by seed."""
    a, b = runs.values(base, measure), runs.values(arm, measure)
    c = compare_arms(a, b, direction)
    c["setting"] = f"{setting}; n = {len(a)} paired seeds"
    c["numbers"] = {"baseline_mean": mean(a), "arm_mean": mean(b)}
    extra = side_effects(runs, base, arm, also or {})
    if extra:
        c["numbers"]["also"] = extra
    c["summary"] = (f"{what}: {mean(a):.4f} -> {mean(b):.4f}, {_interval_text(c)}" + also_text(extra)
                    + failed_note(runs, (base, arm)))
    return c


def interaction(runs, arm: tuple, baseline: tuple, measure: Callable, direction: int, what: str,
                setting: str) -> dict:
    """A difference of differences: the arm's drop between two conditions (arm[0] - arm[1]) against
    the baseline's drop between the same two (baseline[0] - baseline[1]), all on the same seeds."""
    labels = (*arm, *baseline)
    vals = {lab: runs.values(lab, measure) for lab in labels}
    arm_drop = [h - lo for h, lo in zip(vals[arm[0]], vals[arm[1]])]
    base_drop = [h - lo for h, lo in zip(vals[baseline[0]], vals[baseline[1]])]
    c = compare_arms(base_drop, arm_drop, direction)
    means = {lab: mean(v) for lab, v in vals.items()}
    c["setting"] = (f"{setting}; effect = ({arm[0]} - {arm[1]}) - ({baseline[0]} - {baseline[1]}) per seed; "
                    f"n = {len(arm_drop)} paired seeds")
    c["numbers"] = {"cells": means, "per_seed": vals, "arm_drop_mean": mean(arm_drop),
                    "baseline_drop_mean": mean(base_drop),
                    "effect_per_seed": difference_of_drops(vals[arm[0]], vals[arm[1]],
                                                           vals[baseline[0]], vals[baseline[1]])}
    c["summary"] = (f"{what}: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()) +
                    f"; drop {arm[0]}->{arm[1]} {mean(arm_drop):+.4f} vs {baseline[0]}->{baseline[1]} "
                    f"{mean(base_drop):+.4f}, {_interval_text(c)}" + failed_note(runs, labels))
    return c


def several(parts: dict, setting: str, what: str) -> dict:
    """A claim made of several paired predictions (label -> a two_arms/interaction result): the
    verdict is all_of theirs (set again by the runner once the family's statistics are known);
    effect and interval shown in the table are the first prediction's."""
    first = next(iter(parts.values()))
    return {"setting": setting + "; " + first["setting"].rsplit("; ", 1)[-1],
            "verdict": all_of(p["verdict"] for p in parts.values()),
            "effect": first["effect"], "ci": first["ci"], "direction": first["direction"],
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
