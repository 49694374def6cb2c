"""`--compile` on the CPU: the same run as eager, through torch.compile (inductor).

A compiled module proxies len() and raises in a truth test; the trainer once tested it with
`or` and every --compile run died before its first step (found by the GPU check).
"""

import torch

import normlab


def test_compiled_run_matches_eager(tmp_path, monkeypatch):
    # A private inductor cache: kernels another process left in the shared one (another torch
    # build, or a run with ATEN_CPU_CAPABILITY capped) aborted this process once (2026-12-07).
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    cfg = dict(dataset="digits", model="mlp", epochs=1, batch_size=128, lr=0.05, optimizer="sgd",
               progress=False, schedule="constant", device="cpu")
    eager = normlab.train(dict(cfg, out=str(tmp_path / "eager")), log=lambda *a: None)
    compiled = normlab.train(dict(cfg, compile=True, out=str(tmp_path / "compiled")), log=lambda *a: None)
    # inductor may fuse and reorder float ops: same run up to rounding, not bit for bit
    for (k, a), b in zip(eager.model.state_dict().items(), compiled.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)
    assert abs(compiled.summary["final_test_acc"] - eager.summary["final_test_acc"]) <= 0.003
    assert not any(k.startswith("_orig_mod") for k in normlab.load(tmp_path / "compiled").model.state_dict())
