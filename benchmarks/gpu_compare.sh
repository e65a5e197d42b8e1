#!/usr/bin/env bash
# compare on a bare GPU machine: CUDA torch present, Ray and RecBole missing, one command at most
# 10 minutes, at most 64 MiB of files carried in and 8 files of 16 MiB back ($OUT). The comparison
# runs in chunks: each chunk continues the last one (--resume) from a state archive that travels
# back and forth, so a table of several GPU-hours is a series of short commands.
#
# Here (the machine with the repository; pip reaches PyPI):
#   bash benchmarks/gpu_compare.sh wheels      # Ray, RecBole and their missing needs -> .whl/a, .whl/b
#   bash scripts/build_shared_datasets.sh      # atomic_data/lastfm-kg-resplit (12 MB, carried)
# There, per chunk (carry .whl/a, then .whl/b in the next command while the machine is warm; then
# atomic_data/lastfm-kg-resplit and gpu_state/ with every chunk):
#   LIMIT=540 bash benchmarks/gpu_compare.sh chunk
# and copy $OUT/state.tgz* back into gpu_state/ before the next chunk. $OUT also gets table.md,
# results.json and chunk.log of the state reached.
#
# Settings (environment): DATASET (lastfm-kg-resplit), RUN (gpu-$DATASET), MODELS (the cheap and
# the knowledge-aware models), TRIALS (4), SEEDS (3), EPOCHS (300), GPUS (0.25 of the GPU per
# trial), CPUS (3 per trial), LIMIT (seconds of compare per chunk, 540), DEVICE (cuda; cpu for a
# dry run of the chunking on a machine without a GPU).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
mode="${1:-}"
DATASET="${DATASET:-lastfm-kg-resplit}"
RUN="${RUN:-gpu-$DATASET}"
MODELS="${MODELS:-Pop,ItemKNN,KGItemKNN,BPR,LightGCN,CKE,KGAT,KGIN}"
TRIALS="${TRIALS:-4}" SEEDS="${SEEDS:-3}" EPOCHS="${EPOCHS:-300}"
GPUS="${GPUS:-0.25}" CPUS="${CPUS:-3}" LIMIT="${LIMIT:-540}" DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-$repo/benchmarks/results/gpu_compare}"
state_dir="$repo/gpu_state"
results="$repo/results"

case "$mode" in
wheels)
    # CPython 3.12 wheels of Ray, RecBole and what they need, minus what the H200 image has
    # (torch and its CUDA libraries, numpy, scipy, pandas, pyarrow); Ray's wheel goes to .whl/a,
    # the rest to .whl/b, each below the 64 MiB a command may carry.
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
    rm -rf .whl && mkdir -p .whl/all .whl/a .whl/b
    # requirements.txt's pins for 3.12, without what the image has (and without pytest)
    grep -vE '^(#|$|torch|numpy|scipy|pandas|pyarrow|pytest)' requirements.txt \
        | sed 's/ *;.*//' > .whl/req.txt
    python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl/all -r .whl/req.txt
    python3 -m pip download -q --no-deps -d .whl/all recbole==1.2.1
    rm -f .whl/all/{torch,nvidia_,numpy,scipy,pandas,pyarrow,triton}*.whl .whl/req.txt
    mv .whl/all/ray-*.whl .whl/a/ && mv .whl/all/*.whl .whl/b/ && rmdir .whl/all
    du -sh .whl/a .whl/b
    ;;
chunk)
    mkdir -p "$OUT"
    exec > >(tee "$OUT/chunk.log") 2>&1
    if ! python3 -c "import ray, recbole" 2>/dev/null; then
        wheels=$(ls .whl/*/*.whl 2>/dev/null || true)
        [[ -n $wheels ]] || { echo "gpu_compare: Ray/RecBole missing and no .whl/ carried"; exit 2; }
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site $wheels
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
    resume=()
    if compgen -G "$state_dir/state.tgz*" > /dev/null; then
        mkdir -p "$results"
        cat "$state_dir"/state.tgz* | tar -xzf - -C "$results"
        resume=(--resume)
        echo "gpu_compare: continuing $RUN from gpu_state/"
    fi
    gpus=(--gpus-per-trial "$GPUS")
    [[ $DEVICE == cpu ]] && gpus=()   # dry run: the chunking without a GPU
    rc=0
    timeout -s INT -k 60 "$LIMIT" python3 run_recbole_kgin.py compare --dataset "$DATASET" \
        --run "$RUN" --out "$results" --models "$MODELS" --trials "$TRIALS" --seeds "$SEEDS" \
        --epochs="$EPOCHS" --cpus-per-trial "$CPUS" "${gpus[@]}" "${resume[@]}" || rc=$?
    # 0: every model done; 1: one failed (its row says why); 124/130: the chunk's time is up
    echo "gpu_compare: compare ended with $rc"
    [[ -d "$results/$RUN" ]] || exit "$rc"   # refused before it wrote anything
    # the state without the dataset snapshots (rebuilt on demand) and Ray's own temp files
    tar -czf "$OUT/state.tgz" -C "$results" --exclude="$RUN/models/*/dataset" \
        --exclude="*/driver_artifacts" "$RUN"
    if (( $(stat -c %s "$OUT/state.tgz") > 15 * 1024 * 1024 )); then
        split -b 15M -d "$OUT/state.tgz" "$OUT/state.tgz." && rm "$OUT/state.tgz"
    fi
    for f in table.md results.json; do
        [[ -f "$results/$RUN/$f" ]] && cp "$results/$RUN/$f" "$OUT/"
    done
    ls -la "$OUT"
    ;;
*)
    sed -n '2,21p' "${BASH_SOURCE[0]}"
    exit 2
    ;;
esac
