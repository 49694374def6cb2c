"""Paired comparisons over seeds: the statistics behind `normlab report` and `normlab claims`.

Two arms run on the same seeds (same initial weights where the shapes agree, same data order), so
each seed gives one difference arm - baseline and what the seed shares cancels in it. Everything
here works on those n per-seed differences d_1..d_n.

Method
  interval     paired t: mean(d) -/+ t(1 - (1-level)/2, n-1) * sd(d) / sqrt(n). Its coverage is exact
               for normal noise at any n >= 2. For skewed noise it is lower; simulated
               (benchmarks/coverage.py, 20,000 studies a cell, n = 3, 5, 10): gamma(8) noise
               (skewness 0.7) 94.1-94.2%, lognormal sigma 0.5 (skewness 1.8) 91.2-92.2%,
               exponential (skewness 2) 88.5-89.7%, lognormal sigma 1 (skewness 6) 82.5-83.8%
               (COVERAGE; tests/test_paired.py checks them). No other shape was tried. The
               percentile bootstrap used before covered about 75% at n = 3 (its interval is the
               range of the three differences) and is no longer used.
  p            two-sided paired t-test of mean(d) = 0 (the test the interval inverts).
  p_holm       Holm-Bonferroni adjusted p over a family (every comparison of one report, every claim
               of one claims run). Verdicts use p_holm < ALPHA, so a family of 12 does not give a
               spurious verdict one time in two.
  prob_better  share of the n seeds in which the arm beat the baseline (ties count half): a plain
               count, not a model.
  seeds_needed for an inconclusive comparison, the seeds in all (not more seeds) a paired t-test
               needs to detect a true difference of the observed mean with the observed sd at power
               0.8, at the strictest level Holm applies in the family (ALPHA / family size), and at
               least MIN_N. Power from the noncentral t (ttest_power(); both tails as upper tails, which
               stay finite where scipy's lower tail is NaN); tests/test_paired.py checks it against
               statsmodels and a simulation for standardised effects 0.2-15 and alphas 0.05 to
               0.05/30. The observed mean and sd of a few seeds are rough, so this is a guide to
               the order of magnitude, not a promise.
  MIN_N        below 3 paired seeds no verdict is given: with 2 the sd has one degree of freedom
               and the interval spans t(0.975, 1) = 12.7 standard errors.
  margin       a claim may name the smallest effect that would count (its margin, > 0, in the
               comparison's units, fixed before its runs). Then a second hypothesis joins the
               family: the one-sided paired t-test that the effect on the predicted side is smaller
               than the margin (one half of an equivalence test, TOST; Schuirmann 1987). Rejected
               after Holm, and the effect not shown on the predicted side, the claim does not hold
               here: the data rule out an effect of the size that would matter. Without a margin,
               a true effect near 0 leaves a claim inconclusive at any n.

API (small on purpose)
  compare(baseline, arm, better=+1)  -> Comparison of one pair of arms (no verdict yet)
  decide(comparisons, directions)    -> the same Comparisons with p_holm, verdict, seeds_needed
  holm(pvalues)                      -> Holm-adjusted p-values (NaN stays NaN, not counted)
  t_interval(d)                      -> (mean, low, high) over the last axis, vectorized
  seeds_needed(mean, sd, alpha)      -> int or None (seeds in all)
  ttest_power(effect, n, alpha)      -> the paired t-test's power at n pairs
  differences_csv(rows)              -> the text of differences.csv (DIFFERENCE_COLUMNS)

Verdicts: with direction 0 (no side predicted, as in a sweep report) HIGHER or LOWER when p_holm <
ALPHA; with direction +1/-1 (a claim predicting arm > or < baseline) HOLDS or FAILS; otherwise
INCONCLUSIVE, or TOO_FEW when n < MIN_N.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, replace
from typing import Optional, Sequence

import numpy as np

LEVEL = 0.95
ALPHA = 1.0 - LEVEL
MIN_N = 3
POWER = 0.8
METHOD = "paired t"

# The 95% interval's simulated coverage at n = 3-10 (benchmarks/coverage.py), for the page texts.
COVERAGE = ("95% for normal per-seed noise; for skewed noise less: 94% (gamma, skewness 0.7), 91-92% "
            "(lognormal sigma 0.5), 88.5-90% (exponential), 82.5-84% (lognormal sigma 1), simulated at 3-10 seeds "
            "in benchmarks/coverage.py")

HIGHER = "higher"
LOWER = "lower"
HOLDS = "holds"
FAILS = "does not hold here"
INCONCLUSIVE = "inconclusive"
TOO_FEW = "too few seeds"

DIFFERENCE_COLUMNS = ("cell", "baseline", "metric", "unit", "n", "mean_difference", "low", "high", "method",
                      "p", "p_holm", "prob_better", "verdict", "seeds_needed")


@dataclass(frozen=True)
class Comparison:
    n: int                  # paired seeds
    mean: float             # mean of arm - baseline
    sd: float               # sample sd of the differences (ddof 1); NaN when n < 2
    low: float              # LEVEL paired t interval of the mean difference
    high: float
    p: float                # two-sided paired t-test
    prob_better: float      # share of seeds where the arm beat the baseline (ties half)
    level: float = LEVEL
    method: str = METHOD
    p_holm: float = math.nan
    verdict: str = TOO_FEW
    seeds_needed: Optional[int] = None
    family: int = 0         # hypotheses in the Holm family (set by decide)
    margin: float = math.nan         # smallest effect that would count, on the predicted side
    p_margin: float = math.nan       # one-sided p of "the effect is smaller than the margin"
    p_margin_holm: float = math.nan

    def to_dict(self) -> dict:
        return asdict(self)


def _t():
    from scipy import stats  # scipy comes with scikit-learn; imported late, as it is slow to load

    return stats


def t_interval(d, level: float = LEVEL):
    """Mean and paired t interval over the last axis of `d` (any shape, n >= 2 along it).
    Returns (mean, low, high) as arrays (floats for 1-D input)."""
    d = np.asarray(d, dtype=np.float64)
    n = d.shape[-1]
    if n < 2:
        raise ValueError(f"a t interval needs at least 2 differences, got {n}")
    m = d.mean(axis=-1)
    half = _t().t.ppf(0.5 + level / 2, n - 1) * d.std(axis=-1, ddof=1) / math.sqrt(n)
    return m, m - half, m + half


def compare(baseline: Sequence[float], arm: Sequence[float], better: int = +1, level: float = LEVEL) -> Comparison:
    """The paired comparison arm - baseline. `better` says which sign counts as the arm beating
    the baseline in prob_better (+1: higher is better, e.g. accuracy; -1: lower, e.g. a loss)."""
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(arm, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equally long, non-empty 1-D samples paired by seed, "
                         f"got shapes {a.shape} and {b.shape}")
    if better not in (1, -1):
        raise ValueError(f"better must be +1 or -1, got {better}")
    d = b - a
    n = len(d)
    wins = float(np.sum(np.sign(d) == better) + 0.5 * np.sum(d == 0)) / n
    if n < 2:
        return Comparison(n, float(d.mean()), math.nan, math.nan, math.nan, math.nan, wins, level)
    mean, lo, hi = (float(x) for x in t_interval(d, level))
    sd = float(d.std(ddof=1))
    if sd == 0.0:  # identical differences (an exact measure): no noise left to test against
        p = 1.0 if mean == 0.0 else 0.0
    else:
        t = mean / (sd / math.sqrt(n))
        p = float(2 * _t().t.sf(abs(t), n - 1))
    return Comparison(n, mean, sd, lo, hi, p, wins, level)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjustment (Holm 1979). NaN entries (no test) stay NaN and do not
    count in the family size."""
    p = [float(x) for x in pvalues]
    idx = sorted((i for i, x in enumerate(p) if math.isfinite(x)), key=lambda i: p[i])
    m = len(idx)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))  # monotone: never below an earlier step
        out[i] = running
    return out


