# -*- coding: utf-8 -*-
"""KGEASE: EASE with the knowledge graph as side information, in closed form.

The collective EASE of Jeunen, Van Balen and Goethals ("Closed-Form Models for Collaborative
Filtering with Side-Information", RecSys 2020, LBR): the item x feature matrix is stacked under the
user x item interaction matrix ``X`` as extra rows, and EASE (Steck, WWW 2019) is solved on the
stacked matrix. Here the features are the items' KG entities (:mod:`recbole_kgin.model.kg_features`:
``kg_hops``, ``kg_relations``, ``kg_weighting``), ``F`` is items x entities and the stacked matrix is
``[X; kg_weight * F^T]``, so with ``reg_weight`` = lambda::

    G = X^T X + kg_weight^2 * F F^T
    P = (G + lambda I)^-1
    B = I - P diag(1 / diag(P))        (the item x item weights, diag(B) = 0)
    score(u, .) = X_u B

``kg_weight = 0`` is RecBole's EASE. Items without a training interaction get weights through their
KG features, so they can be recommended. ``B`` is a dense item x item matrix in float64: the model
needs about 32 bytes per item pair at its peak (G, its inverse and B), which ``compare`` asks Ray
for (``protocol.ITEM_ITEM_MEMORY``). No training epochs, no randomness.
"""

import numpy as np

from recbole_kgin.model.kg_content import KGContentRecommender


def kg_ease_weights(interactions, features, reg_weight, kg_weight):
    """``B`` of the module docstring from the users x items ``interactions`` and the items x
    entities ``features`` (SciPy sparse or dense)."""
    if float(reg_weight) <= 0 or float(kg_weight) < 0:
        raise ValueError(f"config keys 'reg_weight' = {reg_weight} and 'kg_weight' = {kg_weight}: "
                         "expected reg_weight > 0 and kg_weight >= 0")
    gram = np.asarray((interactions.T @ interactions).todense(), dtype=np.float64) \
        if hasattr(interactions, "todense") else interactions.T @ interactions
    side = features @ features.T
    gram += float(kg_weight) ** 2 * (np.asarray(side.todense()) if hasattr(side, "todense")
                                     else side)
    gram[np.diag_indices_from(gram)] += float(reg_weight)
    inverse = np.linalg.inv(gram)
    del gram
    weights = inverse / (-np.diag(inverse))
    np.fill_diagonal(weights, 0.0)
    return weights


class KGEASE(KGContentRecommender):
    """Collective EASE over interactions and KG entities (module docstring)."""

    def item_weights(self, config, interactions, features):
        return kg_ease_weights(interactions, features, float(config["reg_weight"]),
                               float(config["kg_weight"]))
