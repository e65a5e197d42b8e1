#!/usr/bin/env python
"""Seconds per training epoch and per validation pass of each model on one dataset, under the
settings a ``compare`` run gives it, and what a ``compare`` table would cost at that size.

Each model is built by the shared pipeline (create_config / load_data / build_model / build_trainer)
with compare's budget settings (train batch 1024, ``kg_linked_items_only`` for a mixed table) and
its shipped settings, trains one epoch and runs one full-ranking validation pass. The dataset is
loaded once per dataset class and reused (RecBole's dataset object, as compare reuses it across a
model's runs). Models with a dense item x item matrix are skipped, with the numbers, when they do not
fit in this machine's memory (the same rule compare applies).

``--epochs-from RESULTS.json`` (a compare run's results.json, e.g. the CPU-subset table of the same
data) takes each model's trials, seeds and mean epochs run from there and estimates the table's
cost at this dataset's size: (trials + seed runs) x (model build + epochs x (epoch + validation)),
the build being where RecBole's EASE and ItemKNN fit. An estimate: a
model's epochs to early stopping at full size need not be those of the subset.

    PYTHONPATH=. python benchmarks/epoch_cost.py --dataset lastfm-kg-resplit --device cuda \\
        --epochs-from docs/benchmark/lastfm-kg-resplit-u2k/results.json --out cost.json
    # the estimate again, from the records of that run and another results.json
    PYTHONPATH=. python benchmarks/epoch_cost.py --dataset lastfm-kg-resplit --records cost.json \\
        --epochs-from OTHER/results.json --out cost.json
"""

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe, memory_gb  # noqa: E402  (benchmarks/machine.py)

MODELS = "KGIN,KGAT,CKE,CFKG,KGCN,BPR,LightGCN,Pop,ItemKNN,EASE"


def _sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def measure(name, dataset, device, datasets, tmp):
    import torch
    from recbole.utils import ModelType

    from recbole_kgin.experiment import protocol
    from recbole_kgin.quick_start import (build_dataset, build_model, build_trainer,
                                          create_config, load_data)

    config = create_config(name, dataset, config_dict={
        "use_gpu": device == "cuda", "state": "WARNING", "show_progress": False,
        "train_batch_size": 1024, "kg_linked_items_only": True, "epochs": 1,
        "checkpoint_dir": tmp, "save_dataset": False, "save_dataloaders": False})
    kind = config["MODEL_TYPE"] == ModelType.KNOWLEDGE
    start = time.perf_counter()
    if kind not in datasets:
        datasets[kind] = pickle.dumps(build_dataset(config))
    _, train_data, valid_data, _ = load_data(config, pickle.loads(datasets[kind]))
    load_s = time.perf_counter() - start
    n_items = train_data._dataset.item_num
    need, reason = protocol.trial_memory(name, n_items)
    available = memory_gb()  # GiB
    if need is not None and available is not None and need / 2**30 > available:
        return {"model": name, "status": f"skipped: needs {need / 2**30:.0f} GiB ({reason}); "
                                          f"this machine has {available:.0f} GiB"}
    start = time.perf_counter()
    model = build_model(config, train_data)  # EASE and ItemKNN fit here, in RecBole's __init__
    trainer = build_trainer(config, model)
    _sync(device)
    build_s = time.perf_counter() - start
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    start = time.perf_counter()
    trainer._train_epoch(train_data, 0, show_progress=False)
    _sync(device)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
    _sync(device)
    valid_s = time.perf_counter() - start
    record = {"model": name, "status": "ok", "train_epoch_s": train_s, "validation_s": valid_s,
              "build_s": build_s, "load_s": load_s, "n_items": int(n_items) - 1,
              "n_users": int(train_data._dataset.user_num) - 1,
              "train_pairs": len(train_data._dataset)}
    if device == "cuda":
        record["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
    del trainer, model
    if device == "cuda":
        torch.cuda.empty_cache()
    return record


def estimate(records, results_file):
    rows = {row["model"]: row for row in json.loads(Path(results_file).read_text())["models"]}
    total = 0.0
    for record in records:
        row = rows.get(record["model"])
        if record["status"] != "ok" or not row or row.get("status") != "ok":
            record["estimate"] = None
            continue
        runs = int(row.get("trials") or 1) + int(row.get("seeds") or 1)
        epochs = float(row.get("epochs_run") or 1)
        seconds = runs * (record["build_s"]
                          + epochs * (record["train_epoch_s"] + record["validation_s"]))
        record["estimate"] = {"runs": runs, "epochs_per_run": epochs, "seconds": seconds}
        total += seconds
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--epochs-from", help="a compare run's results.json (trials, seeds, epochs)")
    parser.add_argument("--out", help="write the records here (JSON)")
    parser.add_argument("--records", help="an earlier --out file: only recompute its estimate")
    args = parser.parse_args()

    import torch

    import recbole_kgin  # noqa: F401  (compat shims first)

    if args.threads:
        torch.set_num_threads(args.threads)
    summary = {"dataset": args.dataset, "device": args.device, "models": [],
               "torch": torch.__version__,
               "machine": describe(args.device)}
    if args.records:  # recompute the estimate of an earlier run's records
        summary = json.loads(Path(args.records).read_text())
    else:
        datasets = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.models.split(","):
                try:
                    record = measure(name, args.dataset, args.device, datasets, tmp)
                except Exception as error:  # noqa: BLE001  (recorded, the other models go on)
                    record = {"model": name, "status": f"failed: {type(error).__name__}: {error}"}
                summary["models"].append(record)
                if record["status"] == "ok":
                    print(f"{name}: build {record['build_s']:.1f} s, epoch "
                          f"{record['train_epoch_s']:.1f} s, validation "
                          f"{record['validation_s']:.1f} s (data {record['load_s']:.1f} s)",
                          flush=True)
                else:
                    print(f"{name}: {record['status']}", flush=True)
                if args.out:  # after every model, so that a run cut short keeps what it measured
                    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    if args.epochs_from:
        summary["estimate_source"] = args.epochs_from
        summary["estimated_seconds"] = estimate(summary["models"], args.epochs_from)
        print(f"estimated table: {summary['estimated_seconds'] / 3600:.1f} h (models with an "
              f"estimate: {sum(1 for r in summary['models'] if r.get('estimate'))} of "
              f"{len(summary['models'])})")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")

if __name__ == "__main__":
    main()
