#!/usr/bin/env bash
# Everything CUDA that has not run yet, as one command that ends in under 10 minutes on a CUDA
# machine (issue 15 part 5, issue 18 item 11):
#
#     bash scripts/gpu_check.sh
#
# 1. what it runs on: GPU, torch, CUDA, cuDNN, NCCL, matmul precision        -> info.json
# 2. the CUDA-marked tests, `pytest -m cuda` (device loop, bf16 batched GEMM,
#    GPU Parzen, seed-batched pack against its seeds alone on the CUDA kernels) -> pytest_cuda.txt
# 3. seed-batched training throughput, Table 1 MNIST at paper size, S = 1, 8, 32,
#    fp32 and bf16                                                            -> throughput.json
# 4. one paper-size Table 2 MNIST-100 trial (semi-supervised, seed 0) for as many
#    epochs as about 5 minutes allow, evaluated                               -> trial.json
# 5. torch.compile of the sub-networks (then CUDA graphs, "reduce-overhead"), S = 8,
#    in whatever time is left                                                 -> throughput_compile_*.json
# and a Markdown summary of all of it -> gpu_check.md (plus gpu_check.log, steps.txt).
#
# Everything goes under $OUT (default ./gpu_check_out). Every step runs under `timeout`, and
# no step starts past the deadline (GPU_CHECK_BUDGET seconds, default 570), so the whole run
# ends within it.
# Python: $GPU_CHECK_PYTHON, .venv/bin/python, python3 or python, the first whose torch sees a
# GPU; missing packages are installed with `pip install -e '.[test]'` into a venv that sees
# the system's torch (no constraints: the machine's own CUDA torch must stay).
# MNIST: $AAE_BENCH_DATA, else scratch/mnist (git-ignored, so a copy there can travel with the
# working tree), else ../shared/data. Without it the trial is skipped, the MNIST tests skip and
# the throughput runs on noise images of MNIST's shape.
# GPU_CHECK_DRY=1: tiny sizes on the CPU, to test this script's logic without a GPU (its
# figures mean nothing).

set -u
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/gpu_check_out}
mkdir -p "$OUT"
export GPU_CHECK_DRY=${GPU_CHECK_DRY:-0}
DRY=$GPU_CHECK_DRY
BUDGET=${GPU_CHECK_BUDGET:-570}
START=$(date +%s)
DEADLINE=$((START + BUDGET))
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
: > "$OUT/steps.txt"
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

left() { echo $((DEADLINE - $(date +%s))); }

# step NAME LIMIT COMMAND...: COMMAND under `timeout`, at most LIMIT seconds and never past the
# deadline; its exit code and seconds go to steps.txt (124 / 137: stopped by its time box).
step() {
    local name=$1 limit=$2 remaining t0 rc
    shift 2
    remaining=$(( $(left) - 15 ))  # 15 s kept for the summary
    (( limit > remaining )) && limit=$remaining
    if (( limit < 10 )); then
        echo "== $name: skipped, no time left"
        echo "$name skipped 0" >> "$OUT/steps.txt"
        return 0
    fi
    echo "== $name (time box ${limit} s, $(left) s left in all)"
    t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@"
    rc=$?
    echo "== $name: exit $rc after $(( $(date +%s) - t0 )) s"
    echo "$name $rc $(( $(date +%s) - t0 ))" >> "$OUT/steps.txt"
}

# -- the Python to use -----------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    PROBE='import torch'
else
    PROBE='import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)'
fi
PY=""
for candidate in ${GPU_CHECK_PYTHON:-} .venv/bin/python python3 python; do
    command -v "$candidate" > /dev/null 2>&1 || continue
    found=$(timeout 90 "$candidate" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "GPU available:", torch.cuda.is_available())' 2>&1 | tail -1)
    echo "python $candidate: ${found:-no torch}"
    if timeout 90 "$candidate" -c "$PROBE" > /dev/null 2>&1; then
        PY=$candidate
        break
    fi
