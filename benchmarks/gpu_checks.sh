#!/usr/bin/env bash
# The GPU checks, in one run of about 10 minutes on one GPU: the CUDA tests, then the inference, video and
# training benchmarks, each figure against the CPU path's pixels and the device's bounds. Everything printed
# is also written to $OUT (default: gpu_checks/), one file a step, with the machine's description.
#
#     OUT=results bash benchmarks/gpu_checks.sh
#
# A step that fails is reported and the next one runs; the exit status is the number of failed steps.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_checks}
mkdir -p "$OUT"
failed=0

step() {  # step NAME TIMEOUT_S COMMAND...: run COMMAND, teeing its output into $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee "$OUT/$name.txt"
    timeout "$limit" "$@" 2>&1 | tee -a "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc" | tee -a "$OUT/$name.txt"
    [ "$rc" -eq 0 ] || failed=$((failed + 1))
}

{ nvidia-smi; lscpu | grep -E "Model name|^CPU\(s\)"; python -c "import torch; print('torch', torch.__version__)"; } \
    > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
step cuda_tests 180 python -m pytest -rs tests/test_cuda.py
step inference 120 python benchmarks/inference.py --cuda --precision fp32 bf16 fp16
step video 180 python benchmarks/video.py --cuda --precision bf16 fp16
step train_speed 90 python benchmarks/train_speed.py --cuda --amp --rounds 1
exit "$failed"
