#!/usr/bin/env python
"""Seconds per user of a model's full-ranking evaluation, with a boolean configuration key off and on.

Models such as KGCN score every (user, item) pair through a network, so one validation pass can
cost minutes. This times ``full_sort_predict`` for the first ``--users`` users (untrained model:
the cost does not depend on the weights), twice per setting, each setting in its own process (some
keys, such as the allocator setting, are process-wide), and prints the extrapolation to all users.

    # KGCN's evaluation, RecBole's method against the one computed once per (user, entity)
    PYTHONPATH=. python benchmarks/full_sort_cost.py --model KGCN --dataset lastfm-kg-resplit-u2k \\
        --key kgcn_fast_full_sort
    # the allocator setting, with RecBole's KGCN evaluation
    PYTHONPATH=. python benchmarks/full_sort_cost.py --model KGCN --dataset lastfm-kg-resplit-u2k \\
        --key retain_cpu_memory --set kgcn_fast_full_sort=False

Users per call: as RecBole's evaluation batches them (``eval_batch_size // items``, at least one)
unless ``--per-call``. ``--out FILE`` writes the records as JSON.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(model_name, dataset, users, per_call, threads, overrides, device):
    import torch

    import recbole_kgin  # noqa: F401  (compat shims first)
    from recbole.data.interaction import Interaction

    from recbole_kgin.quick_start import build_model, create_config, load_data

    torch.set_num_threads(threads)
    config = create_config(model_name, dataset, config_dict={
        "use_gpu": device == "cuda", "state": "WARNING", "show_progress": False, **overrides})
    _, train_data, _, _ = load_data(config)
    model = build_model(config, train_data).eval()
    if per_call <= 0:
        per_call = max(1, int(config["eval_batch_size"]) // int(model.n_items))
    per_call = min(per_call, users)
    seconds = []
    with torch.no_grad():
        for _ in range(2):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for first in range(1, 1 + users, per_call):
                ids = torch.arange(first, min(first + per_call, 1 + users), device=model.device)
                model.full_sort_predict(Interaction({model.USER_ID: ids}))
            if device == "cuda":
                torch.cuda.synchronize()
            seconds.append((time.perf_counter() - start) / users)
    return {"settings": overrides, "seconds_per_user": seconds, "users_per_call": per_call,
            "threads": threads, "device": str(model.device),
            "n_users": int(model.n_users) - 1, "n_items": int(model.n_items)}


def parse_set(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE")
    return key, yaml.safe_load(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="KGCN")
    parser.add_argument("--dataset", default="lastfm-kg-resplit-u2k")
    parser.add_argument("--key", default="kgcn_fast_full_sort",
                        help="boolean configuration key timed False, then True")
    parser.add_argument("--set", type=parse_set, action="append", default=[], metavar="KEY=VALUE",
                        help="a configuration override for both settings (repeatable)")
    parser.add_argument("--users", type=int, default=40, help="users timed (default 40)")
    parser.add_argument("--per-call", type=int, default=0,
                        help="users per full_sort_predict call (default: RecBole's batch)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", help="write the records to this JSON file")
    parser.add_argument("--_settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._settings:
        print(json.dumps(measure(args.model, args.dataset, args.users, args.per_call,
                                 args.threads, json.loads(args._settings), args.device)))
        return
    records = []
    for value in (False, True):
        settings = {**dict(args.set), args.key: value}
        cmd = [sys.executable, __file__, "--model", args.model, "--dataset", args.dataset,
               "--users", str(args.users), "--per-call", str(args.per_call),
               "--threads", str(args.threads), "--device", args.device,
               "--_settings", json.dumps(settings)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        records.append(record)
        best = min(record["seconds_per_user"])
        print(f"{args.model} on {args.dataset} ({record['device']}), {args.key}={value}: "
              f"{best * 1000:.1f} ms per user ({record['n_items']} items, "
              f"{record['users_per_call']} users per call), {best * record['n_users']:.0f} s "
              f"for all {record['n_users']} users", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
