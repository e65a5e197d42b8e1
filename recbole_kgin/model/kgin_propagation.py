# -*- coding: utf-8 -*-
"""KGIN's training propagation (``cached`` backend, a batch's users and items) as one autograd
function with a hand-written backward: ``fused_propagation``.

It computes what :meth:`recbole_kgin.model.kgin.KGIN.forward` computes for ``users`` and
``item_ids`` (the same products and sums up to float32 rounding, e.g. ``a * mix + a`` as one
multiply-add, and the same random draws; tested against it and against the ``torch`` backend), and
differs in how:

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

``E'`` and ``U'`` of a hop lie in one buffer (entity rows, then user rows), so that message dropout,
the normalisation and their backward run once per hop over both. The last hop runs over the batch
items' pairs only. Outputs: ``U_0 + sum_h U'_h`` and, for the
batch items, ``E_0 + sum_h E'_h``.

Fewer operations per step, the same result up to rounding (issue 23's count):

* the message-dropout mask keeps its entries at 1 instead of ``1 / (1 - p)``: a row-wise L2
  normalisation follows, which cancels a positive factor (only rows whose norm is below 1e-12,
  where ``F.normalize`` clamps, could differ, and these hold no signal);
* the hops over the full graph share one gather ``R[pair_rel]`` (forward and backward);
* the batch items' pairs (``HopGraph.head_sum`` / ``rel_sum`` None) are summed per head and per
  relation with ``index_add_`` instead of summing matrices built at every step;
* the residual sums' gradients enter through ``addmm``'s input term, the first hop's products
  write the intent and key gradients (no zero-filled accumulators).
"""

import torch

from recbole_kgin.model.fused_ops import NORM_EPS, normalize_rows_backward_
from recbole_kgin.model.sparse_ops import csr_mm


class HopGraph:
    """The constant operands of one hop: the KG pair (``kg``), each pair's relation and head row,
    the head- and relation-summing pairs (None: the pairs are summed with ``index_add_`` over
    ``pair_head`` / ``pair_rel``, for a batch's pairs, whose matrices would be built at every
    step), and the number of entity rows it outputs."""

    __slots__ = ("kg", "pair_rel", "pair_head", "head_sum", "rel_sum", "n_rows", "noise_rows")

    def __init__(self, kg, pair_rel, pair_head, head_sum, rel_sum, n_rows, noise_rows=None):
        self.kg, self.pair_rel, self.pair_head = kg, pair_rel, pair_head
        self.head_sum, self.rel_sum, self.n_rows = head_sum, rel_sum, n_rows
        self.noise_rows = noise_rows  # rows of the entity dropout mask (None: all n_rows)


class Propagation:
    """Everything the function needs besides the differentiable tensors."""

    def __init__(self, hops, inter, n_items, item_ids, users, n_users, dropout, masks, pool):
        """``item_ids`` / ``users``: the batch's item and user rows (None: every item / user; the
        last hop then covers every item and the user input is the whole user table)."""
        self.hops, self.inter, self.n_items = hops, inter, n_items
        self.item_ids, self.users, self.n_users = item_ids, users, n_users
        self.dropout, self.masks, self.pool = dropout, masks, pool  # masks: a DropoutMasks


