"""The paired statistics of reports and claims (analysis/paired.py), checked against hand
computations, scipy's own t-test and a simulation of the method's coverage."""

import math

import numpy as np
import pytest
from scipy import stats as st

from normlab.analysis import paired

# The committed plain-vs-residual report (3 seeds): final test accuracy per seed.
PLAIN20 = [0.9749303621169917, 0.9860724233983287, 0.9721448467966574]
RESNET56 = [0.9693593314763231, 0.9220055710306406, 0.9665738161559888]


def test_t_interval_by_hand_on_the_issue_example():
    c = paired.compare(PLAIN20, RESNET56)
    d = np.subtract(RESNET56, PLAIN20)
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)  # t(0.975, 2) from a table
    assert c.n == 3 and c.mean == pytest.approx(-0.0251, abs=5e-5)
    assert (c.low, c.high) == pytest.approx((d.mean() - half, d.mean() + half))
    # The issue's numbers: the old bootstrap said [-0.0641, -0.0056] "excludes 0"; the t interval does not.
    assert round(c.low, 3) == -0.109 and round(c.high, 3) == 0.059
    assert c.p == pytest.approx(st.ttest_rel(RESNET56, PLAIN20).pvalue)
    assert c.prob_better == 0.0 and c.method == "paired t" and c.level == 0.95


def test_compare_against_scipy_and_edge_cases():
    rng = np.random.default_rng(1)
    a = rng.normal(0.9, 0.02, 7)
    b = a + rng.normal(0.01, 0.01, 7)
    c = paired.compare(a, b, level=0.9)
    ci = st.ttest_rel(b, a).confidence_interval(0.9)
    assert (c.low, c.high) == pytest.approx((ci.low, ci.high))
    assert c.p == pytest.approx(st.ttest_rel(b, a).pvalue)
    # prob_better counts seeds, ties half; better=-1 for a loss
    assert paired.compare([1, 1, 1, 1], [2, 0, 1, 3]).prob_better == pytest.approx(2.5 / 4)
    assert paired.compare([1, 1, 1, 1], [2, 0, 1, 3], better=-1).prob_better == pytest.approx(1.5 / 4)
    # identical differences: a zero-width interval; p 0 (a shift) or 1 (no difference)
    shift = paired.compare([0.5, 0.6, 0.7], [0.6, 0.7, 0.8])
    assert (shift.mean, shift.low, shift.high, shift.p) == pytest.approx((0.1, 0.1, 0.1, 0.0))
    assert paired.compare([1, 2, 3], [1, 2, 3]).p == 1.0
    one = paired.compare([1.0], [2.0])
    assert one.n == 1 and one.mean == 1.0 and math.isnan(one.low) and math.isnan(one.p)
    with pytest.raises(ValueError, match="need two equally long, non-empty 1-D samples paired by seed"):
        paired.compare([1, 2], [1])
    with pytest.raises(ValueError, match="better must be"):
        paired.compare([1, 2], [1, 2], better=0)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = .02, .03, .06, .04 -> monotone .02 .03 .06 .06
    assert paired.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert paired.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = paired.holm([0.01, math.nan, 0.02])  # NaN is not a test: family of 2
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert paired.holm([]) == []


def test_decide_verdicts_use_the_adjusted_p():
    sure = paired.compare([0, 0, 0, 0, 0], [1.0, 1.1, 0.9, 1.05, 0.95])     # p ~ 1e-5
    borderline = paired.compare([0, 0, 0], [0.25, 0.4, 0.55])                 # p = 0.044 alone
    two = paired.compare([0, 0], [1, 1.1])
    noise = paired.compare([0, 0, 0], [0.1, -0.1, 0.05])
    assert 0.025 < borderline.p < 0.05
    out = paired.decide([sure, borderline, two, noise], directions=[-1, +1, 0, 0])
    assert out[0].verdict == paired.FAILS                 # the claim predicted a decrease
    assert out[1].verdict == paired.INCONCLUSIVE          # second smallest of 3: 0.044 x 2 = 0.09
    assert out[1].p_holm == pytest.approx(2 * borderline.p)
    assert out[1].seeds_needed == paired.seeds_needed(0.4, 0.15, 0.05 / 3)
    assert out[2].verdict == paired.TOO_FEW and math.isnan(out[2].p_holm)  # n = 2: no verdict
    assert out[3].verdict == paired.INCONCLUSIVE and out[0].family == 3
    alone = paired.decide([sure])[0]
    assert alone.verdict == paired.HIGHER and alone.seeds_needed is None
    assert paired.decide([paired.compare([0, 0, 0], [-1, -1.2, -0.9])])[0].verdict == paired.LOWER
    with pytest.raises(ValueError, match="directions"):
        paired.decide([sure], directions=[2])


