"""RecBole's baselines in this environment: KGAT without DGL, RecBole's KGIN and MCCLK without
torch-scatter, and one training epoch of every knowledge-aware baseline on tiny synthetic data."""

import math
import os
import sys
import types

import numpy as np
import pytest
import torch

from recbole.model.knowledge_aware_recommender.kgin import Aggregator as RecBoleKGINAggregator
from recbole.model.knowledge_aware_recommender.mcclk import Aggregator as RecBoleMCCLKAggregator
from recbole.trainer import KGATTrainer, KGTrainer

from recbole_kgin import quick_start
from recbole_kgin.model.kgat import KGAT, relation_normalised_adjacency
from recbole_kgin.model.mcclk import MCCLK, ScatterAggregator
from recbole_kgin.model.recbole_builtin import (
    RecBoleKGIN,
    ScatterMeanAggregator,
    scatter_ops,
    torch_scatter_mean,
    torch_scatter_softmax,
)
from synthetic import tiny_config, write_kg_dataset


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    write_kg_dataset(root)
    return root


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's trainer writes ./log_tensorboard


@pytest.fixture
def no_torch_scatter(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_scatter", None)  # import raises ImportError


def _naive_scatter_mean(src, index, dim=0, dim_size=None):
    assert dim == 0
    out = torch.zeros((dim_size, src.shape[1]), dtype=src.dtype)
    for row in range(dim_size):
        members = (index == row).nonzero().flatten()
        if len(members):
            out[row] = src[members].mean(dim=0)
    return out


def _naive_scatter_softmax(src, index, dim=0, dim_size=None):
    assert dim == 0
    out = torch.empty_like(src)
    for group in index.unique():
        members = (index == group).nonzero().flatten()
        out[members] = torch.softmax(src[members], dim=0)
    return out


@pytest.fixture
def fake_torch_scatter(monkeypatch):
    """A stand-in ``torch_scatter`` (loop implementations written here), so that RecBole's own
    aggregators can run and be compared with the overrides."""
    module = types.ModuleType("torch_scatter")
    module.scatter_mean = _naive_scatter_mean
    module.scatter_softmax = _naive_scatter_softmax
    monkeypatch.setitem(sys.modules, "torch_scatter", module)
    return module


def _train(model_name, data_root, **extra):
    config = quick_start.create_config(model_name, "tiny", config_dict=tiny_config(data_root, **extra))
    dataset, train_data, valid_data, test_data = quick_start.load_data(config)
    model = quick_start.build_model(config, train_data)
    trainer = quick_start.build_trainer(config, model)
    result = quick_start.fit_and_test(config, model, trainer, train_data, valid_data, test_data)
    return config, dataset, model, trainer, result


def _assert_trained(result):
    assert result["epochs_run"] == 1
    assert result["test_result"] and all(math.isfinite(v) for v in result["test_result"].values())
    assert 0.0 <= result["test_result"]["recall@20"] <= 1.0


# ---------------------------------------------------------------------------------------------
# KGAT without DGL


def test_relation_normalised_adjacency_small_example():
    # edges (source, target, relation); relation 0 is padding, 3 is not asked for
    edges = [(0, 1, 1), (0, 1, 1), (0, 2, 1), (0, 2, 2), (1, 0, 2), (2, 0, 0), (2, 1, 3)]
    rows, cols, rels = map(np.array, zip(*edges))
    adjacency = relation_normalised_adjacency(rows, cols, rels, 3, [1, 2]).toarray()
    expected = np.array([
        [0.0, 2 / 3, 1 / 3 + 1.0],  # relation 1: 0->1 twice, 0->2 once; relation 2: 0->2 once
        [1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],  # node 2 only has padding / unasked relations
    ])
    np.testing.assert_allclose(adjacency, expected)


def test_kgat_attention_adjacency_equals_dense_recomputation(data_root):
    config = quick_start.create_config("KGAT", "tiny", config_dict=tiny_config(data_root))
    _, train_data, _, _ = quick_start.load_data(config)
    model = quick_start.build_model(config, train_data)
    assert type(model) is KGAT and "dgl" not in sys.modules

    # the collaborative KG of the training split, from the dataset's fields (the edges RecBole
    # hands to DGL)
    dataset = train_data._dataset
    inter, kg = dataset.inter_feat, dataset.kg_feat
    n_users = dataset.user_num
    users = inter[dataset.uid_field].numpy()
    items = inter[dataset.iid_field].numpy() + n_users
    heads = kg[dataset.head_entity_field].numpy() + n_users
    tails = kg[dataset.tail_entity_field].numpy() + n_users
    ui_relation = dataset.relation_num - 1
    assert dataset.field2id_token[dataset.relation_field][ui_relation] == "[UI-Relation]"
    src = np.concatenate([users, items, heads])
    dst = np.concatenate([items, users, tails])
    rel = np.concatenate([np.full(2 * len(users), ui_relation),
                          kg[dataset.relation_field].numpy()])

    n_nodes = n_users + dataset.entity_num
    expected = np.zeros((n_nodes, n_nodes))
    for r in range(1, model.n_relations):
        counts = np.zeros((n_nodes, n_nodes))
        for s, t in zip(src[rel == r], dst[rel == r]):
            counts[s, t] += 1.0
        degree = counts.sum(axis=1, keepdims=True)
        expected += np.divide(counts, degree, out=np.zeros_like(counts), where=degree > 0)

    actual = model.A_in.to_dense().numpy()
    assert actual.shape == (n_nodes, n_nodes)
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)
    # users reach items through the user-item relation; every non-empty row sums to its number of
    # distinct outgoing relations
    assert actual[:n_users].sum() > 0
    per_row_relations = [len(set(rel[(src == s) & (rel > 0)])) for s in range(n_nodes)]
    np.testing.assert_allclose(actual.sum(axis=1), per_row_relations, rtol=1e-5)


