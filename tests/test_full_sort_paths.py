"""Full-ranking evaluations that compute all items at once equal RecBole's own methods: KGCN's,
computed once per (user, entity) instead of once per (user, item) pair, and CFKG's, a matrix product
(or exact distances) instead of RecBole's ``predict`` on every pair."""

import pytest
import torch

from recbole.data.interaction import Interaction
from recbole.model.knowledge_aware_recommender.cfkg import CFKG as RecBoleCFKG
from recbole.model.knowledge_aware_recommender.kgcn import KGCN as RecBoleKGCN

from recbole_kgin import quick_start
from recbole_kgin.model.cfkg import CFKG
from recbole_kgin.model.kgcn import KGCN, receptive_sets
from synthetic import tiny_config, write_kg_dataset


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("full_sort")
    write_kg_dataset(root, unlinked_items=5)
    return root


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _model(name, data_root, device, scale=0.5, **extra):
    """``name`` built by the shared pipeline, with random weights of trained-looking size (no zero
    biases, embeddings of varied scale)."""
    config = quick_start.create_config(name, "tiny", config_dict=tiny_config(data_root, **extra))
    _, train_data, _, _ = quick_start.load_data(config)
    model = quick_start.build_model(config, train_data).to(device).eval()
    for buffer in ("adj_entity", "adj_relation"):
        if hasattr(model, buffer):
            setattr(model, buffer, getattr(model, buffer).to(device))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return model


# ---------------------------------------------------------------------------------------------
# KGCN


def _recbole_scores(model, users):
    return RecBoleKGCN.full_sort_predict(model, Interaction({model.USER_ID: users}))


@pytest.mark.parametrize("aggregator", ["sum", "neighbor", "concat"])
@pytest.mark.parametrize("n_iter", [1, 2, 3])
def test_kgcn_fast_full_sort_equals_recbole(data_root, device, aggregator, n_iter):
    model = _model("KGCN", data_root, device, aggregator=aggregator, n_iter=n_iter,
                   neighbor_sample_size=3)
    assert type(model) is KGCN and model.fast_full_sort
    users = torch.arange(1, model.n_users, device=device)
    with torch.no_grad():  # float32, as it runs: equal up to float32 rounding
        torch.testing.assert_close(model.full_sort_predict(Interaction({model.USER_ID: users})),
                                   _recbole_scores(model, users), rtol=1e-4, atol=1e-4)
    # float64, so that a difference in the computation is not lost in float32 rounding
    model = model.double()
    with torch.no_grad():
        fast = model.full_sort_predict(Interaction({model.USER_ID: users}))
        plain = _recbole_scores(model, users)
    assert fast.shape == plain.shape == (users.numel() * model.n_items,)
    assert plain.std() > 0.1  # the comparison is not between near-constant scores
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-10)


def test_kgcn_fast_full_sort_in_small_chunks_and_with_gradients(data_root, monkeypatch):
    model = _model("KGCN", data_root, "cpu").double()
    users = torch.tensor([3, 1, 4, 1, 5])
    with torch.no_grad():
        whole = model.full_sort_predict(Interaction({model.USER_ID: users}))
    monkeypatch.setattr("recbole_kgin.model.kgcn._CHUNK_FLOATS", 1)  # one user per chunk
    chunked = model.full_sort_predict(Interaction({model.USER_ID: users}))
    torch.testing.assert_close(chunked, whole)
    # the fast path is differentiable like RecBole's (same graph of parameters)
    chunked.sum().backward()
    fast_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    _recbole_scores(model, users).sum().backward()
    plain_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert fast_grads.keys() == plain_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-9, atol=1e-9)


def test_kgcn_switch_off_runs_recbole_method_a_few_users_per_call(data_root, monkeypatch):
    model = _model("KGCN", data_root, "cpu", kgcn_fast_full_sort=False)
    assert not model.fast_full_sort
    calls = []
    original = RecBoleKGCN.full_sort_predict

    def spy(self, interaction):
        calls.append(int(interaction[self.USER_ID].numel()))
        return original(self, interaction)

    monkeypatch.setattr(RecBoleKGCN, "full_sort_predict", spy)
    monkeypatch.setattr("recbole_kgin.model.kgcn._PLAIN_PAIRS", 2 * model.n_items)
    users = torch.arange(1, 6)
    with torch.no_grad():
        scores = model.full_sort_predict(Interaction({model.USER_ID: users}))
        calls_seen = list(calls)
        whole = original(model, Interaction({model.USER_ID: users}))
    assert calls_seen == [2, 2, 1]
    torch.testing.assert_close(scores, whole)