def test_a_margin_makes_a_null_effect_decisive():
    rng = np.random.default_rng(3)
    base = rng.normal(13.7, 0.7, 20)
    small = base + rng.normal(-0.2, 0.8, 20)      # narrows the gap by ~0.2 points: "not by 1"
    large = base + rng.normal(-1.5, 0.8, 20)      # narrows it by ~1.5: holds
    near = base[:10] + rng.normal(-0.5, 0.1, 10)  # surely narrows, by less than the margin: holds
    cs = [paired.compare(base, small, better=-1), paired.compare(base, large, better=-1),
          paired.compare(base[:10], near, better=-1)]
    out = paired.decide(cs, directions=[-1, -1, -1], margins=[1.0, 1.0, 1.0])
    # H0 "the decrease is at least 1" is H0 mean <= -1, tested one-sided: scipy's t-test says the same
    assert out[0].p_margin == pytest.approx(st.ttest_1samp(small - base, -1.0, alternative="greater").pvalue)
    assert out[0].family == 6  # three two-sided tests and three margin tests, one Holm family
    assert out[0].p_margin_holm == pytest.approx(paired.holm([c.p for c in cs] + [o.p_margin for o in out])[3])
    assert out[0].verdict == paired.FAILS and out[0].p_holm >= 0.05 and out[0].margin == 1.0
    assert out[1].verdict == paired.HOLDS and out[1].p_margin > 0.5
    assert out[2].verdict == paired.HOLDS and out[2].p_margin_holm < 0.05  # both rejected: it does narrow
    # a claim predicting a rise: H0 "the rise is at least 1", one-sided the other way
    risen = base + rng.normal(0.1, 0.5, 20)
    r = paired.decide([paired.compare(base, risen)], directions=[+1], margins=[1.0])[0]
    assert r.p_margin == pytest.approx(st.ttest_1samp(risen - base, 1.0, alternative="less").pvalue)
    assert r.verdict == paired.FAILS
    # without a margin the same data stay inconclusive, at any n
    assert paired.decide([cs[0]], directions=[-1])[0].verdict == paired.INCONCLUSIVE
    with pytest.raises(ValueError, match="a margin must be a positive number on a comparison with a predicted sign"):
        paired.decide([cs[0]], directions=[0], margins=[1.0])
    with pytest.raises(ValueError, match="a margin must be a positive number"):
        paired.decide([cs[0]], directions=[-1], margins=[-1.0])


def test_the_margin_test_rejects_a_true_margin_sized_effect_5_percent_of_the_time():
    # exactly at the margin H0 is true: "does not hold" must come out at most alpha of the time
    rng = np.random.default_rng(11)
    d = rng.normal(-1.0, 0.8, (2000, 20))
    rejected = sum(paired.p_below_margin(paired.compare(np.zeros(20), row, better=-1), -1, 1.0) < 0.05 for row in d)
    assert 0.035 < rejected / len(d) < 0.065


def test_seeds_needed_matches_the_power_tables():
    # G*Power / Cohen: paired t, two-sided alpha 0.05, power 0.8: dz 0.5 -> 34 pairs, dz 1 -> 10.
    assert paired.seeds_needed(0.5, 1.0) == 34
    assert paired.seeds_needed(-1.0, 1.0) == 10
    assert paired.seeds_needed(0.0, 1.0) is None and paired.seeds_needed(1.0, 0.0) is None
    assert paired.seeds_needed(1e-6, 1.0) is None  # beyond the limit
    # The issue's cases, where scipy's nct.cdf tail is NaN: 3 (not 7) and 9 (not 11) seeds in all.
    assert paired.seeds_needed(6.5, 1.0, alpha=0.05) == 3
    assert paired.seeds_needed(2.0, 1.0, alpha=0.05 / 19) == 9
    assert paired.seeds_needed(15.0, 1.0, minimum=2) == 2 and paired.seeds_needed(15.0, 1.0) == 3  # MIN_N


EFFECTS = (0.2, 0.35, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 4.0, 6.5, 10.0, 15.0)
ALPHAS = (0.05, 0.05 / 3, 0.05 / 10, 0.05 / 19, 0.05 / 30)


def test_power_agrees_with_statsmodels_where_statsmodels_is_finite():
    from statsmodels.stats.power import TTestPower

    sm = TTestPower()
    checked = 0
    for e in EFFECTS:
        for a in ALPHAS:
            n = paired.seeds_needed(e, 1.0, a, minimum=2)
            ours = paired.ttest_power(e, [n - 1, n] if n > 2 else [n], a)
            assert np.all(np.isfinite(ours))
            theirs = [sm.power(e, k, a, alternative="two-sided") for k in ([n - 1, n] if n > 2 else [n])]
            finite = np.isfinite(theirs)  # statsmodels inherits scipy's NaN tail for large effects
            assert ours[finite] == pytest.approx(np.asarray(theirs)[finite], rel=1e-6, abs=1e-9)
            checked += int(finite.sum())
            # n is the first sample size reaching power 0.8
            assert ours[-1] >= 0.8 and (n == 2 or ours[0] < 0.8), (e, a, n, ours)
    assert checked > 60


