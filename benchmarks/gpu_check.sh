#!/usr/bin/env bash
# The GPU check: run from the repository root on a machine with an NVIDIA GPU.
#   benchmarks/gpu_check.sh [OUTDIR]        (default benchmarks/results/gpu)
# 1. the machine (nvidia-smi, torch, CUDA); 2. tests/test_cuda.py (every CUDA path against its
# reference); 3. benchmarks/train.py --device cuda (the tutorial loop vs normlab on the same GPU);
# 4. benchmarks/gpu_check.py (fast recipe to 99%, matmul peak, utilization per model, a profile).
# Each part writes its log into OUTDIR and the next part runs even if one fails or times out.
set -u
out=${1:-benchmarks/results/gpu}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
status=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$py" -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn',
torch.backends.cudnn.version(), torch.cuda.get_device_name(), 'python', platform.python_version())"
  date -u; } 2>&1 | tee "$out/env.txt"
timeout 240 "$py" -m pytest tests/test_cuda.py tests/test_compile.py -v -p no:cacheprovider -o addopts="" 2>&1 | tee "$out/cuda_tests.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
timeout 150 "$py" benchmarks/train.py --device cuda --out "$out/train.json" 2>&1 | tee "$out/train.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
timeout 300 "$py" benchmarks/gpu_check.py --out "$out/gpu_check.json" 2>&1 | tee "$out/gpu_check.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
exit $status
