# -*- coding: utf-8 -*-
"""Negative items drawn on the training device (KGIN's ``neg_sampling_device``).

The distribution is that of RecBole's training sampler (``train_neg_sample_args: uniform``, one
negative per pair): uniform over the items the user has no training interaction with. Like
RecBole's sampler it draws uniformly over all items and redraws the draws that hit one of the
user's training items; membership is one ``searchsorted`` over the sorted keys
``user * n_items + item`` of the training interactions, held on the device. The random numbers are
torch's (of the device), not NumPy's as in RecBole's sampler: same distribution, other draws.
"""

import numpy as np
import torch

MAX_ROUNDS = 1000  # redraw rounds; a user without any free item is refused long before


class DeviceNegatives:
    """``sample(users)``: one negative item id per entry of ``users`` (RecBole ids, 1-based)."""

    def __init__(self, dataset, device="cpu"):
        matrix = dataset.inter_matrix(form="csr")
        matrix.sum_duplicates()
        self.n_items = int(dataset.item_num)  # RecBole's padding item 0 is never drawn
        rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
        keys = rows * self.n_items + matrix.indices.astype(np.int64)
        self.keys = torch.from_numpy(np.sort(keys)).to(device)
        free = (self.n_items - 1) - np.diff(matrix.indptr)
        self.full_users = torch.from_numpy(np.flatnonzero(free <= 0)).to(device)
        self.device = torch.device(device)

    def sample(self, users):
        users = users.to(self.device)
        if self.full_users.numel():
            full = torch.isin(users, self.full_users)
            if bool(full.any()):
                raise ValueError(f"negative sampling: user id {users[full][0].item()} has "
                                 "interacted with every item")
        draw = lambda n: torch.randint(1, self.n_items, (n,), device=self.device)
        neg = draw(users.shape[0])
        if self.keys.numel() == 0:  # no training interaction at all: every draw is free
            return neg
        todo = None  # positions still to check: all at first
        for _ in range(MAX_ROUNDS):
            u = users if todo is None else users[todo]
            v = neg if todo is None else neg[todo]
            key = u * self.n_items + v
            pos = torch.searchsorted(self.keys, key).clamp_(max=self.keys.numel() - 1)
            hit = self.keys[pos] == key
            if not bool(hit.any()):
                return neg
            todo = hit.nonzero().squeeze(1) if todo is None else todo[hit]
            neg[todo] = draw(todo.shape[0])
        raise RuntimeError(f"negative sampling: no free item found in {MAX_ROUNDS} rounds")
