#!/bin/bash
# benchmarks/publish_run.sh RUN_DIR NAME: copy a compare run folder to docs/benchmark/NAME without
# the lock, the dataset caches, Ray Tune's state and the top-k lists. Finished models lose their
# seed-run files (their rows keep the per-user tables); a model still running keeps its settings,
# search ledger and finished seed runs, so that `compare --resume` on a copy continues it.
# The top-k lists (topk/, the seed runs' *.ranked.npz) stay in the run folder only: they are the
# datasets' user and item ids, tens of MB per table, and the Last-FM and Alibaba-iFashion files'
# licence forbids redistributing them. The per-user metrics (per_user/), from which every
# statistic and group is computed, are kept.
set -euo pipefail
src=$1; dst=$(cd "$(dirname "$0")/.." && pwd)/docs/benchmark/$2
rm -rf "$dst.tmp"; mkdir -p "$dst.tmp"
tar -C "$src" --exclude=.run.lock --exclude=./topk --exclude='./models/*/dataset' --exclude='./models/*/search' \
    --exclude='./models/*/final/ray' --exclude='./models/*/final/*.ranked.npz' \
    --exclude='./models/*/partial' --exclude='./models/*/final/partial' -cf - . | tar -C "$dst.tmp" -xf -
for d in "$dst.tmp"/models/*/; do
    n=$(basename "$d")
    if [ -f "$dst.tmp/models/$n.json" ]; then rm -rf "$d/final"; fi
done
rm -rf "$dst"; mv "$dst.tmp" "$dst"
du -sh "$dst"
