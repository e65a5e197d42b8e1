#!/usr/bin/env python
"""Side-by-side: this package's KGIN vs RecBole 1.2.1's built-in KGIN, same data, config and seed.

Both run through the same pipeline (recbole_kgin.quick_start.run_recbole_kgin) with the published
KGIN settings, the same epoch budget and validation after every epoch; the models run alternately
``--rounds`` times so that background load affects both alike. Records seconds per training epoch,
seconds per validation, and test Recall/NDCG@20 of each; writes JSON and prints a Markdown table.

    python benchmarks/kgin_vs_recbole.py --dataset ml-100k --epochs 5 --rounds 1 --out benchmarks/results
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

SHARED = {
    "embedding_size": 64, "learning_rate": 1e-4, "train_batch_size": 1024, "reg_weight": 1e-5,
    "context_hops": 3, "n_factors": 4, "ind": "distance", "node_dropout_rate": 0.5,
    "mess_dropout_rate": 0.1, "sim_regularity": 1e-4, "temperature": 0.2, "kg_reverse_r": True,
    "seed": 2020, "eval_step": 1, "stopping_step": 1000, "show_progress": False,
    "state": "WARNING", "use_gpu": torch.cuda.is_available(),
}


def scatter_backend():
    try:
        import torch_scatter  # noqa: F401

        return f"torch-scatter {torch_scatter.__version__}"
    except ImportError:
        return "native torch (torch-scatter not installed)"


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--models", default="KGIN,RecBoleKGIN")
    parser.add_argument("--out", default="benchmarks/results")
    args, rest = parser.parse_known_args()

    from recbole_kgin.cli import split_overrides
    from recbole_kgin.quick_start import run_recbole_kgin

    overrides = split_overrides(rest)
    models = args.models.split(",")
    runs = {m: [] for m in models}
    for r in range(args.rounds):
        for m in models:
            cfg = dict(SHARED, epochs=args.epochs, checkpoint_dir=f"saved/bench-{m}")
            cfg.update(overrides)
            load = os.getloadavg()[0]
            start = time.perf_counter()
            res = run_recbole_kgin(m, args.dataset, config_dict=cfg)
            wall = time.perf_counter() - start
            valid_seconds = (res["train_seconds"] - sum(res["epoch_seconds"])) / max(
                1, len(res["valid_history"]))
            runs[m].append({
                "round": r, "wall_seconds": wall, "load_avg_at_start": load,
                "epoch_seconds": res["epoch_seconds"], "valid_seconds": valid_seconds,
                "test_result": res["test_result"], "best_valid_result": res["best_valid_result"],
                "best_epoch": res["best_epoch"], "n_params": res["n_params"],
            })
            print(f"[{m} round {r}] {statistics.median(res['epoch_seconds']):.2f} s/epoch, "
                  f"test recall@20 {res['test_result']['recall@20']:.4f}", flush=True)

    summary = {}
    for m, rs in runs.items():
        epochs = [s for run in rs for s in run["epoch_seconds"]]
        summary[m] = {
            "median_epoch_seconds": statistics.median(epochs),
            "mean_epoch_seconds": statistics.mean(epochs),
            "median_valid_seconds": statistics.median(run["valid_seconds"] for run in rs),
            "test_recall@20": [run["test_result"]["recall@20"] for run in rs],
            "test_ndcg@20": [run["test_result"]["ndcg@20"] for run in rs],
            "n_params": rs[0]["n_params"],
        }
    record = {
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
        "scatter_backend_of_RecBoleKGIN": scatter_backend(), "dataset": args.dataset,
        "epochs": args.epochs, "rounds": args.rounds, "config": SHARED, "overrides": overrides,
        "summary": summary, "runs": runs,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"kgin_vs_recbole_{args.dataset}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)

    print(f"\n{args.dataset}, {args.epochs} epochs x {args.rounds} rounds; {record['machine']}; "
          f"RecBoleKGIN aggregation: {record['scatter_backend_of_RecBoleKGIN']}\n")
    print("| model | s / train epoch (median) | s / validation | test Recall@20 | test NDCG@20 | params |")
    print("|---|---|---|---|---|---|")
    for m, s in summary.items():
        rec = ", ".join(f"{v:.4f}" for v in s["test_recall@20"])
        ndcg = ", ".join(f"{v:.4f}" for v in s["test_ndcg@20"])
        print(f"| {m} | {s['median_epoch_seconds']:.2f} | {s['median_valid_seconds']:.2f} | {rec} | {ndcg} | {s['n_params']:,} |")
    if len(models) == 2:
        a, b = models
        print(f"\nspeed-up of {a} over {b} per training epoch: "
              f"{summary[b]['median_epoch_seconds'] / summary[a]['median_epoch_seconds']:.2f}x")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
