#!/usr/bin/env bash
# The GPU check (issue 22): the GPU-marked tests and the GPU benchmarks, in under 5 minutes, one table.
#
#   bash benchmarks/gpu_check.sh                # on a machine with a CUDA GPU
#   bash benchmarks/gpu_check.sh --cpu-dry-run  # tiny sizes on the CPU: checks the script itself
#   ... --only fig3                             # only the benchmark cases whose name contains "fig3"
#
# A GPU machine here may reach no package registry and may have another Python, another torch
# and no Dask: the package is installed without dependencies (or, if even that fails, used from
# src/ through PYTHONPATH), every import is lazy, and whatever cannot run is a table row saying
# why. PYTHON picks the interpreter (default python3); TESTS_TIMEOUT and BENCH_TIMEOUT (seconds,
# default 120 and 420) cap the two parts on a machine whose time is short; GPU_TESTS_LOG, if set,
# is where the tests' whole output is kept.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DRY=""
ONLY=()
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-dry-run) DRY="--cpu-dry-run"; shift ;;
        --only) [ $# -ge 2 ] || { echo "--only needs a case name" >&2; exit 2; }; ONLY=(--only "$2"); shift 2 ;;
        *) echo "usage: bash benchmarks/gpu_check.sh [--cpu-dry-run] [--only NAME]" >&2; exit 2 ;;
    esac
done
start=$(date +%s)

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu_check: $PY cannot import torch; nothing can run" >&2
    exit 1
fi
if [ -z "$DRY" ]; then
    if "$PY" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1; then
        echo "installed thermosgd (editable, --no-deps)"
    else
        echo "pip install --no-deps -e . failed here: using src/ through PYTHONPATH"
    fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch; print('torch', torch.__version__, '| cuda available:', torch.cuda.is_available(), '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"

tests="skipped: pytest is not installed"
if "$PY" -c "import pytest" 2>/dev/null; then
    files=$(grep -rl "mark.gpu" tests)
    if [ -n "$DRY" ]; then
        tests="not run in --cpu-dry-run (they need a GPU): $(echo $files)"
    else
        log=$(mktemp)
        timeout "${TESTS_TIMEOUT:-120}" "$PY" -m pytest -m gpu -p no:cacheprovider $files >"$log" 2>&1
        tests="$(tail -n 1 "$log") (pytest -m gpu $(echo $files))"
        if [ -n "${GPU_TESTS_LOG:-}" ]; then cp "$log" "$GPU_TESTS_LOG"; fi
        rm -f "$log"
    fi
fi

timeout "${BENCH_TIMEOUT:-420}" "$PY" benchmarks/gpu_bench.py $DRY "${ONLY[@]}"
echo "GPU-marked tests: $tests"
echo "total wall time: $(( $(date +%s) - start )) s"
