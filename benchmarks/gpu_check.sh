#!/usr/bin/env bash
# The GPU path in one call of at most ~8 minutes: the test suite on a CUDA machine (its CUDA cases included), then
# benchmarks/bench_gpu.py (training it/s and peak memory in fp32 and bf16, restore/translate beside the reference
# code, GPU vs CPU outputs). Without CUDA it says so and dry-runs the benchmark on CPU.
#
#   REF_SENM=/path/to/SeNM-VAE REF_SCAOEDNET=/path/to/ScaoedNet bash benchmarks/gpu_check.sh
#
# Environment: REF_SENM / REF_SCAOEDNET (clones of the reference repos; rows skipped without them), TEST_TIMEOUT
# (seconds for the tests, default 240), TEST_WORKERS (pytest-xdist processes where installed, default 8), PARTS
# (default "tests bench": which parts to run).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=0

if ! $PY -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: CUDA not available: the GPU parts are skipped; dry run of the benchmark on CPU"
    exec $PY benchmarks/bench_gpu.py --dry-run --ref-senm "${REF_SENM:-}" --ref-scaoednet "${REF_SCAOEDNET:-}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

PARTS=${PARTS:-tests bench}

if [[ " $PARTS " == *" tests "* ]]; then
    echo "== gpu_check: test suite (CUDA cases included)"
    xdist=()
    if $PY -c 'import xdist' 2>/dev/null; then xdist=(-n "${TEST_WORKERS:-8}"); fi
    # -v: each result streams out, so a run cut by the timeout still names its failures
    timeout "${TEST_TIMEOUT:-240}" $PY -m pytest -v -rf -p no:cacheprovider "${xdist[@]}" tests || status=$?
    echo "== gpu_check: tests exit status $status"
fi
if [[ " $PARTS " == *" bench "* ]]; then
    echo "== gpu_check: benchmarks"
    $PY benchmarks/bench_gpu.py --ref-senm "${REF_SENM:-}" --ref-scaoednet "${REF_SCAOEDNET:-}" || status=$?
fi
exit $status
