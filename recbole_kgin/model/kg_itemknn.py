# -*- coding: utf-8 -*-
"""KGItemKNN: a training-free KG-content recommender, RecBole's ItemKNN with item-item similarity
taken from the items' knowledge-graph neighbourhoods instead of their interactions.

Items are described by the KG entities within ``kg_hops`` hops (:mod:`recbole_kgin.model.kg_features`:
optionally through the relations ``kg_relations`` only, weighted by ``kg_weighting``: none, idf or
bm25). With ``X`` that item x entity matrix, ``n_j = ||X_j||`` and ``dot = X X^T``:

* ``similarity: cosine``: ``s(j, i) = dot(j, i) / (n_j n_i + shrink)``;
* ``similarity: asymmetric``: ``s(j, i) = dot(j, i) / (n_j^(2 alpha) n_i^(2 (1 - alpha)) + shrink)``
  (asymmetric cosine, Aiolli, RecSys 2013; ``alpha = 0.5`` is the cosine).

For every target item ``i``, the ``k`` most similar other items ``j`` with ``s(j, i) > 0`` are kept
(ties broken towards the lower item id), as RecBole's ItemKNN keeps its neighbours; a user's score
of ``i`` is the sum of ``s(j, i)`` over the user's training items ``j``. Items without a training
interaction are scored too: the KG is the only signal this model has.

Memory stays bounded: the similarity is computed for ``_BLOCK`` target items at a time (a dense
``n_items x _BLOCK`` block) and only the kept neighbours are stored (at most ``k`` per item), so no
dense item x item matrix exists; ranking a batch of users is one sparse product. No training
epochs (``ModelType.TRADITIONAL``), no randomness: every seed gives the same scores.
"""

import numpy as np
import scipy.sparse as sp

from recbole_kgin.model.kg_content import KGContentRecommender
from recbole_kgin.model.options import option

SIMILARITIES = ("cosine", "asymmetric")
_BLOCK = 512  # target items per similarity block


def top_k_columns(block, k, offset):
    """``(rows, cols, values)`` of the ``k`` largest positive entries of every column of the dense
    ``block`` (column ``c`` is target item ``offset + c``; ties towards the lower row)."""
    rows, cols, values = [], [], []
    n = block.shape[0]
    for c in range(block.shape[1]):
        column = block[:, c]
        positive = np.flatnonzero(column > 0)
        if len(positive) > k:
            kth = np.partition(column[positive], len(positive) - k)[len(positive) - k]
            above = positive[column[positive] > kth]
            tied = positive[column[positive] == kth][: k - len(above)]
            positive = np.sort(np.concatenate([above, tied]))
        rows.append(positive)
        cols.append(np.full(len(positive), offset + c, dtype=np.int64))
        values.append(column[positive])
    if not rows or n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(values)


def knn_similarity(features, k, shrink=0.0, similarity="cosine", alpha=0.5, block=_BLOCK):
    """The sparse ``n_items x n_items`` matrix ``W`` with ``W[j, i] = s(j, i)`` for the kept
    neighbours ``j`` of every item ``i`` (module docstring); ``features`` is items x entities."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"config key 'similarity' = {similarity!r}: expected one of "
                         f"{', '.join(SIMILARITIES)}")
    if similarity == "cosine":
        alpha = 0.5
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"config key 'alpha' = {alpha}: expected a number in [0, 1]")
    if int(k) < 1 or float(shrink) < 0:
        raise ValueError(f"config keys 'k' = {k} and 'shrink' = {shrink}: expected k >= 1 and "
                         "shrink >= 0")
    features = sp.csr_matrix(features, dtype=np.float64)
    n_items = features.shape[0]
    norms = np.sqrt(np.asarray(features.multiply(features).sum(axis=1)).ravel())
    left = norms ** (2.0 * alpha)  # of the neighbour j
    right = norms ** (2.0 * (1.0 - alpha))  # of the target i
    transposed = features.T.tocsc()
    rows, cols, values = [], [], []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        dots = (features @ transposed[:, start:stop]).toarray()  # [n_items, stop - start]
        dots[np.arange(start, stop), np.arange(stop - start)] = 0.0  # no item is its own neighbour
        denominator = np.outer(left, right[start:stop]) + float(shrink)
        sims = np.divide(dots, denominator, out=np.zeros_like(dots), where=denominator > 0)
        r, c, v = top_k_columns(sims, min(int(k), n_items), start)
        rows.append(r)
        cols.append(c)
        values.append(v)
    return sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n_items, n_items))


class KGItemKNN(KGContentRecommender):
    """Item-based k-nearest neighbours over KG features (module docstring)."""

    def item_weights(self, config, interactions, features):
        return knn_similarity(features, int(config["k"]), float(option(config, "shrink", 0.0)),
                              str(option(config, "similarity", "cosine")).lower(),
                              float(option(config, "alpha", 0.5)))
