"""The claims' analysis: verdicts, measures, comparisons and pages, computed from run folders (and,
for the exact claims, from layers built on the spot). Running them is normlab.experiments.claims.

verdict.py      the verdict rule and the one call into the statistics
exact.py        claims computed without training (mult-adds, norm layers, fresh-net gradients)
lr_sweep.py     "BN allows a higher learning rate": the lr grid and the highest rate that trains
measures.py     run directory -> number
comparisons.py  the analyses' shapes: two arms paired by seed, a difference of drops
pages.py        claims.md, claims.html (through analysis/render.py, as `normlab report`), claims.json,
                differences.csv (every comparison: n, mean difference in its unit, interval, p, p_holm)
effects.py      the effects figure (every paired comparison with its interval, in its unit)

"here" matters: these are tiny models, few epochs and few seeds on small datasets, so a verdict
is about this setting, not a refutation of the paper.
"""

from .exact import INCEPTION_3A, claim_inception, claim_norm_modes, inception_mult_adds, norm_train_eval
from .pages import render_html, render_markdown
from .verdict import FAILS, HOLDS, INCONCLUSIVE, all_of, compare_arms, difference_of_drops, verdict_from_ci

__all__ = ["render_html", "render_markdown", "HOLDS", "FAILS", "INCONCLUSIVE", "all_of", "compare_arms",
           "difference_of_drops", "verdict_from_ci", "INCEPTION_3A", "claim_inception", "claim_norm_modes",
           "inception_mult_adds", "norm_train_eval"]
