# -*- coding: utf-8 -*-
"""Applies the configured KG variant (:mod:`recbole_kgin.data.kg_variants`) inside RecBole's
knowledge-based dataset.

The transform runs after RecBole has filtered and remapped the data (so the interactions, the
item-entity links and the entity and relation vocabularies are those of the full KG, whatever the
variant keeps) and before RecBole adds the inverse relations (so ``kg_reverse_r`` reverses the
transformed triplets). An entity that loses every triplet stays in the vocabulary without
neighbours. Configuration: ``kg_variant`` (default ``full``: nothing changes) and
``kg_variant_seed`` (``~``: the split seed, else RecBole's ``seed``).

Installed on RecBole's class itself, like :mod:`recbole_kgin.data.kg_links`, so saved datasets
keep their class; a saved dataset holds its transformed triplets.
"""

from logging import getLogger

import pandas as pd

from recbole.data.dataset import KnowledgeBasedDataset

from recbole_kgin.data.kg_variants import transform

_original_add_auxiliary_relation = KnowledgeBasedDataset._add_auxiliary_relation


def _config_value(config, key, default=None):
    return config[key] if key in config and config[key] is not None else default


def variant_seed(config):
    """``kg_variant_seed``, else the split seed, else ``seed``."""
    seed = _config_value(config, "kg_variant_seed")
    if seed is None:
        seed = _config_value(config, "split_seed", config["seed"])
    return int(seed)


def _apply_variant(self):
    variant = str(_config_value(self.config, "kg_variant", "full"))
    if variant == "full":
        return
    fields = (self.head_entity_field, self.relation_field, self.tail_entity_field)
    before = len(self.kg_feat)
    token2id = self.field2token_id[self.entity_field]
    items = [token2id[entity] for entity in self.entity2item]
    heads, relations, tails = transform(*(self.kg_feat[f].to_numpy() for f in fields), variant,
                                        variant_seed(self.config), items=items)
    self.kg_feat = pd.DataFrame(dict(zip(fields, (heads, relations, tails))))
    getLogger().info(f"kg_variant {variant}: {before} triplets -> {len(self.kg_feat)}")


def _add_auxiliary_relation(self):
    _apply_variant(self)
    _original_add_auxiliary_relation(self)


def install():
    """Idempotent."""
    KnowledgeBasedDataset._add_auxiliary_relation = _add_auxiliary_relation
