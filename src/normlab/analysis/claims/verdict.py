"""From paired samples to a verdict: the claims' one door into analysis/paired.py.

Each comparison of a claims run (arm - baseline, paired by seed, with the side the claim
predicts) gets a paired t interval and p; then all of them, over every claim of the run, are one
Holm-Bonferroni family (decide_family), and

  holds              p_holm < 0.05 and the mean difference lies on the predicted side
  does not hold here p_holm < 0.05 and it lies on the other side
                     or, for a claim with a margin (the smallest effect that would count), the
                     one-sided test that the effect falls short of it, in the same Holm family,
                     gives p_holm < 0.05 (analysis/paired.py)
  inconclusive       p_holm >= 0.05 (the report gives the seeds a test would need), or a run
                     failed and left a NaN in the sample
  too few seeds      fewer than 3 paired seeds

Exact claims (a count, a computed identity) carry their own verdict and are not in the family.
"""

from __future__ import annotations

import math
from typing import Optional

from .. import paired

HOLDS = paired.HOLDS
FAILS = paired.FAILS
INCONCLUSIVE = paired.INCONCLUSIVE
TOO_FEW = paired.TOO_FEW
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, TOO_FEW)

METHOD = (f"{paired.LEVEL:.0%} paired t interval over the seeds; verdicts from two-sided paired t-tests "
          "(and, where a claim names a margin, the one-sided test that the effect is smaller), "
          "Holm-Bonferroni adjusted over every test of the run")


def verdict_from_ci(lo: float, hi: float, direction: int) -> str:
    """The verdict a single interval gives (no family adjustment): direction +1 predicts effect
    > 0, -1 effect < 0; an interval touching or containing 0 is inconclusive."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if lo > 0:
        return HOLDS if direction > 0 else FAILS
    if hi < 0:
        return HOLDS if direction < 0 else FAILS
    return INCONCLUSIVE


def compare_arms(baseline: list, arm: list, direction: int, unit: str = "", labels: tuple = ("baseline", "arm"),
                 metric: str = "", margin: Optional[float] = None) -> dict:
    """Paired effect arm - baseline with its t interval and p, the samples already in `unit`; the
    verdict here is the single comparison's, which decide_family replaces by the family's.
    `labels` (baseline, arm) and `metric` name the comparison in differences.csv; `margin`, in
    `unit`, is the smallest effect on the predicted side that would count (paired.decide)."""
    c = paired.compare(baseline, arm, better=direction)
    return {"baseline": list(map(float, baseline)), "arm": list(map(float, arm)), "n": c.n,
            "effect": c.mean, "ci": [c.low, c.high], "sd": c.sd, "p": c.p, "prob_better": c.prob_better,
            "direction": direction, "verdict": _alone(c, direction, margin), "unit": unit,
            "labels": list(labels), "metric": metric, "margin": margin}


def _alone(c: paired.Comparison, direction: int, margin: Optional[float] = None) -> str:
    return paired.decide([c], [direction], margins=[margin])[0].verdict if c.n >= paired.MIN_N and math.isfinite(c.p) \
        else (TOO_FEW if c.n < paired.MIN_N else INCONCLUSIVE)


def decide_family(tests: list) -> None:
    """Holm over every comparison of one claims run (dicts from compare_arms), then each one's
    verdict, p_holm, the family size and, when inconclusive, the seeds a test would need."""
    comps = [paired.Comparison(t["n"], t["effect"], t["sd"], t["ci"][0], t["ci"][1], t["p"], t["prob_better"])
             for t in tests]
    decided = paired.decide(comps, [t["direction"] for t in tests], margins=[t.get("margin") for t in tests])
    for t, c in zip(tests, decided):
        verdict = c.verdict
        if verdict == TOO_FEW and c.n >= paired.MIN_N:  # a NaN from a failed run, not a lack of seeds
            verdict = INCONCLUSIVE
        t.update(verdict=verdict, p_holm=c.p_holm, family=c.family, seeds_needed=c.seeds_needed,
                 p_margin=c.p_margin, p_margin_holm=c.p_margin_holm)


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
