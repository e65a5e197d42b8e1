# -*- coding: utf-8 -*-
"""KG controls: seeded transforms of a knowledge graph's triplets, as pure functions of arrays.

``compare --kg-variants`` retrains the knowledge-aware models on a transformed KG with the same
split, seeds and budget, to show how much of a model's accuracy its KG really carries (the
question of KG4RecEval: Zhang et al., "Does Knowledge Graph Really Matter for Recommender
Systems?", TOIS 2025). Only the triplets change: the interactions and the item-entity links are
never touched (:mod:`recbole_kgin.data.kg_links` keeps every link whose entity was in the KG
before the transform, so no interaction is dropped because its item lost its triplets).

Variants (``VARIANTS``):

* ``full``: the KG as it is;
* ``none``: no KG information: every item's entity is linked to itself alone, by one relation (the
  smallest relation id), and no other triplet is left. An empty KG would be purer, but the models
  that sample KG triplets in training (KGIN, KGAT, CFKG, CKE, KGCN, ...) cannot run on one; the
  self-loops give every model the same least KG, which tells no item from another
  (KGItemKNN and KGEASE ignore self-loops, so for them it is the empty KG);
* ``shuffle-relations``: the relation column permuted across triplets (the graph's edges stay,
  their types are scrambled; every relation keeps its count);
* ``random-tails``: every tail replaced by an entity drawn uniformly from the KG's entities (the
  heads and relations stay);
* ``shuffle-tails``: the tail column permuted across triplets, the degree-preserving form of
  ``random-tails`` (every entity keeps its in- and out-degree, the edges are rewired);
* ``drop-50``: a seeded half of the triplets removed (``n // 2`` of ``n``).
"""

import numpy as np

VARIANTS = ("full", "none", "shuffle-relations", "random-tails", "shuffle-tails", "drop-50")
DESCRIPTIONS = {
    "full": "the KG as converted",
    "none": "no KG information: one self-loop per item entity, nothing else",
    "shuffle-relations": "relation ids permuted across triplets",
    "random-tails": "tails replaced by uniformly random KG entities",
    "shuffle-tails": "tails permuted across triplets (degree-preserving rewiring)",
    "drop-50": "a seeded half of the triplets removed",
}


def check_variant(name):
    """``name`` when it is a known variant, else ``ValueError`` naming the known ones."""
    if name not in VARIANTS:
        raise ValueError(f"unknown KG variant {name!r}; known: {', '.join(VARIANTS)}")
    return name


def transform(heads, relations, tails, variant, seed, items=None):
    """The triplets ``(heads, relations, tails)`` (equal-length 1-d arrays of any dtype, e.g. entity
    ids) under ``variant``, drawn with ``numpy.random.default_rng(seed)``. ``items``: the entities
    of the items, needed by ``none``. Returns three new arrays; the inputs are not modified. The
    same arguments always give the same triplets."""
    check_variant(variant)
    heads, relations, tails = (np.asarray(a).copy() for a in (heads, relations, tails))
    if not len(heads) == len(relations) == len(tails):
        raise ValueError("heads, relations and tails must have the same length")
    n = len(heads)
    rng = np.random.default_rng(seed)
    if variant == "full":
        return heads, relations, tails
    if variant == "none":
        if items is None:
            raise ValueError("KG variant 'none' needs the item entities")
        items = np.unique(np.asarray(items).astype(heads.dtype))
        relation = relations.min() if n else np.zeros(1, relations.dtype)[0]
        return items.copy(), np.full(len(items), relation, dtype=relations.dtype), items.copy()
    if variant == "shuffle-relations":
        return heads, relations[rng.permutation(n)], tails
    if variant == "random-tails":
        entities = np.unique(np.concatenate([heads, tails]))
        return heads, relations, entities[rng.integers(0, len(entities), size=n)]
    if variant == "shuffle-tails":
        return heads, relations, tails[rng.permutation(n)]
    keep = np.sort(rng.permutation(n)[: n - n // 2])  # drop-50
    return heads[keep], relations[keep], tails[keep]