def ttest_power(effect: float, n, alpha: float = ALPHA):
    """Power of the two-sided paired t-test at level `alpha` with `n` pairs (an int or an array)
    when the true mean difference is `effect` standard deviations of the differences (noncentral t).

    Both tails are upper tails of a noncentral t: P(T < -c | nc) = P(T > c | -nc). scipy's
    nct.cdf returns NaN far in the lower tail (scipy 1.17: nct.cdf(-2, 3, 13) is nan), which made
    the old sum NaN, and NaN >= power never true, for large effects; nct.sf stays finite there."""
    st = _t()
    n = np.asarray(n, dtype=np.float64)
    df = n - 1
    crit = st.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) * np.sqrt(n)
    return st.nct.sf(crit, df, nc) + st.nct.sf(crit, df, -nc)


def seeds_needed(mean: float, sd: float, alpha: float = ALPHA, power: float = POWER,
                 limit: int = 10_000, minimum: int = MIN_N) -> Optional[int]:
    """The number of paired seeds in all (not more seeds) at which a two-sided paired t-test at
    level `alpha` detects a true mean difference `mean`, with per-seed sd `sd`, with probability
    `power`; never fewer than `minimum` (MIN_N: below it no verdict is given). None when there is
    nothing to estimate from (mean 0, sd 0 or NaN) or more than `limit` are needed."""
    if not (math.isfinite(mean) and math.isfinite(sd)) or mean == 0.0 or sd <= 0.0:
        return None
    effect = abs(mean) / sd
    st = _t()
    z = st.norm.ppf(1 - alpha / 2) + st.norm.ppf(power)
    # The normal approximation (known sd) needs fewer pairs than the t-test, so the search starts
    # at or below the answer; blocks of 64 candidates are evaluated at once.
    start = max(2, minimum, int((z / effect) ** 2))
    for lo in range(start, limit + 1, 64):
        ns = np.arange(lo, min(lo + 64, limit + 1))
        reached = np.flatnonzero(ttest_power(effect, ns, alpha) >= power)
        if reached.size:
            return int(ns[reached[0]])
    return None


