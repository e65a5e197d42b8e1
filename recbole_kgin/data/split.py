"""De-duplication and the per-user splits (holdout, re-split), decided by a per-pair hash so that a
user's split does not depend on the other users."""

from __future__ import annotations

import numpy as np

# ------------------------------------------------------------------------ processing
def _unique_pairs(users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """De-duplicated pairs sorted by (user, item)."""
    if users.size == 0:
        return users, items
    key = np.unique(users.astype(np.int64) << 32 | items.astype(np.int64))
    return key >> 32, key & 0xFFFFFFFF


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _pair_keys(seed: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    base = _mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    with np.errstate(over="ignore"):
        h = _mix64(base + users.astype(np.uint64))
        return _mix64(h + items.astype(np.uint64))


def _rank_within_user(seed: int, users: np.ndarray, items: np.ndarray):
    """Seeded random rank of every pair inside its user, and the user's pair count."""
    order = np.lexsort((items, _pair_keys(seed, users, items), users))
    su = users[order]
    first = np.empty(su.size, dtype=bool)
    if su.size:
        first[0] = True
        first[1:] = su[1:] != su[:-1]
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, su.size))
    group = np.cumsum(first) - 1
    rank = np.empty(su.size, dtype=np.int64)
    rank[order] = np.arange(su.size) - starts[group]
    n = np.empty(su.size, dtype=np.int64)
    n[order] = counts[group]
    return rank, n


def _holdout(seed, users, items, ratio):
    rank, n = _rank_within_user(seed, users, items)
    n_valid = np.floor(n * ratio + 1e-9).astype(np.int64)
    n_valid = np.where((n_valid == 0) & (n >= 2), 1, n_valid)
    n_valid = np.minimum(n_valid, n - 1)
    is_valid = rank < n_valid
    return ~is_valid, is_valid


def _resplit(seed, users, items, ratios):
    _, r_valid, r_test = ratios
    rank, n = _rank_within_user(seed, users, items)
    n_valid = np.floor(n * r_valid + 1e-9).astype(np.int64)
    n_test = np.floor(n * r_test + 1e-9).astype(np.int64)
    n_train = n - n_valid - n_test
    give = (n_test == 0) & (n_train > 1)
    n_test += give
    n_train -= give
    give = (n_valid == 0) & (n_train > 1)
    n_valid += give
    n_train -= give
    is_test = rank < n_test
    is_valid = (rank >= n_test) & (rank < n_test + n_valid)
    return ~(is_test | is_valid), is_valid, is_test


def _dedup_triplets(kg: np.ndarray) -> tuple[np.ndarray, int]:
    """Remove repeated triplets, keeping the first occurrence and the file order."""
    if kg.shape[0] == 0:
        return kg, 0
    rel_bits = max(int(kg[:, 1].max()).bit_length(), 1)
    ent_bits = max(int(max(kg[:, 0].max(), kg[:, 2].max())).bit_length(), 1)
    if 2 * ent_bits + rel_bits <= 63:
        key = (kg[:, 0] << (ent_bits + rel_bits)) | (kg[:, 1] << ent_bits) | kg[:, 2]
        _, first = np.unique(key, return_index=True)
    else:
        _, first = np.unique(kg, axis=0, return_index=True)
    first.sort()
    return kg[first], int(kg.shape[0] - first.size)
