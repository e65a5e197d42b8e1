"""KGItemKNN and KGEASE on tiny data: their scores equal a plain dense NumPy reference written from
the formulas in their docstrings, they are deterministic, and KGItemKNN never holds more than ``k``
neighbours per item."""

import numpy as np
import pytest
import torch

from recbole_kgin.quick_start import build_model, create_config, load_data
from synthetic import tiny_config, write_kg_dataset


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kgbase")
    write_kg_dataset(root, n_users=40, n_items=50, unlinked_items=3)
    return root


def _build(root, model, **extra):
    config = create_config(model, "tiny", config_dict=tiny_config(root, **extra))
    _, train_data, _, _ = load_data(config)
    return build_model(config, train_data), train_data._dataset


def _all_scores(model, dataset):
    users = torch.arange(dataset.user_num)
    with torch.no_grad():
        scores = model.full_sort_predict({model.USER_ID: users})
    return scores.reshape(dataset.user_num, dataset.item_num).numpy().astype(np.float64)


# ------------------------------------------------------------------- the dense reference


def dense_features(dataset, hops, relation_names=None, weighting="none"):
    n_items, n_entities = dataset.item_num, dataset.entity_num
    tokens = list(dataset.field2id_token[dataset.relation_field])
    allowed = None
    if relation_names:
        allowed = {tokens.index(r) for r in relation_names}
        allowed |= {tokens.index(r + "_r") for r in relation_names if r + "_r" in tokens}
    adjacency = np.zeros((n_entities, n_entities))
    for h, r, t in zip(dataset.head_entities, dataset.relations, dataset.tail_entities):
        if (allowed is None or r in allowed) and h != t:
            adjacency[h, t] = adjacency[t, h] = 1.0
    reach = np.zeros((n_items, n_entities))
    for i in range(1, n_items):
        reach[i, i] = 1.0
    frontier = reach.copy()
    for _ in range(hops):
        frontier = (frontier @ adjacency > 0).astype(float)
        reach = ((reach + frontier) > 0).astype(float)
    n = n_items - 1
    df = reach.sum(axis=0)
    if weighting == "idf":
        idf = np.array([np.log(n / d) if d > 0 else 0.0 for d in df])
        return reach * idf
    if weighting == "bm25":
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        lengths = reach.sum(axis=1)
        tf = 2.2 / (1 + 1.2 * (0.25 + 0.75 * lengths / lengths[1:].mean()))
        return reach * tf[:, None] * idf[None, :]
    return reach


def dense_knn_scores(dataset, features, k, shrink, alpha):
    n_items = dataset.item_num
    norms = np.sqrt((features ** 2).sum(axis=1))
    sims = np.zeros((n_items, n_items))
    for j in range(n_items):
        for i in range(n_items):
            denominator = norms[j] ** (2 * alpha) * norms[i] ** (2 * (1 - alpha)) + shrink
            if i != j and denominator > 0:
                sims[j, i] = features[j] @ features[i] / denominator
    weights = np.zeros_like(sims)
    for i in range(n_items):
        order = np.argsort(-sims[:, i], kind="stable")  # ties: the lower item id first
        kept = [j for j in order[:k] if sims[j, i] > 0]
        weights[kept, i] = sims[kept, i]
    interactions = dataset.inter_matrix(form="csr").toarray()
    return interactions @ weights


@pytest.mark.parametrize("options", [
    {"kg_hops": 1, "kg_weighting": "none", "similarity": "cosine", "k": 100, "shrink": 0.0},
    {"kg_hops": 1, "kg_weighting": "idf", "similarity": "cosine", "k": 3, "shrink": 1.0},
    {"kg_hops": 2, "kg_weighting": "bm25", "similarity": "asymmetric", "alpha": 0.2, "k": 5,
     "shrink": 0.5},
    {"kg_hops": 2, "kg_weighting": "idf", "similarity": "asymmetric", "alpha": 0.9, "k": 10,
     "shrink": 0.0, "kg_relations": ["genre"]},
])
def test_kg_itemknn_equals_dense_reference(data_root, options):
    model, dataset = _build(data_root, "KGItemKNN", **options)
    alpha = options.get("alpha", 0.5) if options["similarity"] == "asymmetric" else 0.5
    features = dense_features(dataset, options["kg_hops"], options.get("kg_relations"),
                              options["kg_weighting"])
    reference = dense_knn_scores(dataset, features, options["k"], options["shrink"], alpha)
    np.testing.assert_allclose(_all_scores(model, dataset), reference, rtol=1e-5, atol=1e-6)
    assert reference[1:, 1:].any()  # the case is not trivially zero
    columns = model.item_similarity.tocsc()
    assert max(np.diff(columns.indptr)) <= options["k"]  # at most k neighbours per item, sparse


