"""The configurations a random search draws up front (``tune_space.distinct_samples``): the same on
every machine, distinct over the discrete keys, and distributed as the space file says."""

import math
import random

import pytest
from scipy import stats

from recbole_kgin.tune_space import distinct_samples

CHOICES = {"a": ("choice", [1, 2, 3]), "b": ("choice", ["x", "y"])}


def _drawn_before(space, count, seed):
    """The draw of a choice-only space as the ledger's first version made it (mixed-radix indices
    sampled without replacement): finished searches must keep their configurations."""
    keys, sizes = list(space), [len(space[k][1]) for k in space]
    points = []
    for index in random.Random(seed).sample(range(math.prod(sizes)),
                                            min(count, math.prod(sizes))):
        point = {}
        for key, size in zip(keys, sizes):
            index, pick = divmod(index, size)
            point[key] = space[key][1][pick]
        points.append(point)
    return points


def test_choice_spaces_draw_distinct_configurations_as_before():
    points = distinct_samples(CHOICES, 4, seed=1)
    assert len(points) == 4 and len({(p["a"], p["b"]) for p in points}) == 4
    assert points == distinct_samples(CHOICES, 4, seed=1)
    assert points != distinct_samples(CHOICES, 4, seed=2)
    assert len(distinct_samples(CHOICES, 10, seed=1)) == 6  # every configuration, once
    for seed in range(5):
        assert distinct_samples(CHOICES, 4, seed) == _drawn_before(CHOICES, 4, seed)


def test_randint_is_discrete_with_both_ends_included():
    points = distinct_samples({"k": ("randint", [2, 4])}, 10, seed=0)
    assert sorted(p["k"] for p in points) == [2, 3, 4]
    assert all(type(p["k"]) is int for p in points)
    wide = distinct_samples({"k": ("randint", [1, 10**12])}, 3, seed=0)  # not materialised
    assert len({p["k"] for p in wide}) == 3 and all(1 <= p["k"] <= 10**12 for p in wide)


def test_a_continuous_key_gives_the_full_count_and_cycles_the_discrete_part():
    space = {**CHOICES, "lr": ("loguniform", [1e-5, 1e-3])}
    points = distinct_samples(space, 8, seed=3)
    assert len(points) == 8 and [list(p) for p in points] == [["a", "b", "lr"]] * 8
    assert len({(p["a"], p["b"]) for p in points[:6]}) == 6  # the product is used up first
    assert len({p["lr"] for p in points}) == 8
    assert all(1e-5 <= p["lr"] <= 1e-3 for p in points)
    assert points == distinct_samples(space, 8, seed=3)
    # the discrete keys are drawn first, so they are those of the choice-only space
    assert [{"a": p["a"], "b": p["b"]} for p in points[:6]] == distinct_samples(CHOICES, 6, 3)


@pytest.mark.parametrize("dist, low, high, to_unit", [
    ("uniform", 0.1, 0.5, lambda x: (x - 0.1) / 0.4),
    ("loguniform", 1e-5, 1e-3, lambda x: math.log(x / 1e-5) / math.log(100)),
])
def test_continuous_keys_follow_their_distribution(dist, low, high, to_unit):
    """Kolmogorov-Smirnov against the uniform distribution of the value (log-uniform: of its
    logarithm) over 2,000 draws: a wrong transform (e.g. uniform where log-uniform is asked) puts
    most of the mass in one decade and fails with p far below 1e-3."""
    points = distinct_samples({"x": (dist, [low, high])}, 2000, seed=11)
    units = [to_unit(p["x"]) for p in points]
    assert all(0.0 <= u <= 1.0 for u in units)
    assert stats.kstest(units, "uniform").pvalue > 1e-3


def test_grid_keys_are_left_to_ray():
    assert distinct_samples({"a": ("grid", [1, 2]), "b": ("uniform", [0, 1])}, 3, 0) is None
    assert distinct_samples({}, 3, 0) is None
