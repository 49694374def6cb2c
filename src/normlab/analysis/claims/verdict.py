"""From paired samples to a verdict: the one place the claims call the statistics.

  holds              the interval excludes 0 on the side the claim predicts (or, for an exact
                     claim, the counted/compared numbers say so)
  does not hold here the interval excludes 0 on the other side (or the exact check fails)
  inconclusive       the interval contains 0
"""

from __future__ import annotations

import math

HOLDS = "holds"
FAILS = "does not hold here"
INCONCLUSIVE = "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)

METHOD = "95% paired bootstrap interval (10,000 resamples of the seeds)"


def paired_interval(baseline, arm) -> tuple[float, float, float]:
    """Mean paired difference arm - baseline and its 95% interval: every claim's statistics go
    through here, so changing the method is a change of this function alone."""
    from ..report import paired_bootstrap_ci

    return paired_bootstrap_ci(baseline, arm)


def verdict_from_ci(lo: float, hi: float, direction: int) -> str:
    """direction +1: the claim predicts effect > 0; -1: effect < 0."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if lo > 0:
        return HOLDS if direction > 0 else FAILS
    if hi < 0:
        return HOLDS if direction < 0 else FAILS
    return INCONCLUSIVE


def compare_arms(baseline: list, arm: list, direction: int) -> dict:
    """Paired effect arm - baseline with its interval and the verdict."""
    d, lo, hi = paired_interval(baseline, arm)
    return {"baseline": list(map(float, baseline)), "arm": list(map(float, arm)),
            "effect": d, "ci": [lo, hi], "direction": direction, "verdict": verdict_from_ci(lo, hi, direction)}


def decide_family(tests: list) -> None:
    """Set the verdict of every comparison (dicts from compare_arms) of one claims run, as one
    family. With per-comparison intervals each verdict stands alone: nothing to adjust."""
    for t in tests:
        t["verdict"] = verdict_from_ci(*t["ci"], t["direction"])


def all_of(verdicts) -> str:
    """A claim made of several predictions: it holds when every one holds, does not hold when
    any one is contradicted, and is inconclusive otherwise."""
    verdicts = list(verdicts)
    if any(v == FAILS for v in verdicts):
        return FAILS
    return HOLDS if verdicts and all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def difference_of_drops(arm_hi: list, arm_lo: list, base_hi: list, base_lo: list) -> list:
    """Per seed: (arm_hi - arm_lo) - (base_hi - base_lo), how much more the arm loses between its
    two conditions than the baseline loses between the same two."""
    n = {len(arm_hi), len(arm_lo), len(base_hi), len(base_lo)}
    if len(n) != 1:
        raise ValueError(f"need four samples paired by seed (equally long), got lengths "
                         f"{[len(arm_hi), len(arm_lo), len(base_hi), len(base_lo)]}")
    return [(ah - al) - (bh - bl) for ah, al, bh, bl in zip(arm_hi, arm_lo, base_hi, base_lo)]


def mean(xs) -> float:
    return sum(xs) / len(xs)
