#!/usr/bin/env python
"""Seconds per training epoch of one model with autograd's anomaly detection on and off.

RecBole's ``get_model`` imports its sequential models on the way to its knowledge-aware ones, and
``recbole/model/sequential_recommender/sine.py`` turns anomaly detection on for the whole process
when it is imported. This package's model lookup keeps the caller's setting
(``recbole_kgin/utils.py``); this script measures what the setting costs, with the model built by
the shared pipeline and the same batches either way. A measurement, never asserted.

    PYTHONPATH=. python benchmarks/anomaly_mode_cost.py --model CKE --dataset ml-100k
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="CKE")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per setting")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the record here")
    args = parser.parse_args(argv)

    import torch

    import recbole_kgin  # noqa: F401  (compat shims before RecBole loads)
    from recbole_kgin.quick_start import build_model, build_trainer, create_config, load_data

    torch.set_num_threads(args.threads)
    config = create_config(args.model, args.dataset, config_dict={
        "train_batch_size": 1024, "kg_linked_items_only": True, "show_progress": False,
        "state": "ERROR"})
    _, train_data, _, _ = load_data(config)
    record = {"model": args.model, "dataset": args.dataset, "threads": args.threads}
    for mode in (True, False, True, False):  # alternating, each a fresh model
        model = build_model(config, train_data)
        trainer = build_trainer(config, model)
        with torch.autograd.set_detect_anomaly(mode):
            times = []
            for epoch in range(args.epochs):
                start = time.perf_counter()
                trainer._train_epoch(train_data, epoch)
                times.append(time.perf_counter() - start)
        record.setdefault("epoch_s_anomaly_on" if mode else "epoch_s_anomaly_off", []).extend(
            times)
    for key in ("epoch_s_anomaly_on", "epoch_s_anomaly_off"):
        values = sorted(record[key])
        record[key.replace("epoch_s", "median_epoch_s")] = values[len(values) // 2]
    print(f"{args.model} on {args.dataset}: median epoch {record['median_epoch_s_anomaly_on']:.2f} s "
          f"with anomaly detection, {record['median_epoch_s_anomaly_off']:.2f} s without")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
