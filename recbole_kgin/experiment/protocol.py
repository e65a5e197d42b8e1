# -*- coding: utf-8 -*-
"""The benchmark protocol: equal budgets, search spaces, seeds, convergence, aggregation over seeds,
range-edge flags and the budget ledger. Pure functions of plain data (no training here; the
statistics are in :mod:`recbole_kgin.experiment.stats`)."""

import math
from pathlib import Path

from recbole_kgin.errors import UsageError

HEADLINE_K = 20
TABLE_KS = (10, 20, 50)
METRICS = ("recall", "ndcg", "hit", "precision")
SIGNIFICANCE_METRICS = ("recall@20", "ndcg@20")
TEST_NAME = "Wilcoxon signed-rank (two-sided, scipy.stats.wilcoxon), paired over test users"

# Configuration that defines the protocol: it must be equal for every model of one comparison.
PROTOCOL_KEYS = (
    "seed", "split_seed", "reproducibility", "eval_args", "train_neg_sample_args", "metrics",
    "topk", "valid_metric", "valid_metric_bigger", "data_path", "benchmark_filename",
    "USER_ID_FIELD", "ITEM_ID_FIELD", "val_interval", "user_inter_num_interval",
    "item_inter_num_interval", "rm_dup_inter", "filter_inter_by_user_or_item",
    "metric_decimal_place", "kg_linked_items_only", "epochs", "eval_step", "stopping_step",
    "train_batch_size",
)

# Models whose trainer does not respect the epoch budget: refused rather than reported unfairly.
BUDGET_IGNORING = {
    "RaCT": "RecBole's RaCT pretrains for a fixed 150 epochs whatever --epochs says, so it cannot "
            "be given the same budget as the other models",
}


# Models whose training has no randomness (no initialisation, no sampling, no dropout): every model
# seed gives the same numbers, so their selected configuration runs once and the row says so.
# Not Pop: RecBole's Pop counts an item once per training batch however often it occurs in it, so
# its counts depend on the seeded batch order.
DETERMINISTIC = {
    "ItemKNN": "item-item cosine similarity of the training matrix",
    "EASE": "closed-form ridge regression of the training matrix",
    "KGItemKNN": "item-item similarity of the items' KG features",
    "KGEASE": "closed-form ridge regression of the training matrix stacked over KG features",
}


# Models that hold dense item x item matrices: bytes per item pair at their peak. Their runs ask Ray
# for that much memory, so Ray runs only as many at once as fit, and a run that fits nowhere is
# refused with the numbers.
ITEM_ITEM_MEMORY = {
    "EASE": (32, "RecBole's EASE builds the dense item x item Gram matrix and inverts it in "
                 "float64: about 32 bytes per item pair at its peak"),
    "KGEASE": (32, "KGEASE builds the dense item x item Gram matrix (interactions + KG features) "
                   "and inverts it in float64: about 32 bytes per item pair at its peak"),
}


def trial_memory(model, n_items):
    """``(bytes, reason)`` one run of ``model`` needs for its item x item matrices, or
    ``(None, None)`` for a model without them."""
    if model not in ITEM_ITEM_MEMORY:
        return None, None
    per_pair, reason = ITEM_ITEM_MEMORY[model]
    return per_pair * int(n_items) ** 2 + 2**30, f"{reason}, {n_items:,} items, plus 1 GiB"


def model_seeds(model, seeds):
    """The final-run seeds of ``model``: all of ``seeds``, or the first one for a model in
    ``DETERMINISTIC`` (further seeds would repeat the same run)."""
    return list(seeds[:1]) if model in DETERMINISTIC else list(seeds)


