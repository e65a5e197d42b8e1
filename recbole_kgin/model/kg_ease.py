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
import torch

from recbole.model.abstract_recommender import KnowledgeRecommender
from recbole.utils import InputType, ModelType

from recbole_kgin.model.kg_features import dataset_features
from recbole_kgin.model.kg_itemknn import kg_options


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


class KGEASE(KnowledgeRecommender):
    """Collective EASE over interactions and KG entities (module docstring)."""

    input_type = InputType.POINTWISE
    type = ModelType.TRADITIONAL

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        hops, relations, weighting = kg_options(config)
        features = dataset_features(dataset, hops, relations, weighting)
        self.interaction_matrix = dataset.inter_matrix(form="csr").astype(np.float64)
        self.item_similarity = kg_ease_weights(self.interaction_matrix, features,
                                               float(config["reg_weight"]),
                                               float(config["kg_weight"]))
        self.fake_loss = torch.nn.Parameter(torch.zeros(1))  # RecBole's trainer needs a parameter
        self.other_parameter_name = ["interaction_matrix", "item_similarity"]

    def forward(self):
        pass

    def calculate_loss(self, interaction):
        return torch.nn.Parameter(torch.zeros(1))

    def predict(self, interaction):
        users = interaction[self.USER_ID].cpu().numpy()
        items = interaction[self.ITEM_ID].cpu().numpy()
        rows = self.interaction_matrix[users]
        scores = np.asarray(rows.multiply(self.item_similarity[:, items].T).sum(axis=1)).ravel()
        return torch.from_numpy(scores.astype(np.float32)).to(self.device)

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID].cpu().numpy()
        scores = self.interaction_matrix[users] @ self.item_similarity
        return torch.from_numpy(np.asarray(scores, dtype=np.float32).ravel()).to(self.device)
