# -*- coding: utf-8 -*-
"""KGIN's training propagation (``cached`` backend, a batch's users and items) as one autograd
function with a hand-written backward: ``fused_propagation``.

It computes what :meth:`recbole_kgin.model.kgin.KGIN.forward` computes for ``users`` and
``item_ids`` (same operations in the same order, same random draws; tested against it and against
the ``torch`` backend), and differs in how:

* the large work tensors ([pairs x d], [entities x d]) come from a
  :class:`~recbole_kgin.model.buffers.BufferPool` kept by the model, so that a step allocates almost
  nothing large and its speed does not depend on how the C allocator treats freed memory;
* the backward pass is written out: no autograd node per operation, no gradient accumulation of
  [entities x d] tensors at every fan-out, no zero-filled slice gradients, and the residual sums are
  kept only for the batch's items (the output reads no other row).

Per hop ``h`` (inputs ``E`` entities, ``U`` the batch's users; ``K`` intent keys, ``I`` intents,
``R`` relation embeddings)::

    P = KG @ E;  A_e = HeadSum @ (R[pair_rel] * P)
    a = Inter @ E[:n_items];  att = softmax(U K^T);  A_u = a * (att I) + a
    E' = normalize(A_e * noise_e);  U' = normalize(A_u * noise_u)

The last hop runs over the batch items' pairs only. Outputs: ``U_0 + sum_h U'_h`` and, for the
batch items, ``E_0 + sum_h E'_h``.
"""

import torch

from recbole_kgin.model.fused_ops import NORM_EPS, normalize_rows_backward_
from recbole_kgin.model.sparse_ops import csr_mm


class HopGraph:
    """The constant operands of one hop: the KG pair (``kg``), each pair's relation and head row,
    the head- and relation-summing pairs, and the number of entity rows it outputs."""

    __slots__ = ("kg", "pair_rel", "pair_head", "head_sum", "rel_sum", "n_rows", "noise_rows")

    def __init__(self, kg, pair_rel, pair_head, head_sum, rel_sum, n_rows, noise_rows=None):
        self.kg, self.pair_rel, self.pair_head = kg, pair_rel, pair_head
        self.head_sum, self.rel_sum, self.n_rows = head_sum, rel_sum, n_rows
        self.noise_rows = noise_rows  # rows of the entity dropout mask (None: all n_rows)


class Propagation:
    """Everything the function needs besides the differentiable tensors."""

    def __init__(self, hops, inter, n_items, item_ids, users, n_users, dropout, noise, pool):
        self.hops, self.inter, self.n_items = hops, inter, n_items
        self.item_ids, self.users, self.n_users = item_ids, users, n_users
        self.dropout, self.noise, self.pool = dropout, noise, pool


