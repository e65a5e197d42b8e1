"""KG controls: the pure transforms keep their invariants and are fixed by their seed; inside
RecBole's dataset only the triplets change (interactions, links and vocabularies stay)."""

import numpy as np
import pytest

from recbole_kgin.data.kg_variants import VARIANTS, check_variant, transform
from recbole_kgin.quick_start import create_config, load_data
from synthetic import tiny_config, write_kg_dataset

RNG = np.random.default_rng(0)
HEADS = RNG.integers(1, 40, size=301)
RELATIONS = RNG.integers(1, 6, size=301)
TAILS = RNG.integers(1, 60, size=301)
ITEMS = np.arange(1, 31)


def _run(variant, seed=7):
    return transform(HEADS, RELATIONS, TAILS, variant, seed, items=ITEMS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_transform_is_fixed_by_its_seed_and_leaves_its_inputs(variant):
    before = [a.copy() for a in (HEADS, RELATIONS, TAILS)]
    first, second = _run(variant), _run(variant)
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    for a, b in zip(before, (HEADS, RELATIONS, TAILS)):
        assert np.array_equal(a, b)
    if variant not in ("full", "none"):
        assert any(not np.array_equal(a, b) for a, b in zip(first, _run(variant, seed=8)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_transform_invariants(variant):
    heads, relations, tails = _run(variant)
    entities = set(HEADS) | set(TAILS)
    expected = {"none": len(ITEMS), "drop-50": len(HEADS) - len(HEADS) // 2}.get(variant,
                                                                                  len(HEADS))
    assert len(heads) == len(relations) == len(tails) == expected
    assert set(relations) <= set(RELATIONS)
    if variant in ("full", "shuffle-relations", "random-tails", "shuffle-tails"):
        assert sorted(relations) == sorted(RELATIONS)  # every relation keeps its count
    if variant == "none":
        assert np.array_equal(heads, tails) and set(heads) == set(ITEMS)
        assert len(set(relations)) == 1
    else:
        assert set(heads) | set(tails) <= entities  # entities in range
    if variant in ("full", "shuffle-relations", "random-tails", "shuffle-tails"):
        assert np.array_equal(heads, HEADS)
    if variant in ("full", "shuffle-relations", "shuffle-tails"):
        assert sorted(tails) == sorted(TAILS)  # degrees kept
    if variant == "shuffle-relations":
        assert np.array_equal(tails, TAILS) and not np.array_equal(relations, RELATIONS)
    if variant == "drop-50":
        kept = set(zip(heads, relations, tails))
        assert kept <= set(zip(HEADS, RELATIONS, TAILS))


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown KG variant 'half'"):
        check_variant("half")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kgvar")
    write_kg_dataset(root, unlinked_items=2)
    return root


def _dataset(root, variant, model="KGIN", **extra):
    config = create_config(model, "tiny", config_dict=tiny_config(root, kg_variant=variant, **extra))
    dataset, train, valid, test = load_data(config)
    return dataset, train._dataset


def _triplets(dataset):
    return list(zip(dataset.head_entities.tolist(), dataset.relations.tolist(),
                    dataset.tail_entities.tolist()))


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "full"])
def test_only_the_triplets_change_in_the_dataset(data_root, variant):
    full, full_train = _dataset(data_root, "full")
    other, other_train = _dataset(data_root, variant)
    for field in (full.uid_field, full.iid_field):
        assert np.array_equal(full.inter_feat[field].numpy(), other.inter_feat[field].numpy())
        assert np.array_equal(full_train.inter_feat[field].numpy(),
                              other_train.inter_feat[field].numpy())
    assert full.item2entity == other.item2entity
    assert list(full.field2id_token[full.entity_field]) == \
        list(other.field2id_token[other.entity_field])
    assert list(full.field2id_token[full.relation_field]) == \
        list(other.field2id_token[other.relation_field])
    assert full.entity_num == other.entity_num and full.relation_num == other.relation_num
    assert _triplets(full) != _triplets(other)
    n_full = len(_triplets(full))  # inverse relations included (kg_reverse_r)
    expected = {"none": 2 * len(full.item2entity), "drop-50": n_full - 2 * ((n_full // 2) // 2)}
    if variant in expected:
        assert len(_triplets(other)) == expected[variant]
    else:
        assert len(_triplets(other)) == n_full
    again, _ = _dataset(data_root, variant)
    assert _triplets(again) == _triplets(other)  # seeded
    reseeded, _ = _dataset(data_root, variant, kg_variant_seed=123)
    if variant != "none":
        assert _triplets(reseeded) != _triplets(other)


def test_closed_form_models_see_the_variant_too(data_root):
    full, _ = _dataset(data_root, "full", model="KGItemKNN")
    none, _ = _dataset(data_root, "none", model="KGItemKNN")
    assert len(_triplets(none)) == len(full.item2entity)  # one self-loop per linked item, no inverse