class Budget:
    """What every model of a comparison gets: the same epoch cap, validation every ``eval_step``
    epochs, the same patience in epochs, the same batch size, ``trials`` search trials and
    ``seeds`` final runs."""

    def __init__(self, epochs, patience, eval_step=1, batch_size=1024, trials=0, seeds=1):
        for name, value, low in (("--epochs", epochs, 1), ("--patience", patience, 1),
                                 ("--eval_step", eval_step, 1), ("--train_batch_size", batch_size, 1),
                                 ("--trials", trials, 0), ("--seeds", seeds, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise UsageError(f"{name} must be an integer >= {low} (got {value!r})")
        if patience % eval_step:
            raise UsageError(f"--patience ({patience}) must be a multiple of eval_step ({eval_step})")
        self.epochs, self.patience, self.eval_step = epochs, patience, eval_step
        self.batch_size, self.trials, self.seeds = batch_size, trials, seeds

    def overrides(self):
        """The configuration that gives a model this budget (RecBole's early stopping counts
        validations, so patience in epochs = stopping_step * eval_step)."""
        return {"epochs": self.epochs, "eval_step": self.eval_step,
                "stopping_step": self.patience // self.eval_step,
                "train_batch_size": self.batch_size}

    def as_dict(self):
        return {"epochs": self.epochs, "patience_epochs": self.patience,
                "eval_step": self.eval_step, "train_batch_size": self.batch_size,
                "trials": self.trials, "seeds": self.seeds}


def seed_list(base_seed, count):
    """The model seeds of the final runs: base, base + 1, ...; the split keeps its own seed."""
    return [int(base_seed) + i for i in range(count)]


def split_seed_list(base_split_seed, count):
    """The split seeds of ``--split-seeds``: the comparison's split seed, then + 1, + 2, ..."""
    return [int(base_split_seed) + i for i in range(count)]


def can_resplit(config):
    """None when RecBole splits the dataset itself with a seeded random split (so another split
    seed gives another split), else why not (a dataset with fixed split files)."""
    if config["benchmark_filename"]:
        return (f"dataset {config['dataset']} comes with fixed split files "
                f"({', '.join(config['benchmark_filename'])}), which a split seed cannot change")
    split = (config["eval_args"] or {}).get("split") or {}
    if "RS" not in split:
        return f"dataset {config['dataset']} is split by {split}, not by a seeded random split (RS)"
    order = (config["eval_args"] or {}).get("order")
    if order != "RO":
        return f"eval_args order is {order!r}: only a random order (RO) depends on the split seed"
    return None


def variance_components(split_rows, column):
    """``{"seed": mean within-split variance over seeds, "split": variance of the split means,
    "splits": count}`` of ``column`` from ``[{"mean", "std", "seeds"}, ...]`` (one per split; sample
    variances, ddof 1; 0 for one value)."""
    means = [r["mean"] for r in split_rows if r.get("mean") is not None]
    seed_vars = [r["std"] ** 2 for r in split_rows if r.get("std") is not None]
    _, split_std = mean_std(means)
    return {"seed": sum(seed_vars) / len(seed_vars) if seed_vars else None,
            "split": None if split_std is None else split_std ** 2, "splits": len(means)}


def space_file(model, properties_dir):
    """``properties/tune/<Model>.yaml`` or None when the model ships no search space."""
    path = Path(properties_dir) / "tune" / f"{model}.yaml"
    return path if path.is_file() else None


def converged(valid_history, epochs_run, epochs_cap, patience, bigger=True):
    """False when a run reached the epoch cap while still improving: its best validation came
    within the last ``patience`` epochs, so early stopping had not fired. None without history."""
    if not valid_history:
        return None
    best_epoch = None
    for h in valid_history:
        if best_epoch is None or (h["score"] >= best if bigger else h["score"] <= best):
            best_epoch, best = h["epoch"], h["score"]
    if epochs_run < epochs_cap:
        return True
    return (epochs_cap - 1) - best_epoch >= patience


def mean_std(values):
    """Mean and sample standard deviation (ddof 1; 0 for one value) of finite numbers."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(seed_records, columns):
    """``{column: mean, column_std: std}`` of the test results of the seed runs."""
    out = {}
    for column in columns:
        mean, std = mean_std([(r.get("test_result") or {}).get(column) for r in seed_records])
        out[column], out[f"{column}_std"] = mean, std
    return out


def mean_per_user(per_user_runs, column):
    """Each test user's metric averaged over the seed runs: ``{user token: value}``."""
    sums, counts = {}, {}
    for run in per_user_runs:
        for user, value in zip(run["users"].tolist(), run[column].tolist()):
            sums[user] = sums.get(user, 0.0) + value
            counts[user] = counts.get(user, 0) + 1
    return {u: sums[u] / counts[u] for u in sums}


def reference_model(rows, preferred="KGIN"):
    """KGIN when it finished, else the model with the best mean test Recall@20."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if any(r["model"] == preferred for r in ok):
        return preferred
    headline = f"recall@{HEADLINE_K}"
    ranked = sorted((r for r in ok if r.get(headline) is not None), key=lambda r: -r[headline])
    return ranked[0]["model"] if ranked else None


def rank_marks(rows, column):
    """``{model: "best" | "second"}`` by the mean of ``column`` over the finished rows."""
    values = sorted({r[column] for r in rows if r.get("status") == "ok" and r.get(column) is not None},
                    reverse=True)
    marks = {}
    for r in rows:
        if r.get("status") != "ok" or r.get(column) is None:
            continue
        if r[column] == values[0]:
            marks[r["model"]] = "best"
        elif len(values) > 1 and r[column] == values[1]:
            marks[r["model"]] = "second"
    return marks


# ---------------------------------------------------------------------------------------------
# tuning adequacy

EDGE_SHARE = 0.05  # a continuous value this close to a bound (share of the range) counts as on it


def _numbers(values):
    return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def edge_flags(params, space):
    """``{key: "min" | "max"}`` for every selected value on the boundary of its range: for a list
    (``choice`` / ``grid``) of numbers, its smallest or largest value; for ``randint``, a bound; for
    ``uniform`` / ``loguniform``, within ``EDGE_SHARE`` of the range from a bound (on the log scale
    for ``loguniform``). Lists of other values (names, lists) have no edges. ``space``:
    ``{key: [distribution, arguments]}`` as in a search's settings."""
    flags = {}
    for key, (distribution, args) in space.items():
        value = params.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if distribution in ("choice", "grid", "randint"):
            numbers = _numbers(args)
            if distribution != "randint" and len(numbers) != len(args) or len(set(numbers)) < 2:
                continue
            low, high = min(numbers), max(numbers)
            flags.update({key: "min"} if value == low else {key: "max"} if value == high else {})
            continue
        low, high = float(args[0]), float(args[1])
        transform = math.log if distribution == "loguniform" else float
        position = (transform(value) - transform(low)) / (transform(high) - transform(low))
        if position <= EDGE_SHARE:
            flags[key] = "min"
        elif position >= 1 - EDGE_SHARE:
            flags[key] = "max"
    return flags


def space_size(space):
    """The number of configurations of a space of lists, or ``"continuous"``."""
    size = 1
    for distribution, args in space.values():
        if distribution in ("choice", "grid"):
            size *= len(args)
        elif distribution == "randint":
            size *= int(args[1]) - int(args[0]) + 1
        else:
            return "continuous"
    return size


def ledger(row, search_summary, cpus_per_trial, gpus_per_trial):
    """What the row cost: distinct configurations tried, epochs trained (search and seed runs),
    wall seconds of this command's work on it, and CPU / GPU seconds as reserved from Ray
    (each trial's time times its CPUs / GPUs per trial)."""
    trials = (search_summary or {}).get("trial_log") or []
    seeds = row.get("seed_results") or []
    seconds = sum(t.get("seconds") or 0.0 for t in trials) + sum(
        s.get("total_seconds") or 0.0 for s in seeds)
    return {
        "distinct_configurations": (search_summary or {}).get("distinct_configurations",
                                                              0 if row.get("trials") == 0 else 1),
        "epochs_total": sum(t.get("epochs_run") or 0 for t in trials) + sum(
            s.get("epochs_run") or 0 for s in seeds),
        "wall_s": row.get("wall_seconds"),
        "cpu_s": seconds * float(cpus_per_trial),
        "gpu_s": seconds * float(gpus_per_trial),
        # attempts that failed and were retried (--max-failures), e.g. on a lost Ray node
        "lost_attempts": sum(int(t.get("failures") or 0) for t in trials)
        + int(row.get("seed_failures") or 0),
    }
