"""A fixed-seed run gives the same numbers, bit for bit, as before the redesign of issue 13.

The reference (tests/reference/bit_for_bit.json) was computed with the code of commit 2f6d00d,
the last one before the run builder, the hooked loop and the layering moves, by running
`fingerprint` below on the same configs. Metrics are compared as float.hex strings and weights
as a SHA-256 over every tensor's bytes, so any change of arithmetic order shows.

Bit-exact float results hold for one torch build on one kind of CPU; elsewhere the test compares
the metrics to 1e-5 relative instead (weights hashes cannot be compared with a tolerance).
"""

import hashlib
import json
import math
import platform
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import normlab
from normlab.train import checkpoint

REFERENCE = json.loads((Path(__file__).parent / "reference" / "bit_for_bit.json").read_text())
CONFIGS = {
    "mlp-digits": dict(dataset="digits", model="mlp", epochs=3, batch_size=64, optimizer="momentum", lr=0.05,
                       schedule="cosine", warmup=0.5, val_split=0.2, ema=0.9, l1=1e-5, l2=1e-4, clip_grad=1.0,
                       label_smoothing=0.1, max_norm=3.0, seed=3, threads=1, progress=False),
    "lenet-bn-synthetic": dict(dataset="synthetic", model="lenet-bn", epochs=2, batch_size=50, augment="crop:2,flip",
                               optimizer="adamw", weight_decay=0.01, dropout=0.1, tta="flip", seed=1, threads=1,
                               progress=False),
}
VALUE_COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "test_top5", "val_loss", "val_acc")
EXACT = torch.__version__.split("+")[0] == REFERENCE["torch"] and platform.machine() == REFERENCE["machine"]


def fingerprint(res) -> dict:
    rows = [[r["epoch"]] + [None if r.get(k) is None else float(r[k]).hex() for k in VALUE_COLUMNS]
            for r in res.metrics]
    out = {"metrics": rows}
    last_epoch = checkpoint.last_epoch_dir(res.run_dir)  # the last committed epoch's folder
    files = {"weights": res.run_dir / "weights.safetensors", "last": last_epoch / checkpoint.MODEL,
             "best": last_epoch / checkpoint.BEST}
    for name, path in files.items():
        state = load_file(str(path))
        h = hashlib.sha256()
        for k in sorted(state):
            h.update(k.encode())
            h.update(state[k].contiguous().numpy().tobytes())
        out[name] = h.hexdigest()
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fixed_seed_run_matches_the_reference(name, tmp_path):
    torch.set_num_threads(1)
    got = fingerprint(normlab.train(dict(CONFIGS[name], out=str(tmp_path / name)), log=lambda *a: None))
    want = REFERENCE["runs"][name]
    if EXACT:
        assert got == want
        return
    assert len(got["metrics"]) == len(want["metrics"])
    for g, w in zip(got["metrics"], want["metrics"]):
        for a, b in zip(g[1:], w[1:]):
            assert (a is None) == (b is None)
            if a is not None:
                assert math.isclose(float.fromhex(a), float.fromhex(b), rel_tol=1e-5, abs_tol=1e-7)
