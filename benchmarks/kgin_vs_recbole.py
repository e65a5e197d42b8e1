#!/usr/bin/env python
"""Side-by-side: this package's KGIN vs RecBole 1.2.1's built-in KGIN, same data, config and seed.

Both are built by the shared pipeline (create_config / load_data / build_model / build_trainer) with
the published KGIN settings and RecBole's trainer; their training epochs and validations alternate
(epoch 0 of each, then epoch 1 of each, ...) so that background load affects both alike. Records
seconds per training epoch, seconds per validation, and test Recall/NDCG@20 after the last epoch;
writes JSON and prints a Markdown table. Extra ``--key=value`` arguments override the config of both.

    python benchmarks/kgin_vs_recbole.py --dataset ml-100k --epochs 5 --out benchmarks/results
"""

import argparse
import os
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
    from machine import cpu_name

    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--models", default="KGIN,RecBoleKGIN")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default)")
    args, rest = parser.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from recbole.utils import init_logger

    from recbole_kgin.errors import split_overrides
    from recbole_kgin.experiment.files import write_json
    from recbole_kgin.quick_start import (build_model, build_trainer, count_parameters,
                                          create_config, load_data)

    overrides = split_overrides(rest)
    models = args.models.split(",")
    state = {}
    for m in models:
        cfg = dict(SHARED, epochs=args.epochs, checkpoint_dir=f"saved/bench-{m}")
        cfg.update(overrides)
        config = create_config(m, args.dataset, config_dict=cfg)
        init_logger(config)
        _, train_data, valid_data, test_data = load_data(config)
        model = build_model(config, train_data)
        trainer = build_trainer(config, model)
        state[m] = dict(config=config, model=model, trainer=trainer, train=train_data,
                        valid=valid_data, test=test_data, valid_seconds=[], loads=[])

    # alternate: epoch e of every model, then epoch e + 1 of every model, ...
    for epoch in range(args.epochs):
        for m in models:
            st = state[m]
            st["loads"].append(os.getloadavg()[0])
            st["model"].train()
            st["trainer"]._train_epoch(st["train"], epoch, show_progress=False)
            start = time.perf_counter()
            score, _ = st["trainer"]._valid_epoch(st["valid"], show_progress=False)
            st["valid_seconds"].append(time.perf_counter() - start)
            print(f"[{m} epoch {epoch}] train {st['trainer'].epoch_seconds[-1]:.2f} s, "
                  f"valid {st['valid_seconds'][-1]:.2f} s, valid score {score:.4f}", flush=True)

    summary = {}
    for m in models:
        st = state[m]
        test = st["trainer"].evaluate(st["test"], load_best_model=False)
        summary[m] = {
            "median_epoch_seconds": statistics.median(st["trainer"].epoch_seconds),
            "epoch_seconds": [round(x, 3) for x in st["trainer"].epoch_seconds],
            "median_valid_seconds": statistics.median(st["valid_seconds"]),
            "valid_scores": [h[1] for h in st["trainer"].valid_history],
            "test_after_last_epoch": {k: float(v) for k, v in test.items()},
            "n_params": count_parameters(st["model"]),
            "load_avg_during": [round(x, 2) for x in st["loads"]],
            "train_steps_per_epoch": len(st["train"]),
        }
    record = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
        "scatter_backend_of_RecBoleKGIN": scatter_backend(), "dataset": args.dataset,
        "epochs": args.epochs, "config": SHARED, "overrides": overrides, "summary": summary,
    }
    path = Path(args.out) / f"kgin_vs_recbole_{args.dataset}.json"
    write_json(path, record)

    print(f"\n{args.dataset}, {args.epochs} epochs, interleaved; {record['machine']}; "
          f"RecBoleKGIN aggregation: {record['scatter_backend_of_RecBoleKGIN']}\n")
    print("| model | s / train epoch (median) | s / validation (median) | test Recall@20 | test NDCG@20 | params |")
    print("|---|---|---|---|---|---|")
    for m, s in summary.items():
        t = s["test_after_last_epoch"]
        print(f"| {m} | {s['median_epoch_seconds']:.2f} | {s['median_valid_seconds']:.2f} | "
              f"{t['recall@20']:.4f} | {t['ndcg@20']:.4f} | {s['n_params']:,} |")
    if len(models) == 2:
        a, b = models
        print(f"\nper training epoch, {a} is {summary[b]['median_epoch_seconds'] / summary[a]['median_epoch_seconds']:.2f}x "
              f"as fast as {b}; per validation {summary[b]['median_valid_seconds'] / summary[a]['median_valid_seconds']:.2f}x")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