class _Propagate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, user_base, entity_base, relation, intents, keys, prop):
        from recbole_kgin.model.buffers import Lease

        lease = Lease(prop.pool)
        device, dtype, d = entity_base.device, entity_base.dtype, entity_base.shape[1]
        take = lambda *shape: lease.take(shape, dtype, device)
        E, U = entity_base, user_base
        saved = []
        for h, hop in enumerate(prop.hops):
            n_pairs = hop.kg.matrix.shape[0]
            P = csr_mm(hop.kg.matrix, E, out=take(n_pairs, d))
            M = torch.index_select(relation, 0, hop.pair_rel, out=take(n_pairs, d)).mul_(P)
            A_e = csr_mm(hop.head_sum.matrix, M, out=take(hop.n_rows, d))
            lease.give_back(M)  # the next hop's messages reuse it
            a = csr_mm(prop.inter.matrix, E[: prop.n_items])
            att = torch.softmax(U @ keys.t(), dim=1)
            mix = att @ intents
            A_u = (a * mix).add_(a)
            noise_e = noise_u = None
            if prop.dropout > 0.0:
                rows = hop.noise_rows  # the mask of every item is drawn
                noise_e = prop.noise(A_e, prop.dropout, rows,
                                     prop.n_items if rows is not None else None, lease)
                noise_u = prop.noise(A_u, prop.dropout, prop.users, prop.n_users, lease)
                A_e.mul_(noise_e)
                A_u = A_u.mul_(noise_u)
            norm_e = torch.linalg.vector_norm(A_e, dim=1, keepdim=True)
            denom_e = norm_e.clamp_min(NORM_EPS)
            E_next = A_e.div_(denom_e)  # in place: the buffer now holds E'
            norm_u = torch.linalg.vector_norm(A_u, dim=1, keepdim=True)
            denom_u = norm_u.clamp_min(NORM_EPS)
            U_next = A_u.div_(denom_u)
            saved.append(dict(P=P, E_out=E_next, norm_e=norm_e, denom_e=denom_e,
                              noise_e=noise_e, U_in=U, att=att, mix=mix, a=a, U_out=U_next,
                              norm_u=norm_u, denom_u=denom_u, noise_u=noise_u))
            E, U = E_next, U_next
        # residual sums: users in full, entities only at the batch's items
        user_res = user_base.clone()
        for s in saved:
            user_res.add_(s["U_out"])
        entity_res = entity_base.index_select(0, prop.item_ids)
        for s in saved[:-1]:
            entity_res.add_(s["E_out"].index_select(0, prop.item_ids))
        entity_res.add_(saved[-1]["E_out"])
        ctx.saved, ctx.prop, ctx.lease = saved, prop, lease
        ctx.save_for_backward(relation, intents, keys)
        ctx.n_entities = entity_base.shape[0]
        lease.bind(ctx)
        return user_res, entity_res

    @staticmethod
    def backward(ctx, grad_user_res, grad_entity_res):
        if ctx.lease.released:
            raise RuntimeError("fused_propagation: a second backward through the same step "
                               "(retain_graph) needs fused_propagation: False")
        relation, intents, keys = ctx.saved_tensors
        prop, saved = ctx.prop, ctx.saved
        device, dtype, d = relation.device, relation.dtype, relation.shape[1]
        take = lambda *shape: ctx.lease.take(shape, dtype, device)
        grad_relation = torch.zeros_like(relation)
        grad_intents = torch.zeros_like(intents)
        grad_keys = torch.zeros_like(keys)
        grad_user_res = grad_user_res.contiguous()
        grad_entity_res = grad_entity_res.contiguous()
        gE = grad_entity_res.clone()  # gradient of the last hop's entity output (batch items)
        gU = grad_user_res.clone()
        grad_entity = None
        for h in range(len(prop.hops) - 1, -1, -1):
            hop, s = prop.hops[h], saved[h]
            gA_e = normalize_rows_backward_(gE, s["E_out"], s["denom_e"], s["norm_e"], s["noise_e"])
            gA_u = normalize_rows_backward_(gU, s["U_out"], s["denom_u"], s["norm_u"], s["noise_u"])
            # A_u = a * mix + a
            g_a = (gA_u * s["mix"]).add_(gA_u)
            g_mix = gA_u.mul_(s["a"])
            g_att = g_mix @ intents.t()
            grad_intents.addmm_(s["att"].t(), g_mix)
            g_logits = torch._softmax_backward_data(g_att, s["att"], 1, s["att"].dtype)
            grad_keys.addmm_(g_logits.t(), s["U_in"])
            gU_in = g_logits @ keys
            # A_e = HeadSum @ (R[pair_rel] * P)
            n_pairs = s["P"].shape[0]
            gM = torch.index_select(gA_e, 0, hop.pair_head, out=take(n_pairs, d))
            product = s["P"].mul_(gM)  # P is not needed after this
            grad_relation.add_(csr_mm(hop.rel_sum.matrix, product))
            gP = gM.mul_(torch.index_select(relation, 0, hop.pair_rel, out=product))
            n_in = ctx.n_entities
            gE_in = csr_mm(hop.kg.transpose, gP, out=(take(n_in, d) if h > 0 else None))
            for done in (gM, s["P"], gE, s["E_out"], s["noise_e"]):  # read by nothing after this
                ctx.lease.give_back(done)
            g_inter = csr_mm(prop.inter.transpose, g_a, out=take(prop.n_items, d))
            gE_in[: prop.n_items].add_(g_inter)
            ctx.lease.give_back(g_inter)
            # the input of hop h: E'_{h-1} (or the base embedding), used by the residual sum too
            gE_in.index_add_(0, prop.item_ids, grad_entity_res)
            gU = gU_in.add_(grad_user_res)
            if h > 0:
                gE = gE_in
            else:
                grad_entity = gE_in
        ctx.lease.release()
        ctx.saved = None
        return gU, grad_entity, grad_relation, grad_intents, grad_keys, None


def propagate(user_base, entity_base, relation, intents, keys, prop):
    """``(user rows, batch item rows)`` of the final representations; see the module docstring."""
    return _Propagate.apply(user_base, entity_base, relation, intents, keys, prop)
