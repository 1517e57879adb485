#!/usr/bin/env bash
# GPU check of the fused DyT kernels (issue #3): correctness against float64 on random inputs,
# bitwise determinism, torch.compile(fullgraph=True), then the benchmark table
# (benchmarks/bench_kernel.py; JSON in benchmarks/results/kernel_cuda.json).
#
# Runs from the source tree with any torch >= 2.9 and triton >= 3.5, nothing else of the stack:
#   bash benchmarks/gpu_check.sh [--full] [--out DIR] [--skip-bench]
# About 1-3 minutes on one Hopper GPU (default grid); --full adds M in {4k..64k} x C in {768, 1024, 4096}.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c "import torch, triton" 2>/dev/null; then
  echo "gpu_check: '$PYTHON' cannot import torch and triton (set PYTHON=/path/to/python)" >&2
  exit 2
fi
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to torch ($("$PYTHON" -c 'import torch; print(torch.__version__, torch.version.cuda)')); this check needs one GPU" >&2
  exit 2
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
