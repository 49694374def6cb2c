"""The tutorials' claims, each as a small measured experiment with a verdict.

verdict.py   the verdict rule and the one call into the statistics
exact.py     claims computed without training (mult-adds, norm layers, fresh-net gradients)
trained.py   the trained claims: experiments (run by the sweep runner) and their analyses
lr_sweep.py  "BN allows a higher learning rate": the lr grid and the highest rate that trains
measures.py  run directory -> number
paired.py    the analyses' shapes: two arms paired by seed, a difference of drops
catalog.py   the claims in report order
runner.py    train the cells (resume, --jobs, --shard), measure, write the report
render.py    claims.md, claims.html (through analysis/render.py, as `normlab report`), claims.json,
             differences.csv (every comparison: n, mean difference in its unit, interval, p, p_holm)
plots.py     the effects figure (every paired comparison with its interval, in its unit)

"here" matters: these are tiny models, few epochs and few seeds on small datasets, so a verdict
is about this setting, not a refutation of the paper.
"""

from .catalog import CLAIMS, Claim, select
from .exact import INCEPTION_3A, claim_inception, claim_norm_modes, inception_mult_adds, norm_train_eval
from .render import render_html, render_markdown
from .runner import Runs, run_claims
from .verdict import FAILS, HOLDS, INCONCLUSIVE, all_of, compare_arms, difference_of_drops, verdict_from_ci

__all__ = ["CLAIMS", "Claim", "select", "run_claims", "Runs", "render_html", "render_markdown", "HOLDS", "FAILS",
           "INCONCLUSIVE", "all_of", "compare_arms", "difference_of_drops", "verdict_from_ci", "INCEPTION_3A",
           "claim_inception", "claim_norm_modes", "inception_mult_adds", "norm_train_eval"]
