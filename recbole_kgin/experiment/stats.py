# -*- coding: utf-8 -*-
"""Statistics of a comparison, as functions of plain rows and per-user arrays (no Ray, no
RecBole): the paired test, each model against the reference, each KG variant against its model's
full-KG row, and the group table."""

import numpy as np

from recbole_kgin.experiment import groups
from recbole_kgin.experiment.per_user import as_dict
from recbole_kgin.experiment.protocol import SIGNIFICANCE_METRICS, reference_model


def paired_test(reference, other):
    """Two-sided Wilcoxon signed-rank test of ``other`` against ``reference`` (``{user: value}``)
    over the users both have (NaN values left out). Returns ``(p_value, n_users)``; p = 1.0 when
    every difference is 0."""
    from scipy.stats import wilcoxon

    users = sorted(u for u in set(reference) & set(other)
                   if np.isfinite(reference[u]) and np.isfinite(other[u]))
    if not users:
        return None, 0
    a = np.array([reference[u] for u in users])
    b = np.array([other[u] for u in users])
    if np.all(a == b):
        return 1.0, len(users)
    return float(wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue), len(users)


def p_key(column):
    return "p_value" if column == "recall@20" else f"p_value_{column}"


def add_significance(rows, means):
    """``p_value`` / ``p_value_ndcg@20`` of every finished row against the reference model
    (:func:`reference_model` over the full-KG rows); returns the reference's name."""
    reference = reference_model([r for r in rows if not r.get("base_model")])
    for row in rows:
        row["significance_reference"] = reference
        for column in SIGNIFICANCE_METRICS:
            row[p_key(column)] = None
            if row["status"] != "ok" or row["model"] == reference or reference is None:
                continue
            if column not in means[row["model"]] or column not in means[reference]:
                continue
            row[p_key(column)], row["n_users_tested"] = paired_test(
                as_dict(means[reference], column), as_dict(means[row["model"]], column))
    return reference


def add_variant_deltas(rows, means, column="recall@20"):
    """For every KG-variant row (``base_model`` set): ``delta_recall@20`` (its mean minus the same
    model's full-KG mean) and ``p_value_vs_full`` (paired over test users); full-KG rows get
    ``kg_variant`` ``full`` when they read the KG."""
    by_name = {r["model"]: r for r in rows}
    for row in rows:
        base = by_name.get(row.get("base_model"))
        row[f"delta_{column}"] = row["p_value_vs_full"] = None
        if base is None or row["status"] != "ok" or base["status"] != "ok":
            continue
        row[f"delta_{column}"] = row[column] - base[column]
        row["p_value_vs_full"], _ = paired_test(as_dict(means[base["model"]], column),
                                                as_dict(means[row["model"]], column))


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
