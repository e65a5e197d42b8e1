"""Group metrics (experiment/groups.py): pair groups recombine to the user's metric, activity
quartiles to the overall mean, and the whole-set case equals RecBole's Recall and NDCG."""

import numpy as np
import pytest

from recbole_kgin.experiment import groups

RNG = np.random.default_rng(3)
N_ITEMS, N_USERS, K = 60, 40, 20


def _case():
    counts = RNG.integers(0, 5, size=N_ITEMS)
    counts[0] = 0  # padding
    positives = [RNG.choice(np.arange(1, N_ITEMS), size=RNG.integers(1, 8), replace=False)
                 for _ in range(N_USERS)]
    topk = np.stack([RNG.permutation(np.arange(1, N_ITEMS))[:50] for _ in range(N_USERS)])
    return counts, positives, topk


def _recbole(topk, positives, k):
    from recbole.config import Config
    from recbole.evaluator.metrics import NDCG, Recall

    Config.compatibility_settings(None)  # the NumPy aliases RecBole's metrics use (set by a Config)

    hits = np.array([[item in set(p) for item in row] for row, p in zip(topk, positives)])
    pos_len = np.array([len(p) for p in positives])
    config = {"topk": [k], "metric_decimal_place": 4}
    recall = Recall(config).metric_info(hits, pos_len)[:, k - 1]
    ndcg = NDCG(config).metric_info(hits, pos_len)[:, k - 1]
    return recall, ndcg


def test_whole_set_group_equals_recboles_metrics():
    counts, positives, topk = _case()
    everything = np.ones(N_ITEMS, dtype=bool)
    pairs, hits, recall, ndcg = groups.pair_group_metrics(topk, positives, everything, K)
    ref_recall, ref_ndcg = _recbole(topk, positives, K)
    np.testing.assert_allclose(recall, ref_recall)
    np.testing.assert_allclose(ndcg, ref_ndcg)
    np.testing.assert_allclose(groups.recall_from_topk(topk, positives, K), ref_recall)


@pytest.mark.parametrize("pair", [("cold", "warm"), ("head", "tail")])
def test_pair_groups_recombine_to_the_users_recall(pair):
    counts, positives, topk = _case()
    columns = groups.per_user_group_arrays(topk, positives, counts, K)
    a, b = pair
    total = np.array([len(p) for p in positives])
    assert np.array_equal(columns[f"pairs_{a}"] + columns[f"pairs_{b}"], total)
    hits = columns[f"hits_{a}@{K}"] + columns[f"hits_{b}@{K}"]
    ref_recall, _ = _recbole(topk, positives, K)
    np.testing.assert_allclose(hits / total, ref_recall)
    recombined = (np.nan_to_num(columns[f"recall_{a}@{K}"]) * columns[f"pairs_{a}"]
                  + np.nan_to_num(columns[f"recall_{b}@{K}"]) * columns[f"pairs_{b}"]) / total
    np.testing.assert_allclose(recombined, ref_recall)
    assert np.isnan(columns[f"recall_{a}@{K}"][columns[f"pairs_{a}"] == 0]).all()


def test_head_is_the_top_fifth_by_training_count():
    counts = np.array([0, 5, 1, 9, 9, 0, 2, 3, 1, 0, 4])  # item 0 is padding
    head = groups.head_items(counts)
    assert head.sum() == 2 and head[3] and head[4] and not head[0]
    kinds = groups.item_kinds(counts)
    assert np.array_equal(kinds["cold"], counts == 0)
    assert np.array_equal(kinds["head"] | kinds["tail"], np.ones(len(counts), dtype=bool))


def test_activity_quartiles_recombine_to_the_overall_mean():
    counts, positives, topk = _case()
    recall, ndcg = _recbole(topk, positives, K)
    per_user = {"recall@20": recall, "ndcg@20": ndcg,
                "train_count": RNG.integers(1, 30, size=N_USERS),
                "test_count": np.array([len(p) for p in positives]),
                **groups.per_user_group_arrays(topk, positives, counts, K)}
    values = groups.group_values(per_user)
    quartiles = [values[q] for q in groups.QUARTILES]
    assert sum(q["users"] for q in quartiles) == N_USERS
    assert abs(sum(q["users"] * q["recall@20"] for q in quartiles) / N_USERS - recall.mean()) < 1e-12
    labels = groups.activity_quartiles(per_user["train_count"])
    for low, high in zip(range(3), range(1, 4)):  # less active users in lower quartiles
        assert per_user["train_count"][labels == low].max() <= \
            per_user["train_count"][labels == high].min()
    assert values["cold"]["pairs"] + values["warm"]["pairs"] == per_user["test_count"].sum()
