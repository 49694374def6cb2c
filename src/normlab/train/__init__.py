"""Training: optimizers, the loop, run directories."""
