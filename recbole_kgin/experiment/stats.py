# -*- coding: utf-8 -*-
"""Statistics of a comparison, as functions of plain rows and per-user arrays (no Ray, no
RecBole): the paired test, each model against the reference, each KG variant against its model's
full-KG row, and the group table."""

import numpy as np

from recbole_kgin.experiment import groups
from recbole_kgin.experiment.per_user import as_dict
from recbole_kgin.experiment.protocol import (SIGNIFICANCE_METRICS, mean_std, reference_model,
                                              variance_components)


def _aligned(reference, other):
    """The values of the users both ``{user: value}`` maps have, finite in both, as two arrays."""
    users = sorted(u for u in set(reference) & set(other)
                   if np.isfinite(reference[u]) and np.isfinite(other[u]))
    return (np.array([reference[u] for u in users], dtype=np.float64),
            np.array([other[u] for u in users], dtype=np.float64))


def paired_test(reference, other):
    """Two-sided Wilcoxon signed-rank test of ``other`` against ``reference`` (``{user: value}``)
    over the users both have (NaN values left out). Returns ``(p_value, n_users)``; p = 1.0 when
    every difference is 0."""
    return _wilcoxon(*_aligned(reference, other))


def _wilcoxon(a, b):
    """``(p_value, n)`` of the paired arrays ``a`` and ``b`` (see :func:`paired_test`)."""
    from scipy.stats import wilcoxon

    if not len(a):
        return None, 0
    if np.all(a == b):
        return 1.0, len(a)
    return float(wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue), len(a)


BOOTSTRAP = {"resamples": 2000, "level": 0.95}


def paired_comparison(reference, other, seed):
    """Everything a table says of ``other`` against ``reference`` (``{user: value}``): the
    Wilcoxon p-value, the users, the mean per-user difference with its seeded paired-bootstrap
    95 % interval, and the rank-biserial effect size."""
    a, b = _aligned(reference, other)
    p, n = _wilcoxon(a, b)
    delta, low, high = paired_bootstrap_ci(a, b, BOOTSTRAP["resamples"], seed, BOOTSTRAP["level"])
    return {"p": p, "n": n, "delta": delta, "ci_low": low, "ci_high": high,
            "effect": rank_biserial(a, b) if n else None}


def p_key(column):
    return "p_value" if column == "recall@20" else f"p_value_{column}"


SIZE_FIELDS = ("delta", "ci_low", "ci_high", "effect")


def add_significance(rows, means, seed=0):
    """Every finished row against the reference model (:func:`reference_model` over the full-KG
    rows): ``p_value`` / ``p_value_ndcg@20`` and ``n_users_tested``. Size, per significance metric
    ``m``: ``delta_m`` (mean per-user difference), ``ci_low_m`` / ``ci_high_m`` (paired bootstrap)
    and ``effect_m`` (rank-biserial), against the reference for a full-KG row and against the same
    model's full-KG row for a KG-variant row (``delta_reference`` names which), whose
    ``p_value_vs_full`` is that test's p-value. Returns the reference's name."""
    reference = reference_model([r for r in rows if not r.get("base_model")])
    by_name = {r["model"]: r for r in rows}
    for row in rows:
        row["significance_reference"] = reference
        base = by_name.get(row.get("base_model"))
        target = base["model"] if base is not None else reference
        row["delta_reference"] = None
        row["p_value_vs_full"] = None
        for column in SIGNIFICANCE_METRICS:
            row[p_key(column)] = None
            for field in SIZE_FIELDS:
                row[f"{field}_{column}"] = None
            if row["status"] != "ok" or reference is None:
                continue
            if row["model"] != reference and column in means[row["model"]] and \
                    column in means.get(reference, {}):
                row[p_key(column)], row["n_users_tested"] = paired_test(
                    as_dict(means[reference], column), as_dict(means[row["model"]], column))
            if target is None or target == row["model"] or target not in means or \
                    (base is not None and base["status"] != "ok"):
                continue
            result = paired_comparison(as_dict(means[target], column),
                                       as_dict(means[row["model"]], column), seed)
            row["delta_reference"] = target
            for field in SIZE_FIELDS:
                row[f"{field}_{column}"] = result[field]
            if base is not None and column == "recall@20":
                row["p_value_vs_full"] = result["p"]
    return reference


def group_rows(rows, means, reference, k=groups.GROUP_K):
    """One row per (finished model, group): ``model, group, users, pairs, recall@k, ndcg@k,
    p_value`` (Recall@k of the group's users against the reference model's, paired)."""
    out = []
    ref_values = groups.group_values(means[reference], k) if reference in means else None
    for row in rows:
        name = row["model"]
        if row["status"] != "ok" or "pairs_cold" not in means.get(name, {}):
            continue
        values = groups.group_values(means[name], k)
        users = means[name]["users"].tolist()
        for group, value in values.items():
            p = None
            if ref_values is not None and name != reference and group in ref_values:
                ref = ref_values[group]
                ref_users = means[reference]["users"].tolist()
                p, _ = paired_test(
                    {u: v for u, v, m in zip(ref_users, ref["recall"], ref["mask"]) if m},
                    {u: v for u, v, m in zip(users, value["recall"], value["mask"]) if m})
            out.append({"model": name, "group": group, "users": value["users"],
                        "pairs": value["pairs"], f"recall@{k}": value[f"recall@{k}"],
                        f"ndcg@{k}": value[f"ndcg@{k}"], "p_value": p,
                        "reference": reference})
    return out


