"""``fused_loss`` (recbole_kgin/model/kgin_loss.py) against the plain forms: the same values, and
gradients equal to the plain autograd ones (float64: to 1e-12; float32: to rounding) and to
finite differences (gradcheck)."""

import pytest
import torch
import torch.nn.functional as F

from recbole_kgin.model import kgin, kgin_loss


def plain_bpr_l2(user_rows, item_rows, user_pos, item_pos, reg_weight, ind, ind_weight):
    batch = user_pos.shape[0]
    u, p, n = user_rows[user_pos], item_rows[item_pos[:batch]], item_rows[item_pos[batch:]]
    bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    l2 = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / 2.0 / batch
    return bpr + reg_weight * l2 + ind_weight * ind


def bpr_inputs(dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    users = torch.randn(7, 6, dtype=dtype, generator=g).to(device).requires_grad_()
    items = torch.randn(9, 6, dtype=dtype, generator=g).to(device).requires_grad_()
    ind = torch.tensor(0.3, dtype=dtype, device=device, requires_grad=True)
    # repeated users and items, an item that is positive and negative, unused rows
    user_pos = torch.tensor([0, 1, 1, 3, 6], device=device)
    item_pos = torch.tensor([0, 2, 8, 4, 4, 1, 3, 3, 5, 2], device=device)
    return users, items, ind, user_pos, item_pos


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bpr_l2_loss_equals_the_plain_loss_and_gradients(dtype, device):
    users, items, ind, user_pos, item_pos = bpr_inputs(dtype, device)
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=1e-6, rtol=1e-5)
    fused = kgin_loss.bpr_l2_loss(users, items, user_pos, item_pos, 0.1, ind, 0.7)
    plain = plain_bpr_l2(users, items, user_pos, item_pos, 0.1, ind, 0.7)
    assert torch.allclose(fused, plain, **tol)
    g_fused = torch.autograd.grad(fused, (users, items, ind))
    g_plain = torch.autograd.grad(plain, (users, items, ind))
    for a, b in zip(g_fused, g_plain):
        assert torch.allclose(a, b, **tol)
    assert torch.all(g_fused[0][[2, 4, 5]] == 0)  # rows no pair reads get no gradient
    assert g_fused[1][2].abs().sum() > 0  # positive of one pair, negative of another


def test_bpr_l2_loss_gradcheck_and_without_independence_term():
    users, items, ind, user_pos, item_pos = bpr_inputs(torch.float64, "cpu", seed=1)
    assert torch.autograd.gradcheck(
        lambda u, i, d: kgin_loss.bpr_l2_loss(u, i, user_pos, item_pos, 0.05, d, 2.0),
        (users, items, ind))
    fused = kgin_loss.bpr_l2_loss(users, items, user_pos, item_pos, 0.1)
    zero = torch.zeros((), dtype=torch.float64)
    assert torch.allclose(fused, plain_bpr_l2(users, items, user_pos, item_pos, 0.1, zero, 0.0))


@pytest.mark.parametrize("shape", [(4, 9), (2, 3), (6, 16)])
def test_distance_independence_equals_the_plain_form(shape, device):
    g = torch.Generator().manual_seed(sum(shape))
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        weight = torch.randn(*shape, dtype=dtype, generator=g).to(device).requires_grad_()
        fused, plain = kgin_loss.distance_independence(weight), kgin.distance_independence(weight)
        assert torch.allclose(fused, plain, atol=tol, rtol=tol)
        (g_fused,), (g_plain,) = (torch.autograd.grad(v, weight) for v in (fused, plain))
        assert torch.allclose(g_fused, g_plain, atol=tol, rtol=tol)
        assert g_plain.abs().max() > 1e-3


def test_distance_independence_gradcheck_with_equal_entries():
    """Two equal entries in a row (a zero distance, where the square root's eps matters) and a
    clamped Gram entry do not break the written-out gradient."""
    weight = torch.randn(3, 5, dtype=torch.float64)
    weight[0, 1] = weight[0, 3]
    weight.requires_grad_()
    assert torch.autograd.gradcheck(kgin_loss.distance_independence, (weight,))
    g_fused, = torch.autograd.grad(kgin_loss.distance_independence(weight), weight)
    g_plain, = torch.autograd.grad(kgin.distance_independence(weight), weight)
    assert torch.allclose(g_fused, g_plain, atol=1e-9, rtol=1e-9)


def test_distance_independence_is_accurate_where_entries_are_close():
    """Two entries of a row 1e-4 apart: in float32 the expanded square of the plain form cancels,
    the differences do not. Measured against the float64 value (the same in both forms), the fused
    float32 value is at least as close as the plain one."""
    g = torch.Generator().manual_seed(3)
    weight = torch.randn(4, 12, dtype=torch.float64, generator=g)
    weight[1, 5] = weight[1, 2] + 1e-4
    weight[3, 0] = weight[3, 7] - 2e-4
    truth = kgin.distance_independence(weight)
    assert torch.allclose(kgin_loss.distance_independence(weight), truth, atol=1e-12, rtol=1e-12)
    w32 = weight.float()
    err_fused = (kgin_loss.distance_independence(w32).double() - truth).abs()
    err_plain = (kgin.distance_independence(w32).double() - truth).abs()
    assert err_fused <= err_plain
    assert err_fused < 1e-5
