#!/usr/bin/env bash
# The GPU checks and figures in one run (about 6 minutes on one H100/H200):
#   1. the fast-path equality tests and the device tests on CUDA (tests/test_kgin_fast_paths.py,
#      tests/test_devices.py; their CUDA cases run when torch sees a GPU);
#   2. the training step at Last-FM scale, ours against RecBole's KGIN, each model alone in its
#      own process, two rounds (benchmarks/kgin_step.py --scale lastfm --device cuda);
#   3. one training epoch, full-ranking evaluation and a profile of our KGIN on lastfm-kg-resplit
#      (built by scripts/build_shared_datasets.sh).
# Results go to $OUT (default benchmarks/results/gpu): *.json, *.log, profile text.
#
#   bash benchmarks/gpu_checks.sh
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$repo/benchmarks/results/gpu}"
mkdir -p "$out"
cd "$repo"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py="$(command -v python3 || command -v python)"

{
    date -u +%FT%TZ
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
    "$py" -c "import sys, torch, numpy; print(sys.version.split()[0], torch.__version__, numpy.__version__, torch.cuda.get_device_name(0))"
} 2>&1 | tee "$out/machine.log"

echo "== 1. equality and device tests on CUDA"
timeout 120 "$py" -m pytest tests/test_kgin_fast_paths.py tests/test_devices.py -q -rs \
    -k "cuda or gpu" 2>&1 | tee "$out/tests_cuda.log" | tail -25

echo "== 2. training step at Last-FM scale: ours vs RecBole's KGIN"
timeout 260 "$py" benchmarks/kgin_step.py --scale lastfm --device cuda --steps 40 --warmup 5 \
    --rounds 2 --data-dir /tmp/lastfm-scale --json "$out/step_lastfm_cuda.json" 2>&1 \
    | grep -v Warning | tee "$out/step_lastfm_cuda.log" | tail -12

echo "== 3. lastfm-kg-resplit: our epoch, evaluation and profile"
if [[ -f atomic_data/lastfm-kg-resplit/lastfm-kg-resplit.kg ]]; then
    timeout 140 "$py" benchmarks/kgin_step.py --dataset lastfm-kg-resplit --models KGIN \
        --in-process --device cuda --steps 40 --warmup 5 --epoch \
        --profile "$out/profile_lastfm_kg_resplit_cuda.txt" \
        --json "$out/epoch_lastfm_kg_resplit_cuda.json" 2>&1 \
        | grep -v Warning | tee "$out/epoch_lastfm_kg_resplit_cuda.log" | tail -8
else
    echo "atomic_data/lastfm-kg-resplit missing: run scripts/build_shared_datasets.sh first"
fi
date -u +%FT%TZ