def test_kgat_trains_one_epoch(data_root):
    config, _, model, trainer, result = _train("KGAT", data_root)
    assert isinstance(trainer, KGATTrainer)
    assert config["layers"] == [128, 64, 32]  # our KGAT.yaml on top of RecBole's
    _assert_trained(result)
    # the trainer's attentive update replaced the initial normalised matrix with a softmax one
    dense = model.A_in.to_dense()
    nonempty = dense.sum(dim=1) > 0
    assert torch.allclose(dense.sum(dim=1)[nonempty], torch.ones(int(nonempty.sum())), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# torch-scatter made optional


def test_torch_scatter_ops_match_loops():
    generator = torch.Generator().manual_seed(0)
    src = torch.randn(40, 5, generator=generator)
    index = torch.randint(0, 7, (40,), generator=generator)
    index[index == 3] = 4  # group 3 stays empty
    mean = torch_scatter_mean(src, index, 9)
    torch.testing.assert_close(mean, _naive_scatter_mean(src, index, dim_size=9))
    assert torch.equal(mean[3], torch.zeros(5)) and torch.equal(mean[8], torch.zeros(5))
    softmax = torch_scatter_softmax(src * 30, index, 9)
    torch.testing.assert_close(softmax, _naive_scatter_softmax(src * 30, index, dim_size=9))


def test_scatter_backend_follows_importability(no_torch_scatter):
    assert scatter_ops().backend == "torch"


def test_scatter_backend_uses_torch_scatter_when_importable(fake_torch_scatter, data_root):
    assert scatter_ops().backend == "torch_scatter"
    config = quick_start.create_config("RecBoleKGIN", "tiny", config_dict=tiny_config(data_root))
    _, train_data, _, _ = quick_start.load_data(config)
    model = quick_start.build_model(config, train_data)
    assert model.scatter_backend == "torch_scatter"


def _graph_inputs(seed=0, n_entities=12, n_users=5, n_relations=4, n_edges=30, d=6):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n_entities, (2, n_edges), generator=g)
    edge_type = torch.randint(1, n_relations, (n_edges,), generator=g)
    dense = (torch.rand(n_users, n_entities, generator=g) < 0.4).float()
    dense = dense / dense.sum(1, keepdim=True).clamp(min=1)
    return {
        "entity_emb": torch.randn(n_entities, d, generator=g),
        "user_emb": torch.randn(n_users, d, generator=g),
        "relation_emb": torch.randn(n_relations, d, generator=g),
        "edge_index": edge_index,
        "edge_type": edge_type,
        "matrix": dense.to_sparse(),
        "latent_emb": torch.randn(3, d, generator=g),
        "disen": torch.randn(3, n_relations, generator=g),
    }


