# -*- coding: utf-8 -*-
"""RecBole's CFKG with a full-ranking evaluation computed for all items at once.

RecBole 1.2.1's CFKG has no ``full_sort_predict``, so RecBole's trainer ranks a batch of users by
repeating every user once per item and calling ``predict`` on the ``users x items`` pairs, each pair
looked up in the embedding tables on its own: 36 s per validation pass of full-scale Last-FM on an
H200, against 1.0 s with this class (BENCHMARKS.md §13). The score is
the same function of ``user + r_buy`` and the item's entity vector for every item, so
:meth:`CFKG.full_sort_predict` computes it for all items together:

* ``inner_product``: ``(user + r_buy) . item``, a matrix product;
* ``transe``: ``-|| user + r_buy - item ||_2``, ``torch.cdist`` on the difference vectors (not the
  expanded ``|a|^2 - 2 a.b + |b|^2`` form, which loses precision for close vectors).

The scores equal RecBole's ``predict`` on every pair to float rounding (tested, both loss functions,
float64 and float32, CPU and CUDA). ``cfkg_fast_full_sort: False`` scores the pairs with RecBole's
``predict``, 4,096 at a time, as RecBole's trainer does at RecBole's evaluation batch. Training
(``calculate_loss``) and ``predict`` are RecBole's, unchanged.
"""

import torch

from recbole.model.knowledge_aware_recommender.cfkg import CFKG as RecBoleCFKG

from recbole_kgin.model.options import bool_option

# (user, item) pairs per ``predict`` call of the plain path (RecBole's CFKG.yaml batch)
_PLAIN_PAIRS = 4096


class CFKG(RecBoleCFKG):
    """RecBole's CFKG with :meth:`full_sort_predict` (module docstring). The class keeps RecBole's
    name, so RecBole's ``CFKG.yaml`` and trainer apply unchanged."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.fast_full_sort = bool_option(config, "cfkg_fast_full_sort")

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID]
        if not self.fast_full_sort:
            pair_users = users.repeat_interleave(self.n_items)
            pair_items = torch.arange(self.n_items, device=users.device).repeat(users.numel())
            return torch.cat([
                self.predict({self.USER_ID: pair_users[start:start + _PLAIN_PAIRS],
                              self.ITEM_ID: pair_items[start:start + _PLAIN_PAIRS]})
                for start in range(0, pair_users.numel(), _PLAIN_PAIRS)])
        anchor = self.user_embedding(users) + self.relation_embedding.weight[-1]  # [B, d]
        items = self.entity_embedding.weight[:self.n_items]  # item ids are their entity ids
        if self.loss_function == "transe":
            scores = -torch.cdist(anchor.unsqueeze(0), items.unsqueeze(0),
                                  compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)
        else:
            scores = anchor @ items.T
        return scores.reshape(-1)
