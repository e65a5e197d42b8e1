#!/usr/bin/env python
"""What the per-epoch checkpoint costs: size, seconds to build and write it atomically (fsync
included), seconds to load it with ``weights_only=True``, next to the seconds of one training
epoch of the same model on the same machine (measured in the same process).

    python benchmarks/checkpoint_cost.py --dataset ml-100k --repeats 5 --out benchmarks/results

Extra ``--key=value`` arguments override the configuration (default: the quick start's).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="directory for the JSON record")
    args, rest = parser.parse_known_args()
    from recbole_kgin import checkpoint as ckpt
    from recbole_kgin import quick_start
    from recbole_kgin.errors import split_overrides

    overrides = {"show_progress": False, "state": "WARNING", **split_overrides(rest)}
    config = quick_start.create_config(
        "KGIN", args.dataset, [str(ROOT / "properties" / "quick_start.yaml")], overrides)
    _, train_data, valid_data, _ = quick_start.load_data(config)
    model = quick_start.build_model(config, train_data)
    trainer = quick_start.build_trainer(config, model)
    trainer._loaders = {"train": train_data, "valid": valid_data}
    trainer._dataset = train_data._dataset
    trainer.eval_collector.data_collect(train_data)
    start = time.perf_counter()
    trainer._train_epoch(train_data, 0)
    epoch_seconds = time.perf_counter() - start

    build, write, load = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "KGIN.pth"
        for _ in range(args.repeats):
            start = time.perf_counter()
            data = trainer.checkpoint_dict(0)
            build.append(time.perf_counter() - start)
            start = time.perf_counter()
            ckpt.save(data, path)
            write.append(time.perf_counter() - start)
            start = time.perf_counter()
            torch.load(path, map_location="cpu", weights_only=True)
            load.append(time.perf_counter() - start)
        size = path.stat().st_size
    record = {
        "dataset": args.dataset,
        "parameters": quick_start.count_parameters(model),
        "checkpoint_bytes": size,
        "build_seconds_median": statistics.median(build),
        "write_seconds_median": statistics.median(write),
        "load_seconds_median": statistics.median(load),
        "training_epoch_seconds": epoch_seconds,
        "repeats": args.repeats,
        "load_average": os.getloadavg(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(record, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"checkpoint_cost_{args.dataset}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
