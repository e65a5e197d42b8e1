#!/usr/bin/env python
"""Seconds per user of a model's full-ranking evaluation, with and without ``retain_cpu_memory``.

Models such as KGCN score every (user, item) pair through their network, so one validation pass
costs users x items forward computations; at RecBole's batch of one user per call they allocate and
free tensors of tens of MB per user. This times ``full_sort_predict`` for the first ``--users``
users (untrained model: the cost does not depend on the weights), twice per mode, each mode in its
own process (the allocator setting is process-wide), and prints the extrapolation to all users.

    PYTHONPATH=. python benchmarks/full_sort_cost.py --model KGCN --dataset lastfm-kg-resplit-u2k
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(model_name, dataset, users, per_call, threads, retain):
    import torch

    import recbole_kgin  # noqa: F401  (compat shims first)
    from recbole.data.interaction import Interaction

    from recbole_kgin.quick_start import build_model, create_config, load_data

    torch.set_num_threads(threads)
    config = create_config(model_name, dataset, config_dict={
        "use_gpu": False, "state": "WARNING", "show_progress": False,
        "retain_cpu_memory": retain})
    _, train_data, _, _ = load_data(config)
    model = build_model(config, train_data).eval()
    seconds = []
    with torch.no_grad():
        for _ in range(2):
            start = time.perf_counter()
            for first in range(1, 1 + users, per_call):
                ids = torch.arange(first, min(first + per_call, 1 + users))
                model.full_sort_predict(Interaction({model.USER_ID: ids}))
            seconds.append((time.perf_counter() - start) / users)
    return {"retain_cpu_memory": retain, "seconds_per_user": seconds,
            "n_users": int(model.n_users) - 1, "n_items": int(model.n_items)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="KGCN")
    parser.add_argument("--dataset", default="lastfm-kg-resplit-u2k")
    parser.add_argument("--users", type=int, default=40, help="users timed (default 40)")
    parser.add_argument("--per-call", type=int, default=1,
                        help="users per full_sort_predict call (RecBole: eval_batch_size // items)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--_mode", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._mode:
        print(json.dumps(measure(args.model, args.dataset, args.users, args.per_call,
                                 args.threads, args._mode == "on")))
        return
    for mode in ("off", "on"):
        cmd = [sys.executable, __file__, "--model", args.model, "--dataset", args.dataset,
               "--users", str(args.users), "--per-call", str(args.per_call),
               "--threads", str(args.threads), "--_mode", mode]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        best = min(record["seconds_per_user"])
        print(f"{args.model} on {args.dataset}, retain_cpu_memory {mode}: {best:.3f} s per user "
              f"({record['n_items']} items), {best * record['n_users']:.0f} s for all "
              f"{record['n_users']} users", flush=True)


if __name__ == "__main__":
    main()