def test_kg_itemknn_predict_equals_full_sort(data_root):
    model, dataset = _build(data_root, "KGItemKNN", k=10, kg_weighting="idf")
    scores = _all_scores(model, dataset)
    users = torch.tensor([1, 2, 3, 5, 8])
    items = torch.tensor([4, 1, 9, 2, 7])
    with torch.no_grad():
        pairs = model.predict({model.USER_ID: users, model.ITEM_ID: items}).numpy()
    np.testing.assert_allclose(pairs, scores[users.numpy(), items.numpy()], rtol=1e-6)


def test_kg_itemknn_refuses_an_unknown_relation(data_root):
    with pytest.raises(ValueError, match="kg_relations: unknown relation 'colour'"):
        _build(data_root, "KGItemKNN", kg_relations=["colour"])


def dense_kg_ease_scores(dataset, features, reg_weight, kg_weight):
    interactions = dataset.inter_matrix(form="csr").toarray()
    stacked = np.vstack([interactions, kg_weight * features.T])
    gram = stacked.T @ stacked + reg_weight * np.eye(dataset.item_num)
    inverse = np.linalg.inv(gram)
    weights = np.eye(dataset.item_num) - inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return interactions @ weights


@pytest.mark.parametrize("options", [
    {"reg_weight": 10.0, "kg_weight": 1.0, "kg_weighting": "none", "kg_hops": 1},
    {"reg_weight": 1.0, "kg_weight": 3.0, "kg_weighting": "idf", "kg_hops": 2},
    {"reg_weight": 100.0, "kg_weight": 0.0, "kg_weighting": "none", "kg_hops": 1},
])
def test_kg_ease_equals_dense_reference(data_root, options):
    model, dataset = _build(data_root, "KGEASE", **options)
    features = dense_features(dataset, options["kg_hops"], None, options["kg_weighting"])
    reference = dense_kg_ease_scores(dataset, features, options["reg_weight"], options["kg_weight"])
    np.testing.assert_allclose(_all_scores(model, dataset), reference, rtol=1e-4, atol=1e-5)


def test_kg_ease_with_zero_kg_weight_is_recbole_ease(data_root):
    ours, dataset = _build(data_root, "KGEASE", reg_weight=50.0, kg_weight=0.0)
    ease, _ = _build(data_root, "EASE", reg_weight=50.0, kg_linked_items_only=True)
    np.testing.assert_allclose(_all_scores(ours, dataset), _all_scores(ease, dataset),
                               rtol=1e-3, atol=1e-4)


def test_kg_ease_scores_items_without_training_interactions(data_root):
    model, dataset = _build(data_root, "KGEASE", reg_weight=10.0, kg_weight=1.0)
    counts = np.asarray(dataset.inter_matrix(form="csr").sum(axis=0)).ravel()
    cold = np.flatnonzero(counts == 0)[1:]  # without the padding item
    if len(cold):
        assert np.abs(_all_scores(model, dataset)[1:, cold]).sum() > 0


@pytest.mark.parametrize("name", ["KGItemKNN", "KGEASE"])
def test_runs_are_deterministic_whatever_the_seed(data_root, name):
    first, dataset = _build(data_root, name, seed=1, split_seed=7)
    second, _ = _build(data_root, name, seed=99, split_seed=7)
    assert np.array_equal(_all_scores(first, dataset), _all_scores(second, dataset))


def test_near_dense_features_are_refused_in_one_line(data_root, monkeypatch):
    from recbole_kgin.model import kg_content

    monkeypatch.setattr(kg_content, "MAX_FEATURES", 10)
    with pytest.raises(ValueError, match=r"config key 'kg_hops' = 2: .* item-entity features"):
        _build(data_root, "KGItemKNN", kg_hops=2)
