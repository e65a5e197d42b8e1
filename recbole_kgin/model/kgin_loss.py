# -*- coding: utf-8 -*-
"""KGIN's loss terms as autograd functions with written-out backwards (``fused_loss``).

The plain forms (:meth:`recbole_kgin.model.kgin.KGIN.calculate_loss` with ``fused_loss: False`` and
:func:`recbole_kgin.model.kgin.distance_independence`) record one autograd node per operation;
these compute the same values (equal up to float32 rounding: some sums run in another order) and
the same gradients in fewer operations, which on a GPU means fewer kernel launches per step.

* :func:`bpr_l2_loss`: ``BPR + reg_weight * L2 + ind_weight * ind`` from the rows of the batch's
  users and items, with the gathers of each pair's rows inside (their backward is two
  ``index_add_`` instead of zero-filled scatters per gather).
* :func:`distance_independence`: the sum over intent pairs of the distance correlation, with the
  gradient of the double centring, the Gram matrix and the pairwise distances written out
  (20 operations forward and 23 backward, against 26 and 30 when it reproduced the plain form's
  rounding; the plain form's expanded square now only appears with ``fused_loss: False``).
"""

import torch
import torch.nn.functional as F


class _BPRL2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, user_rows, item_rows, ind, user_pos, item_pos, reg_weight, ind_weight):
        batch = user_pos.shape[0]
        u = user_rows.index_select(0, user_pos)
        pos_neg = item_rows.index_select(0, item_pos)  # positives, then negatives
        pos, neg = pos_neg[:batch], pos_neg[batch:]
        diff = pos - neg
        x = torch.bmm(u.unsqueeze(1), diff.unsqueeze(2)).view(-1)  # pos score - neg score
        flat_u, flat_pn = u.view(-1), pos_neg.view(-1)
        squares = torch.dot(flat_u, flat_u).add_(torch.dot(flat_pn, flat_pn))
        # -mean(log sigmoid(x)) + reg_weight * squares / 2 / batch
        loss = F.logsigmoid(x).sum().mul_(-1.0 / batch).add_(squares, alpha=reg_weight / 2.0 / batch)
        if ind is not None:
            loss = loss.add_(ind, alpha=ind_weight)
        ctx.save_for_backward(u, pos_neg, diff, x, user_pos, item_pos)
        ctx.shapes = user_rows.shape, item_rows.shape
        ctx.weights = reg_weight, ind_weight, ind is not None
        return loss

    @staticmethod
    def backward(ctx, grad):
        u, pos_neg, diff, x, user_pos, item_pos = ctx.saved_tensors
        reg_weight, ind_weight, has_ind = ctx.weights
        batch = user_pos.shape[0]
        # d/dx of -log sigmoid(x) / batch is (sigmoid(x) - 1) / batch
        coef = torch.sigmoid(x).sub_(1.0).mul_(grad * (1.0 / batch)).unsqueeze(1)
        l2 = grad * (reg_weight / batch)
        g_u = torch.mul(diff, coef).addcmul_(u, l2)
        g_pn = torch.mul(pos_neg, l2)
        g_pn[:batch].addcmul_(u, coef)
        g_pn[batch:].addcmul_(u, coef, value=-1.0)
        user_shape, item_shape = ctx.shapes
        g_users = u.new_zeros(user_shape).index_add_(0, user_pos, g_u)
        g_items = u.new_zeros(item_shape).index_add_(0, item_pos, g_pn)
        g_ind = grad * ind_weight if has_ind else None
        return g_users, g_items, g_ind, None, None, None, None