def cold_share(means):
    """Share of test pairs whose item never occurs in training, from any model's seed means (the
    split is the same for every model)."""
    for values in means.values():
        if "pairs_cold" in values:
            cold, warm = values["pairs_cold"].sum(), values["pairs_warm"].sum()
            return float(cold / (cold + warm)) if cold + warm else None
    return None


# ---------------------------------------------------------------------------------------------
# multiplicity, size


CORRECTIONS = ("holm", "bh", "none")


def adjust(p_values, method="holm"):
    """Adjusted p-values of one family (``None`` entries are left out and stay ``None``):
    Holm-Bonferroni (step-down, family-wise error), Benjamini-Hochberg (step-up, false discovery
    rate) or none. Adjusted values never exceed 1 and keep the order of the raw ones."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; known: {', '.join(CORRECTIONS)}")
    index = [i for i, p in enumerate(p_values) if p is not None]
    out = [None] * len(p_values)
    if not index:
        return out
    p = np.array([float(p_values[i]) for i in index])
    m = len(p)
    if method == "none":
        adjusted = p
    elif method == "holm":
        order = np.argsort(p, kind="stable")
        stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
    else:
        order = np.argsort(p, kind="stable")[::-1]  # largest first
        stepped = np.minimum.accumulate(m / np.arange(m, 0, -1) * p[order])
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
    for i, value in zip(index, adjusted):
        out[i] = float(value)
    return out


def paired_bootstrap_ci(a, b, resamples=2000, seed=0, level=0.95, chunk=None):
    """Mean of the paired differences ``b - a`` and its percentile bootstrap interval over
    ``resamples`` resamples of the pairs (seeded: the same seed gives the same interval).
    Vectorised in chunks of resamples, so memory stays near ``chunk x n`` indices.
    Returns ``(mean, low, high)``."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    n = len(d)
    if n == 0:
        return None, None, None
    rng = np.random.default_rng(seed)
    chunk = chunk or max(1, min(resamples, 2**24 // max(n, 1)))
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        means[start:start + size] = d[rng.integers(0, n, size=(size, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(d.mean()), float(low), float(high)


def rank_biserial(a, b):
    """Matched-pairs rank-biserial correlation of ``b`` against ``a``: ``(R+ - R-) / (R+ + R-)``,
    the sums of the ranks of ``|b - a|`` over the positive and the negative differences, zero
    differences left out (as the Wilcoxon test with ``zero_method="wilcox"``); in [-1, 1], positive
    when ``b`` tends to be larger. 0 when every difference is 0."""
    from scipy.stats import rankdata

    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    d = d[d != 0]
    if not len(d):
        return 0.0
    ranks = rankdata(np.abs(d))
    positive, negative = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((positive - negative) / (positive + negative))


FAMILY_KEYS = ("p_value", "p_value_ndcg@20", "p_value_vs_full")


def correct_family(rows, group_table, method="holm"):
    """Adjust every p-value one comparison reports as one family: each row's ``p_value``,
    ``p_value_ndcg@20`` and ``p_value_vs_full`` and each group row's ``p_value``; writes
    ``<key>_adj`` beside each. Returns the family's size."""
    slots = [(row, key) for row in rows for key in FAMILY_KEYS if row.get(key) is not None]
    slots += [(g, "p_value") for g in group_table if g.get("p_value") is not None]
    adjusted = adjust([holder[key] for holder, key in slots], method)
    for holder in [*rows, *group_table]:
        for key in FAMILY_KEYS:
            if key in holder:
                holder[f"{key}_adj"] = None
    for (holder, key), value in zip(slots, adjusted):
        holder[f"{key}_adj"] = value
    return len(slots)


def add_split_statistics(rows, split_seeds):
    """``<metric>_splits_mean`` / ``_splits_std`` over the split means (the first split's row and
    every other split's runs) and ``variance_<metric>`` (seed and split components) of every
    finished full-KG row, for the significance metrics."""
    if len(split_seeds) < 2:
        return
    for row in rows:
        if row["status"] != "ok" or row.get("base_model"):
            continue
        others = [s for s in (row.get("splits") or {}).values() if s.get("status") == "ok"]
        for column in SIGNIFICANCE_METRICS:
            per_split = [{"mean": row[column], "std": row.get(f"{column}_std")}] + [
                {"mean": s.get(column), "std": s.get(f"{column}_std")} for s in others]
            mean, std = mean_std([p["mean"] for p in per_split])
            row[f"{column}_splits_mean"], row[f"{column}_splits_std"] = mean, std
            row[f"variance_{column}"] = variance_components(per_split, column)
        row["splits_done"] = 1 + len(others)
