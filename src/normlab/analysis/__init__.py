"""Analysis tools: activation statistics, ablation sweeps and their reports."""
