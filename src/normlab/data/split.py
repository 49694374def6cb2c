"""Stratified, seeded splitting of a labelled set, shared by every data source.

Its own module so that the sources registry (sources.py) and the image-folder reader
(imagefolder.py) both use it without importing each other.
"""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with each class split in the same proportion, reproducibly.

    Per class, a seeded permutation puts round(n_c * test_fraction) samples in the test split;
    the indices are returned sorted so the split does not depend on the order classes are seen.
    """
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))
