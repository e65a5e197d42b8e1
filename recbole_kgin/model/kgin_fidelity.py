# -*- coding: utf-8 -*-
r"""The deletion test of an explanation (fidelity): remove what the explanation ranks highest and
see whether the score falls more than when as many random parts are removed.

The parts are the item's outgoing KG edges ``(i, r, t)``. KGIN's final item representation is
``e*_i = sum_l e_i^(l)`` with ``e_i^(l) = sum_{(i,r,t)} (e_r * e_t^(l-1)) / (deg_i * n_i^(l))``
(``n`` the hop's L2 norm), so a score ``e*_u . e*_i`` splits exactly into the item's own term
``e*_u . e_i^(0)`` plus one term per outgoing edge (all paths that leave the item through it):
:func:`edge_contributions`. :func:`deletion_fidelity` removes the ``k`` edges of largest
contribution from the KG, propagates again (degrees, norms and every user's aggregates change with
them) and compares the score's drop with the mean drop of ``k`` random edges of the same item.
A faithful explanation gives a ratio above 1.
"""

import numpy as np
import torch

from recbole_kgin.model.kgin_explain import kg_edges, propagate


def edge_contributions(model, prop, user, item):
    """``(edge indices, contributions, item_self)`` of ``prop["edges"]`` leaving ``item``; the
    contributions plus ``item_self`` sum to the score ``prop["user"][user] . prop["entity"][item]``."""
    head, rel, tail = prop["edges"]
    idx = np.flatnonzero(head == item)
    u = prop["user"][user].double()
    relation = model.relation_embedding.detach().double()
    degree = float(prop["degree"][item])
    contributions = np.zeros(idx.size)
    rel_t, tail_t = torch.as_tensor(rel[idx]), torch.as_tensor(tail[idx])
    for hop, norm in enumerate(prop["entity_norm"]):
        entering = prop["entity_hops"][hop].double()
        messages = relation[rel_t] * entering[tail_t]
        contributions += (messages @ u).numpy() / (degree * float(norm[item]))
    item_self = float(u @ prop["entity_hops"][0][item].double())
    return idx, contributions, item_self


def _score_without(model, dataset, edges, drop, user, item):
    keep = np.ones(edges[0].size, dtype=bool)
    keep[drop] = False
    prop = propagate(model, dataset, edges=tuple(a[keep] for a in edges))
    return float(prop["user"][user] @ prop["entity"][item])


def top_items(prop, dataset, users):
    """Each user's best-scored item outside its training items (the padding item excluded)."""
    n_items = dataset.item_num
    scores = (prop["user"][users] @ prop["entity"][:n_items].t()).clone()
    seen = dataset.inter_matrix(form="csr")
    scores[:, 0] = -torch.inf
    for row, user in enumerate(users):
        scores[row, torch.as_tensor(seen[user].indices, dtype=torch.int64)] = -torch.inf
    return scores.argmax(dim=1).tolist()


@torch.no_grad()
def deletion_fidelity(model, dataset, n_users=50, k=3, n_random=5, seed=2020):
    """The deletion test over up to ``n_users`` seeded users, each with its top recommended item.

    Users whose item has ``k`` or fewer outgoing edges are skipped (a random choice of ``k`` would
    be the top ``k`` itself). Returns plain data: per-user drops, their means, the ratio of the
    means and the share of users whose top-``k`` drop is at least their mean random drop."""
    rng = np.random.default_rng(seed)
    edges = kg_edges(model, dataset)
    prop = propagate(model, dataset, edges=edges)
    candidates = np.arange(1, dataset.user_num)
    users = sorted(rng.choice(candidates, size=min(n_users, candidates.size), replace=False).tolist())
    items = top_items(prop, dataset, users)
    rows, skipped = [], 0
    for user, item in zip(users, items):
        idx, contributions, item_self = edge_contributions(model, prop, user, item)
        if idx.size <= k:
            skipped += 1
            continue
        score = float(prop["user"][user] @ prop["entity"][item])
        top = idx[np.argsort(-contributions)[:k]]
        drop_top = score - _score_without(model, dataset, edges, top, user, item)
        drops = [score - _score_without(model, dataset, edges,
                                        rng.choice(idx, size=k, replace=False), user, item)
                 for _ in range(n_random)]
        rows.append({"user": int(user), "item": int(item), "score": score,
                     "edges": int(idx.size), "item_self": item_self,
                     "top_contribution": float(np.sort(contributions)[::-1][:k].sum()),
                     "drop_top": drop_top, "drop_random": float(np.mean(drops))})
    top_mean = float(np.mean([r["drop_top"] for r in rows])) if rows else None
    random_mean = float(np.mean([r["drop_random"] for r in rows])) if rows else None
    return {
        "k": int(k), "random_draws": int(n_random), "seed": int(seed),
        "users": len(rows), "skipped": skipped,
        "mean_drop_top": top_mean, "mean_drop_random": random_mean,
        "ratio": (top_mean / random_mean) if rows and random_mean not in (0, None) else None,
        "share_top_at_least_random": (float(np.mean([r["drop_top"] >= r["drop_random"]
                                                     for r in rows])) if rows else None),
        "per_user": rows,
    }
