# -*- coding: utf-8 -*-
"""Per-user tables of a comparison: every finished model's seed runs averaged per test user
(``per_user/<Model>.npz``) and its ranked lists (``topk/<Model>.npz``), from the files the final
runs wrote (:func:`recbole_kgin.experiment.runner.write_final`)."""

import numpy as np

from recbole_kgin.experiment.files import write_npz
from recbole_kgin.experiment.protocol import mean_per_user, model_seeds
from recbole_kgin.experiment.runner import read_per_user, read_ranked

TOPK_SAVED = 50


def seed_means(final_dir, seeds):
    """``{"users": sorted tokens, column: seed-mean array}`` over the seed runs in ``final_dir``."""
    runs = [read_per_user(final_dir, s) for s in seeds]
    columns = [c for c in runs[0] if c != "users"]
    out = {}
    for column in columns:
        mean = mean_per_user(runs, column)
        users = sorted(mean)
        out["users"] = np.array(users)
        out[column] = np.array([mean[u] for u in users], dtype=np.float64)
    return out


def ranked_table(final_dir, seeds, keep=TOPK_SAVED):
    """``topk/<Model>.npz`` content: ``users`` (tokens, in the evaluation's user order), one
    ``seed_<s>`` array of the top ``keep`` item tokens per user for every seed run, and the test
    pairs and training counts to recompute any metric or group without retraining
    (``test_items`` / ``test_offsets`` as item tokens, ``item_tokens`` / ``item_train_count``).
    None when the runs kept no ranked lists."""
    lists = [read_ranked(final_dir, s) for s in seeds]
    if any(x is None for x in lists):
        return None
    first = lists[0]
    tokens = first["item_tokens"]
    out = {"users": first["users"], "item_tokens": tokens[1:],
           "item_train_count": first["item_train_count"][1:],
           "test_items": tokens[first["test_items"]], "test_offsets": first["test_offsets"]}
    for seed, ranked in zip(seeds, lists):
        if list(ranked["users"]) != list(first["users"]):
            raise RuntimeError("seed runs ranked different users")
        out[f"seed_{seed}"] = ranked["item_tokens"][ranked["topk"][:, :keep]]
    return out


def write_tables(run_dir, rows, seeds):
    """Both files for every finished row; returns ``{model: seed means}`` (:func:`seed_means`)."""
    means = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        name = row["model"]
        final_dir = run_dir / "models" / name / "final"
        runs = model_seeds(row.get("base_model") or name, seeds)
        means[name] = seed_means(final_dir, runs)
        write_npz(run_dir / "per_user" / f"{name}.npz",
                  {"users": means[name]["users"],
                   **{f"{c}_mean": v for c, v in means[name].items() if c != "users"}})
        ranked = ranked_table(final_dir, runs)
        if ranked is not None:
            write_npz(run_dir / "topk" / f"{name}.npz", ranked)
    return means


def as_dict(means, column):
    """``{user: value}`` of one column of :func:`seed_means`."""
    return dict(zip(means["users"].tolist(), means[column].tolist()))
