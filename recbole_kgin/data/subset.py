"""Leak-free subsets: the item catalogue, the users and the KG of a subset, and the densities that
say whether a subset still resembles its parent. Pure functions of arrays.

A subset is drawn *before* any split. Its catalogue is a set of item ids drawn from the id list
(never from the interactions, so an item that only occurs in held-out pairs is as likely to be drawn
as any other), optionally as whole groups of items that share an entity through one relation (all
tracks of an artist), so that siblings are not cut at the border. Its KG is the ``hops``-hop
neighbourhood of the catalogue. Neither depends on which pairs later become valid or test pairs.
"""

from __future__ import annotations

import numpy as np

from recbole_kgin.data.common import ConvertError


def relation_id(spec: str, names: list[str] | None, n_relations: int) -> int:
    """The relation named by ``spec``: a remap id, an original id, or the unique original id that
    ends in ``spec`` after a ``.`` or ``/`` (``music.recording.artist`` or ``artist`` for
    ``http://rdf.freebase.com/ns/music.recording.artist``)."""
    text = str(spec).strip()
    if text.isdigit():
        rid = int(text)
        if rid >= n_relations:
            raise ConvertError(f"--item-groups {spec}: relation id out of range "
                               f"(the KG has relations 0..{n_relations - 1})")
        return rid
    if not names:
        raise ConvertError(f"--item-groups {spec}: no relation_list.txt to look the name up in; "
                           "give the relation's id")
    exact = [k for k, name in enumerate(names) if name == text]
    if exact:
        return exact[0]
    tail = [k for k, name in enumerate(names)
            if name.endswith("." + text) or name.endswith("/" + text)]
    if len(tail) == 1:
        return tail[0]
    if not tail:
        raise ConvertError(f"--item-groups {spec}: no relation of that name in relation_list.txt")
    raise ConvertError(f"--item-groups {spec}: ambiguous, it names relations "
                       + ", ".join(str(k) for k in tail))


def item_groups(kg: np.ndarray, n_items: int, relation: int) -> np.ndarray:
    """A group label per item id: the smallest entity joined to the item by ``relation`` (as head
    or tail), or a label of its own (negative) for an item without such an edge."""
    group = np.full(n_items, -1, dtype=np.int64)
    edges = kg[kg[:, 1] == relation]
    for side, other in ((0, 2), (2, 0)):
        item, entity = edges[:, side], edges[:, other]
        is_item = item < n_items
        item, entity = item[is_item], entity[is_item]
        if item.size == 0:
            continue
        order = np.lexsort((entity, item))
        item, entity = item[order], entity[order]
        first = np.ones(item.size, dtype=bool)
        first[1:] = item[1:] != item[:-1]
        item, entity = item[first], entity[first]
        unset = group[item] == -1
        group[item[unset]] = entity[unset]
    alone = np.flatnonzero(group == -1)
    group[alone] = -(alone + 2)
    return group


def draw_items(n_items: int, n: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the drawn catalogue: ``n`` item ids, or with ``groups`` whole groups in a
    seeded order until at least ``n`` items are drawn (the last group is kept whole)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(n_items, dtype=bool)
    if groups is None:
        mask[rng.choice(n_items, size=n, replace=False)] = True
        return mask
    labels, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(labels.size)
    reach = np.cumsum(sizes[order])
    taken = np.zeros(labels.size, dtype=bool)
    taken[order[:int(np.searchsorted(reach, n)) + 1]] = True
    return taken[inverse]


def kg_neighbourhood(kg: np.ndarray, start: np.ndarray, hops: int) -> np.ndarray:
    """Mask of the triplets within ``hops`` hops of the ids marked in ``start`` (edges either way):
    hop 1 keeps every triplet touching a start id, each further hop those touching an id reached."""
    node = start.copy()
    keep = np.zeros(kg.shape[0], dtype=bool)
    for _ in range(hops):
        keep |= node[kg[:, 0]] | node[kg[:, 2]]
        node[kg[keep, 0]] = True
        node[kg[keep, 2]] = True
    return keep


def active_users(users: np.ndarray, items: np.ndarray, min_inter: int) -> np.ndarray:
    """Sorted ids of the users with at least ``min_inter`` distinct items among the given pairs."""
    if users.size == 0:
        return users
    key = np.unique(users.astype(np.int64) << 32 | items.astype(np.int64))
    ids, counts = np.unique(key >> 32, return_counts=True)
    return ids[counts >= min_inter]


def density(split: dict, n_catalogue: int) -> dict:
    """Interactions per user and per item, and the share of valid and test pairs whose item never
    occurs in training (cold), of a ``{"train"|"valid"|"test": (users, items)}`` split."""
    users = np.unique(np.concatenate([split[s][0] for s in ("train", "valid", "test")]))
    parts = ("train", "test") if split["valid"] is split["test"] else ("train", "valid", "test")
    pairs = sum(int(split[s][0].size) for s in parts)   # the paper protocol's valid is test
    train_items = np.unique(split["train"][1])
    n_train = int(split["train"][0].size)

    def cold(part):
        items = split[part][1]
        return float(np.mean(~np.isin(items, train_items))) if items.size else None

    n_users = int(users.size)
    return {
        "users": n_users,
        "catalogue_items": int(n_catalogue),
        "train_pairs": n_train,
        "train_per_user": round(n_train / n_users, 3) if n_users else None,
        "train_per_item": round(n_train / n_catalogue, 3) if n_catalogue else None,
        "pairs_per_user": round(pairs / n_users, 3) if n_users else None,
        "pairs_per_item": round(pairs / n_catalogue, 3) if n_catalogue else None,
        "cold_valid_share": cold("valid"),
        "cold_test_share": cold("test"),
    }
