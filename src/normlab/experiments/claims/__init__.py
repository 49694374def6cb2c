"""The tutorials' and the papers' claims, run: each claim's experiments trained (resumable, --jobs,
--shard), measured and written as the verdict pages.

index.py     the claims in report order, each with its arms and analysis
trained.py   the trained claims: experiments (run by the sweep runner) and their analyses
papers.py    the normalization papers' claims (issue 31): their experiments and analyses
runner.py    train the cells, measure, write the report (claims.md/.html/.json, differences.csv)

The statistics, measures and pages are normlab.analysis.claims: they read run folders only.
"""

from ...analysis.claims import (
                                FAILS,
                                HOLDS,
                                INCEPTION_3A,
                                INCONCLUSIVE,
                                all_of,
                                claim_inception,
                                claim_norm_modes,
                                compare_arms,
                                difference_of_drops,
                                inception_mult_adds,
                                norm_train_eval,
                                render_html,
                                render_markdown,
                                verdict_from_ci,
)
from .index import CLAIMS, Claim, select
from .runner import Runs, run_claims

__all__ = ["CLAIMS", "Claim", "select", "run_claims", "Runs", "render_html", "render_markdown", "HOLDS", "FAILS",
           "INCONCLUSIVE", "all_of", "compare_arms", "difference_of_drops", "verdict_from_ci", "INCEPTION_3A",
           "claim_inception", "claim_norm_modes", "inception_mult_adds", "norm_train_eval"]