def test_kgcn_bad_switch_value_names_the_key(data_root):
    with pytest.raises(ValueError, match="kgcn_fast_full_sort"):
        _model("KGCN", data_root, "cpu", kgcn_fast_full_sort="yes")


def test_receptive_sets_nest_and_cover_neighbours():
    adj = torch.tensor([[1, 2], [3, 3], [0, 4], [3, 3], [4, 4], [5, 5]])
    sets = receptive_sets(adj, torch.tensor([0, 1]), 2)
    assert sets[0].tolist() == [0, 1]
    assert sets[1][:2].tolist() == [0, 1] and sorted(sets[1].tolist()) == [0, 1, 2, 3]
    assert sets[2][:4].tolist() == sets[1].tolist() and sorted(sets[2].tolist()) == [0, 1, 2, 3, 4]
    for inner, outer in zip(sets, sets[1:]):
        assert set(adj[inner].reshape(-1).tolist()) <= set(outer.tolist())


def test_kgcn_attention_falls_back_to_softmax_of_logits_when_exponentials_underflow(data_root):
    model = _model("KGCN", data_root, "cpu", n_iter=2)
    with torch.no_grad():
        model.relation_embedding.weight.mul_(1e4)  # logits spread over thousands
        users = torch.arange(1, model.n_users)
        logits = model.relation_embedding.weight @ model.user_embedding(users).T / 64
        assert float((logits.max(dim=0).values - logits.min(dim=0).values).max()) > 200
        # one exponential per (user, relation) underflows: the fallback path must be taken
        assert bool((torch.exp(logits - logits.max(dim=0).values) == 0).any())
        torch.testing.assert_close(model.full_sort_predict(Interaction({model.USER_ID: users})),
                                   _recbole_scores(model, users), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# CFKG


def _pairwise(model, users):
    """RecBole's evaluation of a model without full_sort_predict: predict on every pair."""
    pair_users = users.repeat_interleave(model.n_items)
    pair_items = torch.arange(model.n_items, device=users.device).repeat(users.numel())
    return RecBoleCFKG.predict(model, Interaction({model.USER_ID: pair_users,
                                                   model.ITEM_ID: pair_items}))


@pytest.mark.parametrize("loss_function", ["inner_product", "transe"])
def test_cfkg_fast_full_sort_equals_recbole_predict(data_root, device, loss_function):
    model = _model("CFKG", data_root, device, scale=1.0, loss_function=loss_function)
    assert type(model) is CFKG and model.fast_full_sort
    users = torch.arange(1, model.n_users, device=device)
    with torch.no_grad():
        fast = model.full_sort_predict(Interaction({model.USER_ID: users}))
        plain = _pairwise(model, users)
        assert fast.shape == plain.shape == (users.numel() * model.n_items,)
        assert plain.std() > 0.1
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
        model = model.double()
        torch.testing.assert_close(model.full_sort_predict(Interaction({model.USER_ID: users})),
                                   _pairwise(model, users), rtol=1e-10, atol=1e-10)


def test_cfkg_switch_off_scores_pairs_with_predict_in_chunks(data_root, monkeypatch):
    model = _model("CFKG", data_root, "cpu", loss_function="transe", cfkg_fast_full_sort=False)
    assert not model.fast_full_sort
    calls = []
    original = RecBoleCFKG.predict

    def spy(self, interaction):
        calls.append(int(interaction[self.ITEM_ID].numel()))
        return original(self, interaction)

    monkeypatch.setattr(RecBoleCFKG, "predict", spy)
    monkeypatch.setattr("recbole_kgin.model.cfkg._PLAIN_PAIRS", 50)
    users = torch.tensor([2, 5, 7])
    with torch.no_grad():
        scores = model.full_sort_predict(Interaction({model.USER_ID: users}))
        model.fast_full_sort = True
        fast = model.full_sort_predict(Interaction({model.USER_ID: users}))
    assert sum(calls) == 3 * model.n_items and max(calls) == 50
    torch.testing.assert_close(scores, fast, rtol=1e-5, atol=1e-5)


def test_cfkg_bad_switch_value_names_the_key(data_root):
    with pytest.raises(ValueError, match="cfkg_fast_full_sort"):
        _model("CFKG", data_root, "cpu", cfkg_fast_full_sort=1)
