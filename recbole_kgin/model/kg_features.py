# -*- coding: utf-8 -*-
"""Item features from a knowledge graph, for the KG-content baselines (KGItemKNN, KGEASE). Pure
functions of arrays: the triplets in RecBole's internal ids in, SciPy sparse matrices out.

In RecBole's knowledge-based dataset, item ``i`` (``1 <= i < n_items``) is entity ``i``; id 0 is
padding. An item's features are its own entity and every entity within ``hops`` steps of it in
the KG, the edges taken in both directions (a track shares its artist with the artist's other
tracks whichever way the triplet points), optionally only through the relations in ``relations``.

Weights of a feature ``e`` with document frequency ``df_e`` (the number of items that have it),
over ``N`` items (the padding item excluded):

* ``none``: 1;
* ``idf``: ``log(N / df_e)``, so that a hub entity shared by every item weighs 0;
* ``bm25``: Okapi BM25 for binary term frequencies (Robertson & Zaragoza, "The Probabilistic
  Relevance Framework: BM25 and Beyond", 2009): ``idf_e * (k1 + 1) / (1 + k1 * (1 - b + b *
  len_i / avglen))`` with ``idf_e = log(1 + (N - df_e + 0.5) / (df_e + 0.5))``, ``len_i`` the
  item's feature count and the usual ``k1 = 1.2``, ``b = 0.75``.
"""

import numpy as np
import scipy.sparse as sp

WEIGHTINGS = ("none", "idf", "bm25")
BM25_K1, BM25_B = 1.2, 0.75


def entity_adjacency(heads, tails, n_entities, keep=None):
    """Binary symmetric ``n_entities x n_entities`` CSR adjacency of the triplets whose mask
    ``keep`` is true (all when None); no self-loops."""
    heads, tails = np.asarray(heads, dtype=np.int64), np.asarray(tails, dtype=np.int64)
    if keep is not None:
        heads, tails = heads[keep], tails[keep]
    rows = np.concatenate([heads, tails])
    cols = np.concatenate([tails, heads])
    off_diagonal = rows != cols
    adjacency = sp.csr_matrix((np.ones(int(off_diagonal.sum()), dtype=np.float32),
                               (rows[off_diagonal], cols[off_diagonal])),
                              shape=(n_entities, n_entities))
    adjacency.data[:] = 1.0  # duplicate edges summed above
    return adjacency


def item_entity_features(heads, tails, n_items, n_entities, hops=1, keep=None):
    """Binary ``n_items x n_entities`` CSR matrix: row ``i`` marks entity ``i`` and the entities
    within ``hops`` steps of it (row 0, the padding item, is empty)."""
    if hops < 1:
        raise ValueError(f"kg_hops must be >= 1 (got {hops})")
    adjacency = entity_adjacency(heads, tails, n_entities, keep)
    not_padding = np.ones(n_items, dtype=np.float32)
    not_padding[0] = 0.0
    reach = sp.diags(not_padding) @ sp.eye(n_items, n_entities, format="csr", dtype=np.float32)
    frontier = reach
    for _ in range(hops):
        frontier = frontier @ adjacency
        frontier.data[:] = 1.0
        reach = reach + frontier
        reach.data[:] = 1.0
    reach = sp.csr_matrix(reach)
    reach.eliminate_zeros()
    reach.sort_indices()
    return reach


def weight_features(features, weighting="none"):
    """``features`` (binary items x entities, row 0 padding) weighted as the module says."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"kg_weighting must be one of {', '.join(WEIGHTINGS)} (got {weighting!r})")
    features = sp.csr_matrix(features, dtype=np.float64)
    if weighting == "none":
        return features
    n = features.shape[0] - 1  # the padding item has no features and does not count
    df = np.asarray((features > 0).sum(axis=0)).ravel()
    nonzero = df > 0
    if weighting == "idf":
        idf = np.zeros_like(df, dtype=np.float64)
        idf[nonzero] = np.log(n / df[nonzero])
        return sp.csr_matrix(features @ sp.diags(idf))
    idf = np.log1p((n - df + 0.5) / (df + 0.5))
    lengths = np.asarray(features.sum(axis=1)).ravel()
    average = lengths[1:].mean() if n > 0 and lengths[1:].mean() > 0 else 1.0
    tf = (BM25_K1 + 1.0) / (1.0 + BM25_K1 * (1.0 - BM25_B + BM25_B * lengths / average))
    return sp.csr_matrix(sp.diags(tf) @ features @ sp.diags(idf))


def relation_mask(relations, kept_ids):
    """Mask of the triplets whose relation id is in ``kept_ids`` (None: every triplet)."""
    if kept_ids is None:
        return None
    return np.isin(np.asarray(relations), np.asarray(sorted(kept_ids)))


def dataset_features(dataset, hops=1, relation_names=None, weighting="none"):
    """The weighted item features of a RecBole knowledge-based ``dataset`` (its KG triplets,
    inverse relations included or not: edges count both ways anyway). ``relation_names``: the
    relations to follow, as named in the ``.kg`` file (``name_r``, the inverse, follows with it);
    an unknown name is refused."""
    relation = dataset.relation_field
    heads, tails, relations = dataset.head_entities, dataset.tail_entities, dataset.relations
    kept = None
    if relation_names:
        tokens = list(dataset.field2id_token[relation])
        known = {t for t in tokens if t not in ("[PAD]", "[UI-Relation]")}
        unknown = [r for r in relation_names if r not in known]
        if unknown:
            raise ValueError(f"kg_relations: unknown relation {unknown[0]!r}; the dataset has "
                             f"{', '.join(sorted(known))}")
        kept = {tokens.index(r) for r in relation_names}
        kept |= {tokens.index(f"{r}_r") for r in relation_names if f"{r}_r" in tokens}
    features = item_entity_features(heads, tails, dataset.item_num, dataset.entity_num, hops,
                                    relation_mask(relations, kept))
    return weight_features(features, weighting)