def p_below_margin(c: Comparison, direction: int, margin: float) -> float:
    """One-sided paired t-test of H0 "the effect on the predicted side is at least `margin`"
    against "it is smaller": small when the interval's predicted-side end stays short of the
    margin. NaN below MIN_N seeds."""
    if c.n < MIN_N or not math.isfinite(c.sd):
        return math.nan
    short = margin - direction * c.mean  # > 0: the observed effect falls short of the margin
    if c.sd == 0.0:
        return 0.0 if short > 0 else 1.0
    return float(_t().t.sf(short / (c.sd / math.sqrt(c.n)), c.n - 1))


def decide(comparisons: Sequence[Comparison], directions: Optional[Sequence[int]] = None,
           alpha: float = ALPHA, margins: Optional[Sequence[Optional[float]]] = None) -> list[Comparison]:
    """Holm over the family `comparisons` (and the margin test of each that has a margin), then
    each one's verdict (see the module docstring) and, when inconclusive, seeds_needed.
    `directions`: per comparison 0 (two-sided) or the predicted sign +1/-1; default all 0.
    `margins`: per comparison None or the smallest effect that would count (> 0; needs a
    predicted sign)."""
    directions = [0] * len(comparisons) if directions is None else list(directions)
    margins = [None] * len(comparisons) if margins is None else list(margins)
    if len(directions) != len(comparisons) or any(x not in (-1, 0, 1) for x in directions):
        raise ValueError("directions must hold one of -1, 0, +1 per comparison")
    if len(margins) != len(comparisons):
        raise ValueError(f"margins must hold one entry per comparison ({len(comparisons)}), got {len(margins)}")
    for m, d in zip(margins, directions):
        if m is not None and not (math.isfinite(m) and m > 0 and d != 0):
            raise ValueError(f"a margin must be a positive number on a comparison with a predicted sign, got {m}")
    usable = [c.p if c.n >= MIN_N else math.nan for c in comparisons]
    below = [p_below_margin(c, d, m) if m is not None else math.nan
             for c, d, m in zip(comparisons, directions, margins)]
    adjusted = holm(usable + below)
    adjusted, below_holm = adjusted[:len(usable)], adjusted[len(usable):]
    family = sum(math.isfinite(x) for x in usable + below)
    out = []
    for c, direction, margin, ph, pb, pbh in zip(comparisons, directions, margins, adjusted, below, below_holm):
        need = None
        if not math.isfinite(ph):
            verdict = TOO_FEW
            need = seeds_needed(c.mean, c.sd, alpha / max(family, 1)) if c.n >= 2 else None
        elif ph < alpha and direction == 0:
            verdict = HIGHER if c.mean > 0 else LOWER
        elif ph < alpha:
            verdict = HOLDS if (c.mean > 0) == (direction > 0) else FAILS
        elif math.isfinite(pbh) and pbh < alpha:
            verdict = FAILS  # no effect shown, and one of the margin's size ruled out
        else:
            verdict = INCONCLUSIVE
            need = seeds_needed(c.mean, c.sd, alpha / max(family, 1))
        out.append(replace(c, p_holm=ph, verdict=verdict, seeds_needed=need, family=family,
                           margin=math.nan if margin is None else float(margin), p_margin=pb, p_margin_holm=pbh))
    return out


def method_text(c: Comparison) -> str:
    """How the numbers of `c` were computed, in words, for a table or a CSV cell."""
    text = f"{c.method}, {c.level:.0%} interval, {c.n} seeds; p Holm-adjusted over {c.family}"
    if math.isfinite(c.margin):
        text += f"; margin {c.margin:g}: one-sided t-test that the effect is smaller, in the same family"
    return text


def difference_row(cell: str, baseline: str, metric: str, unit: str, c: Comparison, scale: float = 1.0) -> dict:
    """One row of differences.csv; `scale` converts the metric to `unit` (100 for accuracy points)."""
    return {"cell": cell, "baseline": baseline, "metric": metric, "unit": unit, "n": c.n,
            "mean_difference": c.mean * scale, "low": c.low * scale, "high": c.high * scale,
            "method": method_text(c), "p": c.p, "p_holm": c.p_holm,
            "prob_better": c.prob_better, "verdict": c.verdict,
            "seeds_needed": "" if c.seeds_needed is None else c.seeds_needed,
            "margin": c.margin * scale, "p_margin_holm": c.p_margin_holm}


def differences_csv(rows: Sequence[dict], columns: Sequence[str] = DIFFERENCE_COLUMNS) -> str:
    """The text of differences.csv: `columns` (claims put theirs first), floats as repr (full
    precision), NaN empty."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        r = {k: ("" if isinstance(v, float) and not math.isfinite(v) else repr(v) if isinstance(v, float) else v)
             for k, v in r.items()}
        w.writerow(r)
    return buf.getvalue()
