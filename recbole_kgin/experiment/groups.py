# -*- coding: utf-8 -*-
"""Group metrics: where a model wins or loses. Pure functions of arrays (no RecBole, no Ray).

Two kinds of groups, both over the test set:

* **pair groups** split each user's test pairs by their item: ``cold`` (the item never occurs in
  training) and ``warm`` (it does); ``head`` (the item is among the 20 % most frequent training
  items, ties towards the lower item id) and ``tail`` (the rest). A user's pair-level
  Recall@K of group ``g`` counts the hits among the user's pairs of kind ``g`` in the top K and
  divides by their number; NDCG@K is RecBole's NDCG with only those pairs relevant. A user
  without a pair of kind ``g`` has no value (NaN) and is left out of that group's mean. Per user,
  the hits of ``cold`` and ``warm`` (or ``head`` and ``tail``) add up to the user's hits.
* **user groups** split the test users by training activity (interactions in training) into
  quartiles ``activity-q1`` (least active) to ``activity-q4``; a group's value is the mean of its
  users' ordinary Recall@K / NDCG@K, so the user-weighted mean of the quartiles is the overall value.
"""

import numpy as np

PAIR_GROUPS = ("cold", "warm", "head", "tail")
HEAD_SHARE = 0.2
QUARTILES = ("activity-q1", "activity-q2", "activity-q3", "activity-q4")
GROUP_K = 20


def head_items(train_counts, share=HEAD_SHARE):
    """Boolean mask over items (index 0 = RecBole's padding item, never head): the ``ceil(share *
    n)`` items with the most training interactions, ties towards the lower item id."""
    counts = np.asarray(train_counts)
    n = len(counts) - 1
    order = np.argsort(-counts[1:], kind="stable") + 1
    mask = np.zeros(len(counts), dtype=bool)
    mask[order[: int(np.ceil(share * n))]] = True
    return mask


def item_kinds(train_counts):
    """``{group: boolean mask over items}`` of the pair groups (module docstring)."""
    counts = np.asarray(train_counts)
    head = head_items(counts)
    return {"cold": counts == 0, "warm": counts > 0, "head": head, "tail": ~head}


def _discounts(k):
    return 1.0 / np.log2(np.arange(2, k + 2))


def pair_group_metrics(topk, positives, in_group, k=GROUP_K):
    """Per user: ``(pairs, hits, recall, ndcg)`` at ``k`` restricted to the test pairs whose item
    is in ``in_group`` (boolean mask over item ids). ``topk``: ``[users, >= k]`` ranked item ids;
    ``positives``: one array of test item ids per user. recall / ndcg are NaN without a pair."""
    topk = np.asarray(topk)[:, :k]
    users = len(positives)
    pairs = np.zeros(users, dtype=np.int64)
    hits = np.zeros(users, dtype=np.int64)
    dcg = np.zeros(users)
    discounts = _discounts(k)
    for u, items in enumerate(positives):
        relevant = np.unique(np.asarray(items)[in_group[np.asarray(items)]])
        pairs[u] = len(relevant)
        if not len(relevant):
            continue
        hit = np.isin(topk[u], relevant)
        hits[u] = int(hit.sum())
        dcg[u] = float(discounts[hit].sum())
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(pairs, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(pairs > 0, hits / np.maximum(pairs, 1), np.nan)
        ndcg = np.where(pairs > 0, dcg / np.where(ideal > 0, ideal, 1.0), np.nan)
    return pairs, hits, recall, ndcg


def per_user_group_arrays(topk, positives, train_counts, k=GROUP_K):
    """The per-user columns a final run saves beside its metrics: ``pairs_<g>``, ``hits_<g>@k``,
    ``recall_<g>@k`` and ``ndcg_<g>@k`` for every pair group."""
    out = {}
    for group, mask in item_kinds(train_counts).items():
        pairs, hits, recall, ndcg = pair_group_metrics(topk, positives, mask, k)
        out[f"pairs_{group}"] = pairs
        out[f"hits_{group}@{k}"] = hits
        out[f"recall_{group}@{k}"] = recall
        out[f"ndcg_{group}@{k}"] = ndcg
    return out


def activity_quartiles(activity):
    """Quartile label (0 to 3) of every user by ``activity`` (training interactions): users sorted
    by activity (ties towards the earlier user) and cut into four groups as equal as possible, so
    that users of equal activity may sit in neighbouring quartiles but every quartile is filled."""
    activity = np.asarray(activity)
    order = np.argsort(activity, kind="stable")
    labels = np.empty(len(activity), dtype=np.int64)
    for q, chunk in enumerate(np.array_split(order, 4)):
        labels[chunk] = q
    return labels


def group_values(per_user, k=GROUP_K):
    """``{group: {"users", "pairs", "recall@k", "ndcg@k", "mask", "recall", "ndcg"}}`` from one
    model's seed-averaged per-user columns (arrays over the same users): the pair groups and the
    activity quartiles. ``mask`` marks the users that count in the group, ``recall`` / ``ndcg``
    are their per-user values (for paired tests)."""
    out = {}
    for group in PAIR_GROUPS:
        recall = np.asarray(per_user[f"recall_{group}@{k}"], dtype=np.float64)
        ndcg = np.asarray(per_user[f"ndcg_{group}@{k}"], dtype=np.float64)
        mask = np.asarray(per_user[f"pairs_{group}"]) > 0
        out[group] = _summary(mask, recall, ndcg, np.asarray(per_user[f"pairs_{group}"]), k)
    labels = activity_quartiles(per_user["train_count"])
    recall = np.asarray(per_user[f"recall@{k}"], dtype=np.float64)
    ndcg = np.asarray(per_user[f"ndcg@{k}"], dtype=np.float64)
    pairs = np.asarray(per_user["test_count"])
    for q, group in enumerate(QUARTILES):
        out[group] = _summary(labels == q, recall, ndcg, pairs, k)
    return out


def _summary(mask, recall, ndcg, pairs, k):
    users = int(mask.sum())
    return {"users": users, "pairs": int(pairs[mask].sum()),
            f"recall@{k}": float(recall[mask].mean()) if users else None,
            f"ndcg@{k}": float(ndcg[mask].mean()) if users else None,
            "mask": mask, "recall": recall, "ndcg": ndcg}


def recall_from_topk(topk, positives, k):
    """Per-user Recall@k from ranked lists (RecBole's definition: hits / test pairs)."""
    topk = np.asarray(topk)[:, :k]
    return np.array([np.isin(topk[u], np.asarray(items)).sum() / len(np.unique(items))
                     for u, items in enumerate(positives)])
