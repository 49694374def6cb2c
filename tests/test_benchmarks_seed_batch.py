"""benchmarks/seed_batch.py's claims timing: both ways from scratch, one after the other or
started together, each way's verdicts and summaries recorded and compared (no timing asserted)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_seed_batch", ROOT / "benchmarks" / "seed_batch.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

ONLY = "gn-interpolates,l1-penalty-zeros"  # one exact claim, one trained (5 one-epoch MLP runs, quick)


@pytest.mark.parametrize("at_once", [False, True])
def test_both_ways_are_timed_from_scratch_and_their_verdicts_compared(tmp_path, at_once):
    out = bench.claims_both_ways(1, ONLY, quick=True, keep=tmp_path, at_once=at_once)
    for way in ("batched", "one_by_one"):
        assert (tmp_path / way / "claims.json").is_file()
        assert out[way] > 0 and set(out[f"{way}_verdicts"]) == {"gn-interpolates", "l1-penalty-zeros"}
    assert out["same_verdicts"]
    assert set(out["moved"]) <= {"l1-penalty-zeros"}  # a trained claim's summary may round differently batched
    assert out["ratio"] == out["one_by_one"] / out["batched"]
    assert out.get("at_once", False) == at_once
    with pytest.raises(SystemExit, match="is not empty"):  # timed from scratch, never over an earlier report
        bench.claims_both_ways(1, ONLY, quick=True, keep=tmp_path, at_once=at_once)
