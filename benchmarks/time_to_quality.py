#!/usr/bin/env python
"""Time to quality of KGIN's training schedules: wall time until validation Recall@20 first reaches
the best that the published schedule reaches.

Every schedule trains through the shared pipeline (``quick_start.run_recbole_kgin``) on the same
split with the same seed; only the keys of the schedule change. Recorded per schedule: every
validation (epoch, score), the wall time of every training epoch, the best validation Recall@20 and
its epoch, test Recall@20 of the selected epoch, and the training seconds (validation passes
excluded) until the score first reaches the target = the best validation Recall@20 of the first
schedule (``published``).

Schedules (``--schedules``, first = reference):

* ``published``: the shipped settings (lr 1e-4, batch 1024, validation every 10 epochs, stop after
  10 validations without improvement), as in the paper;
* ``large-batch``: batch ``--large-batch`` (default 4096) with the learning rate scaled linearly
  (lr 1e-4 x 4 = 4e-4), the same validation and stopping rule in epochs. KGIN propagates over the
  whole graph once per step whatever the batch size, so an epoch costs about 1/4 of the steps.

    PYTHONPATH=. python benchmarks/time_to_quality.py --dataset lastfm-kg-resplit-u2k \
        --json docs/speed-results/time_to_quality_u2k_cpu.json
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def schedules(large_batch):
    scale = large_batch / 1024
    return {
        "published": {},
        "large-batch": {"train_batch_size": large_batch, "learning_rate": 1e-4 * scale},
    }


def first_reaching(result, target):
    """(epoch, training seconds up to and including it) of the first validation >= target."""
    seconds = result["epoch_seconds"]
    for entry in result["valid_history"]:
        if entry["score"] >= target - 1e-12:
            epoch = entry["epoch"]
            return epoch + 1, sum(seconds[: epoch + 1])
    return None, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="lastfm-kg-resplit-u2k")
    parser.add_argument("--schedules", default="published,large-batch")
    parser.add_argument("--large-batch", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=1000,
                        help="epoch cap of every schedule (default 1000, the shipped cap)")
    parser.add_argument("--eval-step", type=int,
                        help="validate every N epochs instead of the schedule's own (10); the "
                        "training and the shipped stopping rule in epochs (eval_step x "
                        "stopping_step) stay the same, the best epoch is found more finely")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", help="write the record here")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    import yaml

    import recbole_kgin  # noqa: F401  (compat shims first)
    from machine import describe
    from recbole_kgin.config import PROPERTIES_DIR
    from recbole_kgin.experiment.files import write_json
    from recbole_kgin.quick_start import run_recbole_kgin

    shipped = yaml.safe_load((PROPERTIES_DIR / "model" / "KGIN.yaml").read_text())
    patience_epochs = int(shipped["eval_step"]) * int(shipped["stopping_step"])
    known = schedules(args.large_batch)
    names = args.schedules.split(",")
    for name in names:
        if name not in known:
            raise SystemExit(f"--schedules: unknown schedule {name!r} (known: {', '.join(known)})")
    record = {"command": " ".join(["python", *sys.argv]), "machine": describe(args.device),
              "dataset": args.dataset, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "schedules": {}}
    with tempfile.TemporaryDirectory(prefix="kgin-ttq-") as tmp:
        for name in names:
            overrides = dict(known[name], epochs=args.epochs, show_progress=False,
                             checkpoint_dir=os.path.join(tmp, name), use_gpu=args.device == "cuda")
            if args.eval_step:  # the shipped stopping rule, in epochs, kept
                overrides.update(eval_step=args.eval_step,
                                 stopping_step=max(1, patience_epochs // args.eval_step))
            start = time.perf_counter()
            result = run_recbole_kgin("KGIN", args.dataset, config_dict=overrides)
            wall = time.perf_counter() - start
            record["schedules"][name] = {
                "overrides": known[name], "wall_seconds": wall,
                "train_seconds": sum(result["epoch_seconds"]),
                "epochs_run": result["epochs_run"], "best_epoch": result["best_epoch"] + 1,
                "best_valid_recall@20": result["best_valid_score"],
                "test_recall@20": result["test_result"]["recall@20"],
                "seconds_per_epoch": result["seconds_per_epoch"],
                "valid_history": [[h["epoch"] + 1, h["score"]] for h in result["valid_history"]],
                "epoch_seconds": result["epoch_seconds"],
            }
            print(f"{name}: best valid Recall@20 {result['best_valid_score']:.4f} at epoch "
                  f"{result['best_epoch'] + 1} of {result['epochs_run']}, "
                  f"{result['seconds_per_epoch']:.2f} s per epoch, {wall:.0f} s in all", flush=True)
    target = record["schedules"][names[0]]["best_valid_recall@20"]
    record["target_valid_recall@20"] = target
    for name in names:
        entry = record["schedules"][name]
        entry["epoch_to_target"], entry["train_seconds_to_target"] = first_reaching(
            {"epoch_seconds": entry["epoch_seconds"],
             "valid_history": [{"epoch": e - 1, "score": s} for e, s in entry["valid_history"]]},
            target)
        reached = entry["train_seconds_to_target"]
        print(f"{name}: reaches {target:.4f} "
              + (f"at epoch {entry['epoch_to_target']} after {reached:.0f} s of training"
                 if reached is not None else "never"))
    if args.json:
        write_json(Path(args.json), record)
        print(f"written: {args.json}")


if __name__ == "__main__":
    main()