def test_kgin_aggregator_equals_recbole(fake_torch_scatter):
    x = _graph_inputs()
    args = (x["entity_emb"], x["user_emb"], x["latent_emb"], x["relation_emb"], x["edge_index"],
            x["edge_type"], x["matrix"], x["disen"])
    expected = RecBoleKGINAggregator()(*args)
    for ops in (scatter_ops(), scatter_ops()._replace(backend="torch", mean=torch_scatter_mean)):
        actual = ScatterMeanAggregator(ops.mean)(*args)
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e)


@pytest.mark.parametrize("item_only,attention", [(False, True), (True, False)])
def test_mcclk_aggregator_equals_recbole(fake_torch_scatter, item_only, attention):
    x = _graph_inputs(seed=1)
    args = (x["entity_emb"], x["user_emb"], x["relation_emb"], x["edge_index"], x["edge_type"],
            x["matrix"])
    expected = RecBoleMCCLKAggregator(item_only=item_only, attention=attention)(*args)
    torch_ops = scatter_ops()._replace(backend="torch", mean=torch_scatter_mean,
                                       softmax=torch_scatter_softmax)
    for ops in (scatter_ops(), torch_ops):
        actual = ScatterAggregator(ops, item_only=item_only, attention=attention)(*args)
        if item_only:
            torch.testing.assert_close(actual, expected)
        else:
            for a, e in zip(actual, expected):
                torch.testing.assert_close(a, e)


def test_recbole_kgin_trains_one_epoch_without_torch_scatter(no_torch_scatter, data_root):
    config, _, model, trainer, result = _train("RecBoleKGIN", data_root)
    assert type(model) is RecBoleKGIN and model.scatter_backend == "torch"
    assert isinstance(trainer, KGTrainer)
    assert config["ind"] == "cosine" and config["context_hops"] == 2  # RecBole's KGIN.yaml
    assert all(isinstance(conv, ScatterMeanAggregator) for conv in model.gcn.convs)
    _assert_trained(result)


def test_mcclk_trains_one_epoch_without_torch_scatter(no_torch_scatter, data_root):
    _, _, model, _, result = _train("MCCLK", data_root)
    assert type(model) is MCCLK and model.scatter_backend == "torch"
    _assert_trained(result)


# ---------------------------------------------------------------------------------------------
# the other baselines run as RecBole ships them


# Slower on CPU (minutes in all on a loaded 2-core machine); the ml-100k comparison runs them too.
_SLOW = pytest.mark.skipif(
    not os.environ.get("RECBOLE_KGIN_SLOW_TESTS"),
    reason="set RECBOLE_KGIN_SLOW_TESTS=1 to train KGNNLS, KTUP, MKR and RippleNet as well",
)


@pytest.mark.parametrize("name,extra", [
    ("CKE", {}), ("CFKG", {}), ("BPR", {}), ("LightGCN", {}), ("KGCN", {}),
    pytest.param("KGNNLS", {}, marks=_SLOW),
    pytest.param("KTUP", {}, marks=_SLOW), pytest.param("MKR", {}, marks=_SLOW),
    pytest.param("RippleNet", {"n_memory": 4}, marks=_SLOW),
])
def test_baseline_trains_one_epoch(no_torch_scatter, data_root, name, extra):
    _, _, _, _, result = _train(name, data_root, **extra)
    _assert_trained(result)
