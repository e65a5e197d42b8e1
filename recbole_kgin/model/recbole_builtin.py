# -*- coding: utf-8 -*-
"""RecBole 1.2.1's own KGIN, runnable with or without ``torch-scatter``, as model ``RecBoleKGIN``;
and the scatter operations shared with the MCCLK override (:mod:`recbole_kgin.model.mcclk`).

It is the baseline for this package's KGIN, so its mathematics are kept as RecBole wrote them,
including the faults listed in the project notes (node dropout at evaluation, the message-dropout
rate used for interaction dropout, intents attending over the padding and user-item relations).

The only thing changed: RecBole's aggregator imports ``torch_scatter.scatter_mean`` inside its
``forward``, and torch-scatter has no wheels for current torch. :class:`RecBoleKGIN` swaps each
(parameter-free) aggregator for :class:`ScatterMeanAggregator`, which computes the same two
aggregations with ``torch_scatter.scatter_mean`` when that imports, else with an equivalent
``index_add`` mean. ``model.scatter_backend`` says which one was used (``"torch_scatter"`` or
``"torch"``). RecBole's defaults (its ``KGIN.yaml``) apply; the config maps the name onto them.
"""

from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from recbole.model.knowledge_aware_recommender.kgin import KGIN as _RecBoleKGIN
from recbole.model.knowledge_aware_recommender.kgin import Aggregator as _RecBoleAggregator


def torch_scatter_mean(src, index, dim_size):
    """Mean of the rows of ``src`` grouped by ``index`` into ``dim_size`` rows (0 where a group is
    empty), like ``torch_scatter.scatter_mean(src, index, dim=0, dim_size=dim_size)``."""
    total = torch.zeros((dim_size,) + tuple(src.shape[1:]), dtype=src.dtype, device=src.device)
    total = total.index_add(0, index, src)
    count = torch.bincount(index, minlength=dim_size).clamp(min=1).to(src.dtype)
    return total / count.view((dim_size,) + (1,) * (src.dim() - 1))


def torch_scatter_softmax(src, index, dim_size):
    """Softmax of ``src`` (2-D) over the rows that share an ``index``, column by column, like
    ``torch_scatter.scatter_softmax(src, index, dim=0)``. The per-group maximum is subtracted for
    stability only (softmax does not depend on it), so it is treated as a constant."""
    rows = index.unsqueeze(1).expand_as(src)
    shift = torch.full((dim_size, src.shape[1]), float("-inf"), dtype=src.dtype, device=src.device)
    shift = shift.scatter_reduce(0, rows, src.detach(), reduce="amax", include_self=True)
    exp = (src - shift.gather(0, rows)).exp()
    total = torch.zeros((dim_size, src.shape[1]), dtype=src.dtype, device=src.device)
    total = total.scatter_add(0, rows, exp)
    return exp / total.gather(0, rows)


class ScatterOps(NamedTuple):
    """The grouped operations RecBole's KGIN and MCCLK take from torch-scatter."""

    backend: str  # "torch_scatter" or "torch"
    mean: Callable  # mean(src, index, dim_size)
    softmax: Callable  # softmax(src, index, dim_size)


def _torch_scatter_ops():
    from torch_scatter import scatter_mean, scatter_softmax

    def mean(src, index, dim_size):
        return scatter_mean(src=src, index=index, dim_size=dim_size, dim=0)

    def softmax(src, index, dim_size):
        return scatter_softmax(src, index=index, dim=0, dim_size=dim_size)

    return ScatterOps("torch_scatter", mean, softmax)


def scatter_ops():
    """torch-scatter's operations when it imports, else the pure-torch equivalents above."""
    try:
        return _torch_scatter_ops()
    except (ImportError, OSError):  # not installed, or built for another torch
        return ScatterOps("torch", torch_scatter_mean, torch_scatter_softmax)


def replace_aggregators(model, lists, make):
    """Swap the aggregators of RecBole's ``model.gcn``: every module in each ``ModuleList`` named in
    ``lists`` (missing ones are skipped) becomes ``make(ops, old_module)``. Records the scatter
    backend as ``model.scatter_backend``."""
    ops = scatter_ops()
    model.scatter_backend = ops.backend
    for name in lists:
        old = getattr(model.gcn, name, None)
        if old is not None:
            setattr(model.gcn, name, nn.ModuleList(make(ops, conv) for conv in old))


class ScatterMeanAggregator(_RecBoleAggregator):
    """RecBole's KGIN aggregation with an injected scatter-mean (RecBole's formulas):

    entities ``e_h' = mean over KG edges (h, r, t) of e_t * e_r``; users ``a_u = (A e)_u``,
    ``e_u' = a_u * (softmax_p(e_u . l_p) softmax(W) E_r) + a_u``.
    """

    def __init__(self, scatter_mean):
        super().__init__()
        self.scatter_mean = scatter_mean

    def forward(self, entity_emb, user_emb, latent_emb, relation_emb, edge_index, edge_type,
                interact_mat, disen_weight_att):
        head, tail = edge_index
        messages = entity_emb[tail] * relation_emb[edge_type]
        entity_agg = self.scatter_mean(messages, head, entity_emb.shape[0])

        user_intent = torch.softmax(user_emb @ latent_emb.t(), dim=1)  # [n_users, n_factors]
        intents = torch.softmax(disen_weight_att, dim=-1) @ relation_emb  # [n_factors, d]
        user_agg = torch.sparse.mm(interact_mat, entity_emb)
        user_agg = (user_intent @ intents) * user_agg + user_agg
        return entity_agg, user_agg


class RecBoleKGIN(_RecBoleKGIN):
    """RecBole's KGIN; trained by RecBole's ``KGTrainer`` like the original."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        replace_aggregators(self, ("convs",), lambda ops, _: ScatterMeanAggregator(ops.mean))
