# -*- coding: utf-8 -*-
"""Row-wise L2 normalisation (with an optional dropout mask applied first) as one autograd
function: the same numbers as ``F.normalize(x * noise, p=2, dim=1)`` with a backward of a few
operations instead of the chain autograd records for the norm, its clamp and the division (KGIN
normalises every hop's user and entity output, so this runs ``2 * context_hops`` times per step).
"""

import torch

NORM_EPS = 1e-12  # F.normalize's default


class _NormalizeRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, noise, eps):
        if noise is not None:
            x = x * noise
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        denom = norm.clamp_min(eps)
        out = x / denom
        ctx.save_for_backward(out, denom, norm, noise)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad):
        out, denom, norm, noise = ctx.saved_tensors
        return normalize_rows_backward_(grad.clone(), out, denom, norm, noise, ctx.eps), None, None


def normalize_rows_backward_(grad, out, denom, norm, noise=None, eps=NORM_EPS):
    """Gradient of ``x -> normalize(x * noise)`` from the saved output ``out``, its row norms
    ``norm`` and their clamp ``denom``, computed in place on ``grad``:
    d(x / max(|x|, eps)) is (g - y (g . y)) / |x| where |x| > eps and g / eps where clamped. The
    row-wise dot products come from one batched product, so no [rows x d] temporary is made."""
    dot = torch.bmm(grad.unsqueeze(1), out.unsqueeze(2)).view(-1, 1).mul_(norm > eps)
    grad = grad.addcmul_(out, dot, value=-1.0).div_(denom)
    return grad if noise is None else grad.mul_(noise)


def normalize_rows(x, noise=None, eps=NORM_EPS):
    """``F.normalize(x if noise is None else x * noise, p=2, dim=1, eps=eps)``; only ``x`` gets a
    gradient (``noise`` is a constant mask)."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        if noise is not None:
            x = x * noise
        return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(eps)
    return _NormalizeRows.apply(x, noise, eps)
