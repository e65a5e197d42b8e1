#!/usr/bin/env bash
# The GPU checks and figures in one run (about 6 minutes on one H100/H200):
#   1. the fast-path equality tests and the device tests on CUDA (tests/test_kgin_fast_paths.py,
#      tests/test_devices.py, tests/test_kgin_loss.py, tests/test_graphed_step.py: the recorded
#      CUDA-graph step against eager steps; their CUDA cases run when torch sees a GPU);
#   2. the training step at Last-FM scale, ours against RecBole's KGIN, each model alone in its
#      own process, two rounds (benchmarks/kgin_step.py --scale lastfm --device cuda), then ours
#      with the device-side options (neg_sampling_device, adam_impl fused), with static_graph, and
#      with static_graph replayed as a CUDA graph (cuda_graph);
#   3. one training epoch, full-ranking evaluation and a profile of our KGIN on lastfm-kg-resplit
#      (built by scripts/build_shared_datasets.sh);
#   4. KGCN's full-ranking evaluation, RecBole's method against ours, on the CPU-table subsets
#      lastfm-kg-resplit-u2k and alibaba-kg-resplit-u10k (benchmarks/full_sort_cost.py).
# Results go to $OUT (default benchmarks/results/gpu): *.json, *.log, profile text.
# STEPS picks steps (default "1 2 3 4"; step 1 also runs the KGCN and CFKG equality tests).
#
#   bash benchmarks/gpu_checks.sh
#   STEPS="1 4" bash benchmarks/gpu_checks.sh
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

steps="${STEPS:-1 2 3 4}"
want() { [[ " $steps " == *" $1 "* ]]; }

if want 1; then
echo "== 1. equality and device tests on CUDA"
timeout 180 "$py" -m pytest tests/test_kgin_fast_paths.py tests/test_devices.py tests/test_full_sort_paths.py \
    tests/test_kgin_loss.py tests/test_graphed_step.py \
    -q -rs -k "cuda or gpu" 2>&1 | tee "$out/tests_cuda.log" | tail -25
fi

if want 2; then
echo "== 2. training step at Last-FM scale: ours vs RecBole's KGIN"
timeout 260 "$py" benchmarks/kgin_step.py --scale lastfm --device cuda --steps 40 --warmup 5 \
    --rounds 2 --data-dir /tmp/lastfm-scale --json "$out/step_lastfm_cuda.json" 2>&1 \
    | grep -v Warning | tee "$out/step_lastfm_cuda.log" | tail -12
# the step with the GPU-side options (off by default until they have passed here): negatives drawn
# on the device, fused Adam; then also the static-shape step, and that step replayed as a CUDA graph
dev=neg_sampling_device=True@adam_impl=fused
timeout 180 "$py" benchmarks/kgin_step.py --scale lastfm --device cuda --steps 40 --warmup 5 \
    --models "KGIN@$dev,KGIN@static_graph=True@$dev,KGIN@static_graph=True@cuda_graph=True@$dev" \
    --skip-eval --data-dir /tmp/lastfm-scale \
    --json "$out/step_lastfm_cuda_device_options.json" 2>&1 \
    | grep -v Warning | tee "$out/step_lastfm_cuda_device_options.log" | tail -6
fi

if want 3; then
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
fi

if want 4; then
echo "== 4. KGCN's full-ranking evaluation: RecBole's method against ours"
for ds in lastfm-kg-resplit-u2k alibaba-kg-resplit-u10k; do
    if [[ -f atomic_data/$ds/$ds.kg ]]; then
        timeout 150 "$py" benchmarks/full_sort_cost.py --model KGCN --dataset "$ds" \
            --key kgcn_fast_full_sort --device cuda --users 500 \
            --out "$out/kgcn_full_sort_${ds}_cuda.json" 2>&1 | grep -v Warning \
            | tee "$out/kgcn_full_sort_${ds}_cuda.log"
    else
        echo "atomic_data/$ds missing: run scripts/build_shared_datasets.sh first"
    fi
done
fi
date -u +%FT%TZ