class _Propagate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, user_base, entity_base, relation, intents, keys, prop):
        from recbole_kgin.model.buffers import Lease

        lease = Lease(prop.pool)
        device, dtype, d = entity_base.device, entity_base.dtype, entity_base.shape[1]
        take = lambda *shape: lease.take(shape, dtype, device)
        n_users = user_base.shape[0]
        E, U = entity_base, user_base
        saved = []
        shared_rel = None  # R[pair_rel] of the full-graph hops: gathered once per step
        for h, hop in enumerate(prop.hops):
            n_pairs, n_e = hop.kg.matrix.shape[0], hop.n_rows
            # the hop's entity and user outputs share one buffer: dropout and normalisation are
            # row-wise, so each runs once over both
            H = take(n_e + n_users, d)
            A_e, A_u = H[:n_e], H[n_e:]
            P = csr_mm(hop.kg.matrix, E, out=take(n_pairs, d))
            if sum(other is hop for other in prop.hops) > 1:  # the same graph in several hops
                if shared_rel is None:  # read again by the backward of every such hop
                    shared_rel = torch.index_select(relation, 0, hop.pair_rel,
                                                    out=take(n_pairs, d))
                rel_rows = shared_rel
                M = torch.mul(rel_rows, P, out=take(n_pairs, d))
            else:
                rel_rows = None
                M = torch.index_select(relation, 0, hop.pair_rel, out=take(n_pairs, d)).mul_(P)
            if hop.head_sum is None:  # a batch's pairs: summed per head row without a matrix
                A_e.zero_().index_add_(0, hop.pair_head, M)
            else:
                csr_mm(hop.head_sum.matrix, M, out=A_e)
            lease.give_back(M)  # the next hop's messages reuse it
            a = csr_mm(prop.inter.matrix, E[: prop.n_items], out=take(n_users, d))
            att = torch.softmax(U @ keys.t(), dim=1)
            mix = att @ intents
            torch.addcmul(a, a, mix, out=A_u)  # a * mix + a
            noise = None
            if prop.dropout > 0.0:
                noise = take(n_e + n_users, d)
                rows = hop.noise_rows  # the mask of every item is drawn
                prop.masks.draw(noise[:n_e], prop.dropout, rows,
                                prop.n_items if rows is not None else None, lease)
                prop.masks.draw(noise[n_e:], prop.dropout, prop.users, prop.n_users, lease)
                # kept entries are 1, not 1 / (1 - p): the normalisation below cancels the factor
                prop.masks.finish(noise, prop.dropout, scale=False)
                H.mul_(noise)
            norm = torch.linalg.vector_norm(H, dim=1, keepdim=True)
            denom = norm.clamp_min(NORM_EPS)
            H.div_(denom)  # in place: the buffer now holds E' and U'
            saved.append(dict(P=P, H=H, norm=norm, denom=denom, noise=noise, U_in=U, att=att,
                              mix=mix, a=a, n_e=n_e, rel_rows=rel_rows))
            E, U = H[:n_e], H[n_e:]
        # residual sums: users in full, entities only at the batch's items
        user_res = torch.add(user_base, saved[0]["H"][saved[0]["n_e"]:])
        for s in saved[1:]:
            user_res.add_(s["H"][s["n_e"]:])
        if prop.item_ids is None:  # every item
            entity_res = entity_base[: prop.n_items].clone()
            for s in saved[:-1]:
                entity_res.add_(s["H"][: prop.n_items])
        else:
            entity_res = entity_base.index_select(0, prop.item_ids)
            for s in saved[:-1]:
                entity_res.add_(s["H"][: s["n_e"]].index_select(0, prop.item_ids))
        entity_res.add_(saved[-1]["H"][: saved[-1]["n_e"]])
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
        grad_intents = grad_keys = None  # the first hop's products write them
        n_users = grad_user_res.shape[0]
        # gradient of the last hop's outputs, stacked as its buffer: batch items, then users
        n_last = saved[-1]["n_e"]
        gH = torch.cat([grad_entity_res, grad_user_res], out=take(n_last + n_users, d))
        grad_entity = grad_user = None
        for h in range(len(prop.hops) - 1, -1, -1):
            hop, s = prop.hops[h], saved[h]
            n_e = s["n_e"]
            gA = normalize_rows_backward_(gH, s["H"], s["denom"], s["norm"], s["noise"])
            gA_e, gA_u = gA[:n_e], gA[n_e:]
            # A_u = a * mix + a
            g_a = torch.addcmul(gA_u, gA_u, s["mix"])  # gA_u * mix + gA_u
            g_mix = gA_u.mul_(s["a"])
            g_att = g_mix @ intents.t()
            if grad_intents is None:
                grad_intents = s["att"].t() @ g_mix
            else:
                grad_intents.addmm_(s["att"].t(), g_mix)
            g_logits = torch._softmax_backward_data(g_att, s["att"], 1, s["att"].dtype)
            if grad_keys is None:
                grad_keys = g_logits.t() @ s["U_in"]
            else:
                grad_keys.addmm_(g_logits.t(), s["U_in"])
            # the gradient of this hop's inputs: the previous hop's stacked outputs (or the base
            # embeddings, returned as gradients: not pool buffers)
            n_in = ctx.n_entities
            # (plus the residual sum's gradient: the input of hop h is in that sum too)
            if h > 0:
                G = take(n_in + n_users, d)
                gE_in, gU_in = G[:n_in], G[n_in:]
                torch.addmm(grad_user_res, g_logits, keys, out=gU_in)
            else:
                G, gE_in, gU_in = None, None, torch.addmm(grad_user_res, g_logits, keys)
            # A_e = HeadSum @ (R[pair_rel] * P)
            n_pairs = s["P"].shape[0]
            gM = torch.index_select(gA_e, 0, hop.pair_head, out=take(n_pairs, d))
            product = s["P"].mul_(gM)  # P is not needed after this
            if hop.rel_sum is None:  # a batch's pairs: summed per relation without a matrix
                grad_relation.index_add_(0, hop.pair_rel, product)
            else:
                grad_relation.addmm_(hop.rel_sum.matrix, product)
            if s["rel_rows"] is not None:
                gP = gM.mul_(s["rel_rows"])
            else:
                gP = gM.mul_(torch.index_select(relation, 0, hop.pair_rel, out=product))
            gE_in = csr_mm(hop.kg.transpose, gP, out=gE_in)
            for done in (gM, s["P"], gH, s["H"], s["noise"]):  # read by nothing after this
                ctx.lease.give_back(done)
            gE_in[: prop.n_items].addmm_(prop.inter.transpose, g_a)
            # the input of hop h: E'_{h-1} (or the base embedding), used by the residual sum too
            if prop.item_ids is None:
                gE_in[: prop.n_items].add_(grad_entity_res)
            else:
                gE_in.index_add_(0, prop.item_ids, grad_entity_res)
            if h > 0:
                gH = G
            else:
                grad_entity, grad_user = gE_in, gU_in
        ctx.lease.release()
        ctx.saved = None
        return grad_user, grad_entity, grad_relation, grad_intents, grad_keys, None


def propagate(user_base, entity_base, relation, intents, keys, prop):
    """``(user rows, batch item rows)`` of the final representations; see the module docstring."""
    return _Propagate.apply(user_base, entity_base, relation, intents, keys, prop)