done
if [ -z "$PY" ]; then
    echo "no Python here has a torch that sees a CUDA GPU; nothing measured"
    echo "python none 0" >> "$OUT/steps.txt"
    exit 1
fi
echo "using $PY"

NEEDED='import accelerate, numpy, pandas, scipy, pytest'
if ! "$PY" -c "$NEEDED" > /dev/null 2>&1; then
    echo "missing packages for $PY: installing into .gpu_venv (it sees the system's torch)"
    step install 150 bash -c "'$PY' -m venv --system-site-packages .gpu_venv && .gpu_venv/bin/python -m pip install -q -e '.[test]'"
    if [ -x .gpu_venv/bin/python ] && .gpu_venv/bin/python -c "$NEEDED" > /dev/null 2>&1; then
        PY=.gpu_venv/bin/python
    fi
    "$PY" -c "$NEEDED" || echo "still missing packages: the steps that need them will fail"
fi

if [ -z "${AAE_BENCH_DATA:-}" ]; then
    for dir in scratch/mnist shared/data/mnist ../shared/data/mnist; do
        if [ -e "$dir/train-images-idx3-ubyte.gz" ] || [ -e "$dir/train-images-idx3-ubyte" ]; then
            export AAE_BENCH_DATA=$REPO/$dir
            break
        fi
    done
fi
echo "MNIST: ${AAE_BENCH_DATA:-not found}"

# pytest's addopts name pytest-benchmark's --benchmark-skip: without the plugin, drop them.
PYTEST_OPTS=(-m cuda -q -rA -p no:cacheprovider)
"$PY" -c 'import pytest_benchmark' > /dev/null 2>&1 || PYTEST_OPTS+=(-o "addopts=-ra")

if [ "$DRY" = 1 ]; then
    TESTS_S=90 THROUGHPUT_S=150 THROUGHPUT_BUDGET=100 TRIAL_CAP=25 TRIAL_RESERVE=5 COMPILE_BACKEND=eager
else
    TESTS_S=120 THROUGHPUT_S=90 THROUGHPUT_BUDGET=75 TRIAL_CAP=300 TRIAL_RESERVE=30 COMPILE_BACKEND=inductor
fi

# -- the steps --------------------------------------------------------------------------------
step info 60 "$PY" scripts/gpu_check.py info --out "$OUT/info.json"
step pytest_cuda "$TESTS_S" bash -c "'$PY' -m pytest ${PYTEST_OPTS[*]@Q} tests > '$OUT/pytest_cuda.txt' 2>&1; rc=\$?; tail -40 '$OUT/pytest_cuda.txt'; exit \$rc"
step throughput "$THROUGHPUT_S" "$PY" scripts/gpu_check.py throughput --out "$OUT/throughput.json" \
    --budget "$THROUGHPUT_BUDGET"

# The trial gets up to TRIAL_CAP seconds, leaving 70 s for torch.compile and the summary.
trial_s=$(( $(left) - 85 ))
(( trial_s > TRIAL_CAP )) && trial_s=$TRIAL_CAP
step trial "$trial_s" "$PY" scripts/gpu_check.py trial --out "$OUT/trial.json" \
    --budget $(( trial_s - 10 )) --evaluation-reserve "$TRIAL_RESERVE"

for mode in default reduce-overhead; do
    compile_s=$(( $(left) - 20 ))
    (( compile_s > 60 )) && compile_s=60
    (( compile_s < 30 )) && break
    step "compile_$mode" "$compile_s" "$PY" scripts/gpu_check.py throughput \
        --out "$OUT/throughput_compile_$mode.json" --compile "$mode" --backend "$COMPILE_BACKEND" \
        --seeds "$([ "$DRY" = 1 ] && echo 2 || echo 8)" --precisions fp32 --budget $(( compile_s - 10 ))
done

timeout 30 "$PY" scripts/gpu_check.py summary --dir "$OUT"
echo "gpu_check: done in $(( $(date +%s) - START )) s; results in $OUT (summary: gpu_check.md)"