def test_seeds_needed_against_a_simulation_over_effects_and_alphas():
    # At the returned n a simulated paired t-test detects the effect about 80% of the time, at n - 1
    # less: normal differences with mean `effect` and sd 1, 4,000 simulated studies per point.
    rng = np.random.default_rng(7)
    reps, tol = 4000, 0.025  # 4 standard errors of a simulated power near 0.8
    for e in EFFECTS:
        for a in ALPHAS:
            n = paired.seeds_needed(e, 1.0, a, minimum=2)
            for k, above in ((n, True), (n - 1, False)):
                if k < 2:
                    continue
                d = rng.standard_normal((reps, k), dtype=np.float32) + np.float32(e)
                t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(k))
                simulated = float(np.mean(np.abs(t) > st.t.ppf(1 - a / 2, k - 1)))
                if above:
                    assert simulated >= 0.8 - tol, (e, a, k, simulated)
                else:
                    assert simulated < 0.8 + tol, (e, a, k, simulated)


def _percentile_bootstrap_coverage(d, n_boot, rng, level=0.95):
    """The interval the reports used before: percentile bootstrap of the mean difference."""
    reps, n = d.shape
    idx = rng.integers(0, n, size=(reps, n_boot, n))
    means = np.take_along_axis(np.broadcast_to(d[:, None, :], idx.shape), idx, axis=2).mean(axis=2)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=1)
    return float(np.mean((lo <= 0) & (0 <= hi)))


NOISE = {
    "normal": lambda rng, shape: rng.normal(0.0, 1.0, shape),
    # gamma(8) centred: skewness 0.71
    "skewed": lambda rng, shape: rng.gamma(8.0, 1.0, shape) - 8.0,
}


@pytest.mark.parametrize("noise", NOISE)
def test_t_interval_covers_the_true_mean_95_percent_of_the_time(noise):
    rng = np.random.default_rng(2026)
    for n in (3, 5, 10, 30):
        d = 0.3 + NOISE[noise](rng, (20000, n))  # true mean difference 0.3
        _, lo, hi = paired.t_interval(d)
        coverage = float(np.mean((lo <= 0.3) & (0.3 <= hi)))
        assert 0.93 <= coverage <= 0.97, (noise, n, coverage)


def test_the_old_percentile_bootstrap_undercovers_at_three_seeds():
    rng = np.random.default_rng(3)
    for noise in NOISE.values():
        d = noise(rng, (4000, 3))
        assert _percentile_bootstrap_coverage(d, 1000, rng) < 0.80  # about 0.75
        _, lo, hi = paired.t_interval(d)
        assert np.mean((lo <= 0) & (0 <= hi)) > 0.93


@pytest.mark.parametrize("sigma,low,high", [(0.5, 0.905, 0.935), (1.0, 0.81, 0.855)])
def test_lognormal_coverage_is_what_the_docstring_says(sigma, low, high):
    # paired.py (and benchmarks/coverage.py): lognormal sigma 0.5 91.2-92.2%, sigma 1 82.5-83.8% at n = 3-10
    rng = np.random.default_rng(5)
    for n in (3, 5, 10):
        d = rng.lognormal(0.0, sigma, (20000, n)) - math.exp(sigma ** 2 / 2)  # centred: true mean 0
        _, lo, hi = paired.t_interval(d)
        assert low < np.mean((lo <= 0) & (0 <= hi)) < high, (sigma, n)


def test_the_documented_limit_strong_skew():
    # paired.py says: under exponential noise the t interval covers about 88-90% at n <= 10.
    rng = np.random.default_rng(4)
    d = rng.exponential(1.0, (20000, 3)) - 1.0
    _, lo, hi = paired.t_interval(d)
    assert 0.86 < np.mean((lo <= 0) & (0 <= hi)) < 0.92


def test_differences_csv_columns_and_values():
    c = paired.decide([paired.compare(PLAIN20, RESNET56)])[0]
    text = paired.differences_csv([paired.difference_row("model=resnet56", "model=plain20", "final_test_acc",
                                                         "accuracy points", c, scale=100)])
    lines = text.splitlines()
    assert lines[0].split(",") == list(paired.DIFFERENCE_COLUMNS)
    row = dict(zip(paired.DIFFERENCE_COLUMNS, next(iter(__import__("csv").reader(lines[1:])))))
    assert float(row["mean_difference"]) == pytest.approx(100 * c.mean)
    assert float(row["low"]) == pytest.approx(100 * c.low) and row["verdict"] == "inconclusive"
    assert row["method"] == "paired t, 95% interval, 3 seeds; p Holm-adjusted over 1"
    assert int(row["seeds_needed"]) == c.seeds_needed > 3


def test_a_report_counts_ties_apart():
    from normlab.analysis import report

    c = paired.compare([1.0, 2.0, 3.0], [1.0, 2.5, 2.0])  # one win, one tie, one loss: prob_better 0.5
    assert c.prob_better == 0.5
    assert report.better_in(c, ties=1) == "1 of 3 seeds, tied in 1"  # not "1.5 of 3 seeds"
    assert report.better_in(paired.compare([0, 0, 0], [1, 2, -1]), ties=0) == "2 of 3 seeds"
