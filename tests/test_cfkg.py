"""CFKG's full-ranking evaluation over all items at once equals RecBole's predict on every pair."""

import pytest
import torch

from recbole.data.interaction import Interaction
from recbole.model.knowledge_aware_recommender.cfkg import CFKG as RecBoleCFKG

from recbole_kgin import quick_start
from recbole_kgin.model.cfkg import CFKG
from synthetic import tiny_config, write_kg_dataset


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cfkg")
    write_kg_dataset(root)
    return root


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _model(data_root, device, **extra):
    config = quick_start.create_config("CFKG", "tiny", config_dict=tiny_config(data_root, **extra))
    _, train_data, _, _ = quick_start.load_data(config)
    model = quick_start.build_model(config, train_data).to(device).eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model


def _pairwise(model, users):
    """RecBole's evaluation of a model without full_sort_predict: predict on every pair."""
    pair_users = users.repeat_interleave(model.n_items)
    pair_items = torch.arange(model.n_items, device=users.device).repeat(users.numel())
    return RecBoleCFKG.predict(model, Interaction({model.USER_ID: pair_users,
                                                   model.ITEM_ID: pair_items}))


@pytest.mark.parametrize("loss_function", ["inner_product", "transe"])
def test_fast_full_sort_equals_recbole_predict(data_root, device, loss_function):
    model = _model(data_root, device, loss_function=loss_function)
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


def test_switch_off_scores_pairs_with_predict_in_chunks(data_root, monkeypatch):
    model = _model(data_root, "cpu", loss_function="transe", cfkg_fast_full_sort=False)
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


def test_bad_switch_value_names_the_key(data_root):
    with pytest.raises(ValueError, match="cfkg_fast_full_sort"):
        _model(data_root, "cpu", cfkg_fast_full_sort=1)
