"""Running experiments: the sweep of an experiment grid (`normlab compare`) and the claims
(`normlab claims`). Everything here trains; normlab.analysis reads what it wrote.

spec.py      an experiment file checked, every cell's config included, before anything trains
sweep.py     the grid's runs trained one by one or in workers; resumable; results.csv
jobs.py      one run: its lock, resume or start, failed.json for a result or the machine's failure
workers.py   worker processes that die with their parent; Ctrl-C and SIGTERM stop them all
claims/      the claims: their experiments, run and measured into verdict pages
"""
