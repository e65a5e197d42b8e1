# -*- coding: utf-8 -*-
"""Per-user tables of a comparison: every finished model's seed runs averaged per test user
(``per_user/<Model>.npz``) and its ranked lists (``topk/<Model>.npz``), from the files the final
runs wrote (:func:`recbole_kgin.experiment.runner.write_final`). A published folder keeps the
tables but not the seed runs' files; a finished row whose seed files are gone keeps its tables, so
such a folder can be continued with ``--resume``."""

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
    """``topk/<Model>.npz`` content: ``users`` (tokens, in the evaluation's user order),
    ``item_tokens`` (the item catalogue) and one ``seed_<s>`` array per seed run of every user's
    top ``keep`` items as positions in ``item_tokens`` (int32, best first); with the test pairs
    (``test_items``, positions, user ``u``'s at ``test_offsets[u]:test_offsets[u + 1]``) and each
    item's training count (``item_train_count``), any metric or group can be recomputed without
    retraining. None when the runs kept no ranked lists."""
    lists = [read_ranked(final_dir, s) for s in seeds]
    if any(x is None for x in lists):
        return None
    first = lists[0]
    tokens = first["item_tokens"]
    # RecBole's id 0 is its padding item, never ranked: position = id - 1
    out = {"users": first["users"], "item_tokens": tokens[1:],
           "item_train_count": first["item_train_count"][1:],
           "test_items": (first["test_items"] - 1).astype(np.int32),
           "test_offsets": first["test_offsets"]}
    for seed, ranked in zip(seeds, lists):
        if list(ranked["users"]) != list(first["users"]) or \
                list(ranked["item_tokens"]) != list(tokens):
            raise RuntimeError("seed runs ranked different users or items")
        out[f"seed_{seed}"] = (ranked["topk"][:, :keep] - 1).astype(np.int32)
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
        kept = read_table(run_dir / "per_user" / f"{name}.npz")
        if kept is not None and not all(
                (final_dir / f"seed-{s}.npz").is_file() for s in runs):
            means[name] = kept  # a published folder: the seed files were left out
            continue
        means[name] = seed_means(final_dir, runs)
        write_npz(run_dir / "per_user" / f"{name}.npz",  # compressed: ~30x smaller to publish
                  {"users": means[name]["users"],
                   **{f"{c}_mean": v for c, v in means[name].items() if c != "users"}},
                  compressed=True)
        ranked = ranked_table(final_dir, runs)
        if ranked is not None:
            write_npz(run_dir / "topk" / f"{name}.npz", ranked, compressed=True)
    return means


def read_table(path):
    """``per_user/<Model>.npz`` back as :func:`seed_means`' dict, or None when it is missing."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        out = {"users": data["users"]}
        out.update({c[: -len("_mean")]: data[c] for c in data.files if c.endswith("_mean")})
    return out


def as_dict(means, column):
    """``{user: value}`` of one column of :func:`seed_means`."""
    return dict(zip(means["users"].tolist(), means[column].tolist()))
