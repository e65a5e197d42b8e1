"""Fast paths against the plain ones: same outputs, same gradients.

Tolerance: float32 sums in a different order, so values are compared with ``atol=1e-6``,
``rtol=1e-5`` (embeddings and gradients here are of order 1e-2 .. 1).
"""

import numpy as np
import pytest
import torch

from recbole_kgin.model.kgin import KGIN
from recbole_kgin.model.sparse_ops import CachedPattern, spmm
from recbole_kgin.quick_start import create_config, load_data
from synthetic import tiny_config, write_kg_dataset

ATOL, RTOL = 1e-6, 1e-5


def close(a, b):
    return torch.allclose(a, b, atol=ATOL, rtol=RTOL)


# ---------------------------------------------------------------- the sparse product alone
def random_pattern(n_rows, n_cols, nnz, seed):
    rng = np.random.default_rng(seed)
    key = np.unique(rng.integers(0, n_rows * n_cols, size=nnz))
    return torch.from_numpy(key // n_cols), torch.from_numpy(key % n_cols)


@pytest.mark.parametrize("prefix", [None, 7])
@pytest.mark.parametrize("masked", [False, True])
def test_cached_pattern_selects_the_matrix_and_its_transpose(prefix, masked):
    n_rows, n_cols = 13, 11
    row, col = random_pattern(n_rows, n_cols, 60, seed=1)
    pattern = CachedPattern(row, col, n_rows, n_cols)
    gen = torch.Generator().manual_seed(0)
    values = torch.rand(row.shape[0], generator=gen) + 0.1
    keep = torch.rand(row.shape[0], generator=gen) < 0.5 if masked else None

    dense = torch.zeros(n_rows, n_cols)
    use = torch.ones_like(values, dtype=torch.bool) if keep is None else keep
    dense[row[use], col[use]] = values[use]
    if prefix is not None:
        dense = dense[:prefix]
    pair = pattern.select(values, keep, n_rows=prefix)
    assert torch.equal(pair.matrix.to_dense(), dense)
    assert torch.equal(pair.transpose.to_dense(), dense.t())


@pytest.mark.parametrize("masked", [False, True])
def test_spmm_output_and_gradient_equal_dense_product(masked):
    n_rows, n_cols, d = 40, 30, 5
    row, col = random_pattern(n_rows, n_cols, 300, seed=2)
    pattern = CachedPattern(row, col, n_rows, n_cols)
    gen = torch.Generator().manual_seed(1)
    values = torch.rand(row.shape[0], generator=gen)
    keep = torch.rand(row.shape[0], generator=gen) < 0.5 if masked else None
    pair = pattern.select(values, keep)
    dense = pair.matrix.to_dense()
    x = torch.randn(n_cols, d, generator=gen, requires_grad=True)
    weight = torch.randn(n_rows, d, generator=gen)

    out = spmm(pair, x)
    (out * weight).sum().backward()
    grad_fast = x.grad.clone()
    x.grad = None
    ref = dense @ x
    (ref * weight).sum().backward()
    assert close(out, ref)
    assert close(grad_fast, x.grad)
    # and against torch's own sparse autograd (the plain path)
    x.grad = None
    sparse_ref = torch.sparse.mm(pair.matrix, x)
    (sparse_ref * weight).sum().backward()
    assert close(grad_fast, x.grad)


def test_spmm_gradcheck_double():
    row, col = random_pattern(9, 7, 25, seed=3)
    pattern = CachedPattern(row, col, 9, 7)
    values = torch.rand(row.shape[0], dtype=torch.float64)
    pair = pattern.select(values, values > 0.3)
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: spmm(pair, t), (x,))


def test_cached_pattern_rejects_unsorted_entries():
    with pytest.raises(ValueError, match="sorted by row"):
        CachedPattern(torch.tensor([1, 0]), torch.tensor([0, 0]), 2, 2)


# ---------------------------------------------------------------- the model: cached vs torch backend
def two_models(tmp_path, **overrides):
    write_kg_dataset(tmp_path, n_users=70, n_items=90)
    models = {}
    for backend in ("torch", "cached"):
        config = create_config("KGIN", "tiny", config_dict=tiny_config(
            tmp_path, embedding_size=16, sparse_backend=backend, **overrides))
        _, train_data, _, _ = load_data(config)
        torch.manual_seed(0)
        models[backend] = KGIN(config, train_data._dataset)
    models["cached"].load_state_dict(models["torch"].state_dict())
    return models["torch"], models["cached"], train_data


def loss_and_grads(model, batch, seed):
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)  # the same node- and message-dropout draws for both backends
    loss = model.calculate_loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("overrides", [
    {},
    {"node_dropout_semantics": "reference", "node_dropout_rate": 0.3},
    {"node_dropout_rate": 0.0, "mess_dropout_rate": 0.0},
    {"context_hops": 1},
])
def test_cached_backend_equals_torch_backend_in_training(tmp_path, overrides):
    plain, fast, train_data = two_models(tmp_path, **overrides)
    from recbole.utils import KGDataLoaderState

    train_data.set_mode(KGDataLoaderState.RS)
    batch = next(iter(train_data))
    for seed in (0, 1):
        loss_p, grads_p = loss_and_grads(plain, batch, seed)
        loss_f, grads_f = loss_and_grads(fast, batch, seed)
        assert close(loss_f, loss_p)
        assert grads_p.keys() == grads_f.keys()
        for name in grads_p:
            assert close(grads_f[name], grads_p[name]), name
        # and the gradient is not trivially zero
        assert grads_p["entity_embedding"].abs().sum() > 0
    for items_only in (False, True):
        torch.manual_seed(3)
        out_p = plain(items_only=items_only)
        torch.manual_seed(3)
        out_f = fast(items_only=items_only)
        assert close(out_f[0], out_p[0]) and close(out_f[1], out_p[1])


def test_cached_backend_equals_torch_backend_in_evaluation(tmp_path):
    plain, fast, train_data = two_models(tmp_path)
    plain.eval()
    fast.eval()
    users = torch.arange(1, plain.n_users)
    from recbole.data.interaction import Interaction

    inter = Interaction({plain.USER_ID: users})
    assert close(fast.full_sort_predict(inter), plain.full_sort_predict(inter))


def test_bad_sparse_backend_names_the_key(tmp_path):
    write_kg_dataset(tmp_path)
    config = create_config("KGIN", "tiny", config_dict=tiny_config(
        tmp_path, sparse_backend="dense"))
    _, train_data, _, _ = load_data(config)
    with pytest.raises(ValueError, match="sparse_backend"):
        KGIN(config, train_data._dataset)


def test_bad_retain_cpu_memory_names_the_key(tmp_path):
    write_kg_dataset(tmp_path)
    config = create_config("KGIN", "tiny", config_dict=tiny_config(
        tmp_path, retain_cpu_memory="yes"))
    _, train_data, _, _ = load_data(config)
    with pytest.raises(ValueError, match="retain_cpu_memory"):
        KGIN(config, train_data._dataset)


def test_retain_freed_memory_is_idempotent():
    from recbole_kgin.model.cpu_memory import retain_freed_memory

    first = retain_freed_memory()
    assert isinstance(first, bool) and retain_freed_memory() is first
