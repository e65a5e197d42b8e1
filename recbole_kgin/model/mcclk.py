# -*- coding: utf-8 -*-
"""RecBole 1.2.1's MCCLK, runnable with or without ``torch-scatter``.

RecBole's MCCLK aggregator imports ``scatter_softmax`` and ``scatter_mean`` from torch-scatter inside
its ``forward``. This subclass (model name unchanged, so RecBole's ``MCCLK.yaml`` and trainer apply)
replaces the parameter-free aggregators by :class:`ScatterAggregator`, which computes RecBole's
formulas with torch-scatter when it imports and with the pure-torch equivalents otherwise
(``model.scatter_backend`` records which). Nothing else of the model changes.
"""

import torch

from recbole.model.knowledge_aware_recommender.mcclk import MCCLK as _RecBoleMCCLK
from recbole.model.knowledge_aware_recommender.mcclk import Aggregator as _RecBoleAggregator

from recbole_kgin.model.recbole_builtin import replace_aggregators


class ScatterAggregator(_RecBoleAggregator):
    """RecBole's MCCLK aggregation with injected scatter operations.

    Entities: ``m = e_t * e_r`` per KG edge ``(h, r, t)``; with attention, ``m`` is weighted by the
    softmax, over the edges leaving ``h``, of RecBole's ``calculate_sim_hrt`` score (one weight per
    edge, shared by all embedding columns); ``e_h' = mean of m over those edges``.
    Users: ``a_u = (A e)_u``, ``e_u' = a_u + (softmax(e_u E_r^T) E_r) * a_u``.
    """

    def __init__(self, ops, item_only=False, attention=True):
        super().__init__(item_only=item_only, attention=attention)
        self.ops = ops

    def forward(self, entity_emb, user_emb, relation_emb, edge_index, edge_type, inter_matrix):
        n_entities = entity_emb.shape[0]
        head, tail = edge_index
        edge_relation = relation_emb[edge_type]
        messages = entity_emb[tail] * edge_relation
        if self.attention:
            score = self.calculate_sim_hrt(entity_emb[head], entity_emb[tail], edge_relation)
            weight = self.ops.softmax(score, head, n_entities)  # [n_edges, 1]
            messages = weight * messages
        entity_agg = self.ops.mean(messages, head, n_entities)
        if self.item_only:
            return entity_agg

        user_agg = torch.sparse.mm(inter_matrix, entity_emb)
        relation_att = torch.softmax(user_emb @ relation_emb.t(), dim=-1)
        user_agg = user_agg + (relation_att @ relation_emb) * user_agg
        return entity_agg, user_agg


class MCCLK(_RecBoleMCCLK):
    """RecBole's MCCLK with torch-scatter made optional."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        replace_aggregators(self, ("convs", "bg_convs"), lambda ops, conv: ScatterAggregator(
            ops, conv.item_only, conv.attention))