def bpr_l2_loss(user_rows, item_rows, user_pos, item_pos, reg_weight, ind=None, ind_weight=0.0):
    """``-mean log sigmoid(u.p - u.n) + reg_weight * (|u|^2 + |p|^2 + |n|^2) / 2 / B
    + ind_weight * ind`` for the B pairs whose user is row ``user_pos[k]`` of ``user_rows`` and
    whose positive and negative items are rows ``item_pos[k]`` and ``item_pos[B + k]`` of
    ``item_rows`` (``ind``: an optional 0-dim loss term)."""
    return _BPRL2.apply(user_rows, item_rows, ind, user_pos, item_pos, float(reg_weight),
                        float(ind_weight))


_UPPER = {}  # (n, dtype, device) -> the [n, n] 0/1 matrix of the pairs p < q, made once


def _upper(n, like):
    key = (n, like.dtype, like.device)
    if key not in _UPPER:
        _UPPER[key] = torch.ones(n, n, dtype=like.dtype, device=like.device).triu_(diagonal=1)
    return _UPPER[key]


class _DistanceIndependence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, eps):
        n_intents, n = weight.shape
        # [F, n, n]: |w_i - w_j| of every row from the differences themselves (the plain form
        # expands the square, which cancels in float32 where two entries are close; the same
        # value otherwise, up to rounding), kept for the backward
        diff = weight.unsqueeze(2) - weight.unsqueeze(1)
        dist = diff.square().add_(eps).sqrt_()
        # double centring; dist is symmetric, so its column means are its row means
        row_mean = dist.mean(dim=2, keepdim=True)
        centred = torch.sub(dist, row_mean).sub_(row_mean.transpose(1, 2)).add_(
            row_mean.mean(dim=1, keepdim=True))
        flat = centred.view(n_intents, n * n)
        gram = torch.mm(flat, flat.t()).div_(n * n)
        dcov = gram.clamp_min(0.0).add_(eps).sqrt_()
        diag = dcov.diagonal()
        denom = torch.outer(diag, diag).add_(eps).sqrt_()
        dcor = dcov / denom
        upper = _upper(n_intents, weight)
        ctx.save_for_backward(diff, dist, flat, gram, dcov, diag, denom, dcor, upper)
        return torch.dot(dcor.view(-1), upper.view(-1))  # the sum over p < q

    @staticmethod
    def backward(ctx, grad):
        diff, dist, flat, gram, dcov, diag, denom, dcor, upper = ctx.saved_tensors
        n_intents, n = diff.shape[0], diff.shape[1]
        g_dcov = torch.mul(upper, grad).div_(denom)
        # through denom_pq = sqrt(dcov_pp dcov_qq + eps): d/d(dcov_pp dcov_qq)
        g_prod = torch.mul(g_dcov, dcor).div_(denom).mul_(-0.5)
        g_dcov.diagonal().add_(torch.mv(g_prod + g_prod.t(), diag))
        # dcov = sqrt(max(gram, 0) + eps), gram = flat flat^T / n^2; the factor 2 of each
        # distance's two entries (below) is folded in here: 0.5 * 2 = 1
        g_gram = g_dcov.div_(dcov).mul_(1.0 / (n * n)).mul_(gram >= 0)
        g_centred = torch.mm(g_gram + g_gram.t(), flat).view(n_intents, n, n)
        # the centring's adjoint (g_centred is symmetric), then both entries of every distance:
        # d dist_ij / d w_i = (w_i - w_j) / dist_ij = - d dist_ij / d w_j
        row_mean = g_centred.mean(dim=2, keepdim=True)
        sym = g_centred.sub_(row_mean).sub_(row_mean.transpose(1, 2)).add_(
            row_mean.mean(dim=1, keepdim=True))
        return sym.mul_(diff).div_(dist).sum(dim=2), None


def distance_independence(weight, eps=1e-8):
    r"""Sum over intent pairs p < q of the distance correlation between ``weight[p]`` and
    ``weight[q]``: the value of :func:`recbole_kgin.model.kgin.distance_independence` and its
    gradient, up to rounding (the distances come from the differences, not from the expanded
    square: more accurate where two entries of a row are close)."""
    return _DistanceIndependence.apply(weight, eps)
