# -*- coding: utf-8 -*-
"""Interactions whose item has no KG entity.

RecBole 1.2.1's knowledge-based dataset silently drops every interaction whose item is not linked
to an entity of the KG (``KnowledgeBasedDataset._filter_link``). The authors' pipeline keeps them:
such an item simply has no KG neighbours. :func:`install` makes the drop visible (a warning with
the counts) and adds the switch ``kg_keep_unlinked_items``:

* ``False`` (default, RecBole's behaviour): the interactions are dropped, with a warning;
* ``True``: they are kept; their items get entity rows of their own without any triplet.

The filter is replaced on RecBole's class itself (not a subclass), so datasets saved and reloaded
by RecBole keep their class and nothing else changes.
"""

from logging import getLogger

from recbole.data.dataset import KnowledgeBasedDataset

_original_filter_link = KnowledgeBasedDataset._filter_link


def _unlinked(dataset):
    items = dataset.inter_feat[dataset.iid_field]
    mask = ~items.isin(dataset.item2entity.keys())
    return int(mask.sum()), int(items[mask].nunique())


def _drop_dangling_links(dataset):
    """RecBole's clean-up of link rows (item without interactions or entity without triplets)."""
    item_tokens = dataset._get_rec_item_token()
    entity_tokens = dataset._get_entity_token()
    for item, entity in list(dataset.item2entity.items()):
        if item not in item_tokens or entity not in entity_tokens:
            del dataset.item2entity[item]
            dataset.entity2item.pop(entity, None)


def _filter_link(self):
    keep = bool(self.config["kg_keep_unlinked_items"]) if (
        "kg_keep_unlinked_items" in self.config) else False
    logger = getLogger()
    if keep:
        _drop_dangling_links(self)
        n_inter, n_items = _unlinked(self)
        if n_inter:
            logger.warning(
                f"kg_keep_unlinked_items: kept {n_inter} interactions of {n_items} items that have "
                "no KG entity; those items have no KG neighbours")
        return
    _drop_dangling_links(self)
    n_inter, n_items = _unlinked(self)
    _original_filter_link(self)
    if n_inter:
        logger.warning(
            f"dropped {n_inter} interactions of {n_items} items that have no KG entity (RecBole's "
            "knowledge-aware dataset keeps linked items only); set kg_keep_unlinked_items=True to "
            "keep them, the items then having no KG neighbours, as in the authors' code")


def install():
    """Idempotent."""
    KnowledgeBasedDataset._filter_link = _filter_link
