"""experiment/stats.py: multiplicity corrections on hand-computed cases, the paired bootstrap
(seeded, covering the true difference at about its nominal rate, vectorised at 100k users) and the
rank-biserial effect size against its formula."""

import numpy as np
import pytest

from recbole_kgin.experiment import stats

P = [0.01, 0.04, 0.03, 0.005, None, 0.5]


def test_holm_equals_hand_computed_values():
    # sorted: 0.005 (x5), 0.01 (x4), 0.03 (x3), 0.04 (x2), 0.5 (x1), running maximum
    expected = [0.04, 0.09, 0.09, 0.025, None, 0.5]
    assert stats.adjust(P, "holm") == pytest.approx(expected)


def test_benjamini_hochberg_equals_hand_computed_values():
    # m = 5; p * m / rank: 0.005*5/1, 0.01*5/2, 0.03*5/3, 0.04*5/4, 0.5*5/5, running minimum from the top
    expected = [0.025, 0.05, 0.05, 0.025, None, 0.5]
    assert stats.adjust(P, "bh") == pytest.approx(expected)


def test_no_correction_and_bounds():
    assert stats.adjust(P, "none") == P
    assert stats.adjust([0.9, 0.8], "holm") == [1.0, 1.0]
    assert stats.adjust([None, None], "bh") == [None, None]
    with pytest.raises(ValueError, match="unknown correction"):
        stats.adjust(P, "sidak")


def test_bootstrap_is_fixed_by_its_seed():
    rng = np.random.default_rng(1)
    a, b = rng.random(500), rng.random(500)
    first = stats.paired_bootstrap_ci(a, b, 2000, seed=5)
    assert first == stats.paired_bootstrap_ci(a, b, 2000, seed=5)
    assert first != stats.paired_bootstrap_ci(a, b, 2000, seed=6)
    assert first[0] == pytest.approx(np.mean(b - a))
    assert first[1] < first[0] < first[2]
    assert stats.paired_bootstrap_ci(a, b, 2000, seed=5, chunk=7) == first  # chunking changes nothing


def test_bootstrap_interval_covers_the_true_difference_at_about_the_nominal_rate():
    rng = np.random.default_rng(2)
    true_difference, hits, draws = 0.03, 0, 200
    for draw in range(draws):
        a = rng.random(300)
        b = a + true_difference + rng.normal(0, 0.2, size=300)
        _, low, high = stats.paired_bootstrap_ci(a, b, 1000, seed=draw)
        hits += low <= true_difference <= high
    assert 0.90 <= hits / draws <= 0.99  # nominal 0.95; binomial sd about 0.015 over 200 draws


def test_bootstrap_runs_at_100k_users():
    rng = np.random.default_rng(3)
    a, b = rng.random(100_000), rng.random(100_000)
    mean, low, high = stats.paired_bootstrap_ci(a, b, 2000, seed=0)
    assert low < mean < high and high - low < 0.01


def test_rank_biserial_equals_its_formula():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    b = np.array([1.5, 1.0, 3.0, 6.0, 4.0, 9.0])  # differences .5, -1, 0, 2, -1, 3
    # without the zero: |d| = .5, 1, 2, 1, 3 -> ranks 1, 2.5, 4, 2.5, 5; R+ = 1 + 4 + 5, R- = 5
    assert stats.rank_biserial(a, b) == pytest.approx((10 - 5) / 15)
    assert stats.rank_biserial(a, a) == 0.0
    assert stats.rank_biserial(a, a + 1) == 1.0


def test_correct_family_adjusts_rows_and_groups_together():
    rows = [{"model": "A", "p_value": None}, {"model": "B", "p_value": 0.01, "p_value_ndcg@20": 0.02},
            {"model": "B@none", "p_value": 0.2, "p_value_vs_full": 0.001}]
    group_table = [{"model": "B", "group": "cold", "p_value": 0.04}]
    assert stats.correct_family(rows, group_table, "holm") == 5
    assert rows[1]["p_value_adj"] == pytest.approx(0.04)  # 2nd smallest of 5: x4
    assert rows[2]["p_value_vs_full_adj"] == pytest.approx(0.005)
    assert group_table[0]["p_value_adj"] == pytest.approx(0.08)
    assert rows[0]["p_value_adj"] is None
