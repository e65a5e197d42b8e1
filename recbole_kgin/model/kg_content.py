# -*- coding: utf-8 -*-
"""What the closed-form KG-content baselines (KGItemKNN, KGEASE) share: their options, RecBole's
plumbing for a model without training epochs, and scoring from an item x item weight matrix."""

import numpy as np
import scipy.sparse as sp
import torch

from recbole.model.abstract_recommender import KnowledgeRecommender
from recbole.utils import InputType, ModelType

from recbole_kgin.model.kg_features import dataset_features
from recbole_kgin.model.options import option


def kg_options(config):
    """``(hops, relation names or None, weighting)`` from ``kg_hops``, ``kg_relations`` and
    ``kg_weighting``, checked."""
    hops = int(option(config, "kg_hops", 1))
    if hops < 1:
        raise ValueError(f"config key 'kg_hops' = {hops}: expected an integer >= 1")
    relations = option(config, "kg_relations", None)
    if isinstance(relations, str):
        relations = [relations]
    weighting = str(option(config, "kg_weighting", "none")).lower()
    return hops, (list(relations) if relations else None), weighting


# Item-entity features above this count are refused: two hops through hub entities can reach most
# of a KG (17,459 of 28,258 entities per item on lastfm-kg-resplit-u2k), and the similarity of such
# near-dense features costs hours and gigabytes for no signal.
MAX_FEATURES = 50_000_000


def check_feature_count(features, hops):
    if features.nnz > MAX_FEATURES:
        raise ValueError(
            f"config key 'kg_hops' = {hops}: {features.nnz:,} item-entity features "
            f"({features.nnz / max(1, features.shape[0]):,.0f} per item) exceed {MAX_FEATURES:,}; "
            "the KG neighbourhood is nearly dense at this depth: use fewer hops or kg_relations")


class KGContentRecommender(KnowledgeRecommender):
    """A user's score of item ``i`` is ``sum_j X[u, j] W[j, i]`` over the training interactions
    ``X`` and the item x item weights ``W`` (``item_similarity``, SciPy sparse or dense) that a
    subclass computes in closed form from ``X`` and the item features (``features``). No training
    epochs (``ModelType.TRADITIONAL``: RecBole's trainer runs one pass with a constant loss)."""

    input_type = InputType.POINTWISE
    type = ModelType.TRADITIONAL

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        hops, relations, weighting = kg_options(config)
        features = dataset_features(dataset, hops, relations, weighting)
        check_feature_count(features, hops)
        self.interaction_matrix = dataset.inter_matrix(form="csr").astype(np.float64)
        self.item_similarity = self.item_weights(config, self.interaction_matrix, features)
        self.fake_loss = torch.nn.Parameter(torch.zeros(1))  # RecBole's trainer needs a parameter
        self.other_parameter_name = ["interaction_matrix", "item_similarity"]

    def item_weights(self, config, interactions, features):
        raise NotImplementedError

    def forward(self):
        pass

    def calculate_loss(self, interaction):
        return torch.nn.Parameter(torch.zeros(1))

    def _tensor(self, scores):
        return torch.from_numpy(np.asarray(scores, dtype=np.float32).ravel()).to(self.device)

    def predict(self, interaction):
        users = interaction[self.USER_ID].cpu().numpy()
        items = interaction[self.ITEM_ID].cpu().numpy()
        columns = self.item_similarity[:, items].T
        rows = self.interaction_matrix[users]
        return self._tensor(rows.multiply(sp.csr_matrix(columns)).sum(axis=1))

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID].cpu().numpy()
        scores = self.interaction_matrix[users] @ self.item_similarity
        return self._tensor(scores.toarray() if sp.issparse(scores) else scores)
