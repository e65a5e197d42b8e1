# -*- coding: utf-8 -*-
r"""Explanations of KGIN scores: the paper's case study (Wang et al., WWW 2021, section 4.4) as code.

Everything here is computed from the model's parameters (``user_embedding``, ``entity_embedding``,
``relation_embedding``, ``intent_relation_logits``, ``intent_keys``) and the dataset's graph with a
plain, unoptimised propagation (:func:`propagate`) that keeps every intermediate quantity; tests
check that its final representations and scores equal the model's own.

Two exact, additive decompositions of a score ``y(u, i) = e*_u . e*_i`` are given:

* **by intent** (user side). Every hop's user output is ``(a + sum_p beta_p (a * e_p)) / n`` with the
  hop's aggregate ``a``, intent weights ``beta`` and the scalar ``n`` of the L2 normalisation, so
  ``y = e_u^(0) . e*_i + sum_hops (a . e*_i) / n + sum_p sum_hops beta_p ((a * e_p) . e*_i) / n``:
  a base term, a collaborative term and one term per intent;
* **by KG path** (item side). Every hop's entity output is a normalised mean over edges of
  ``e_r * e_t``, so the item's hop-``l`` output is a weighted sum over its ``l``-step paths
  ``i -r1-> v1 -r2-> ... -rl-> v_l`` of ``(e_r1 * ... * e_rl * e_{v_l}^(0))``; grouping the paths by
  relation sequence gives ``y = e*_u . e_i^(0) + sum_{sequences} contribution``.
"""

from collections import defaultdict

import numpy as np
import scipy.sparse as sp
import torch

from recbole_kgin.model.fused_ops import NORM_EPS  # F.normalize's eps


def kg_edges(model, dataset):
    """The KG edges KGIN propagates over: ``(head, relation, tail)`` int64 arrays, relations
    numbered 0 .. Rk-1 (RecBole's ``[PAD]`` removed), duplicates dropped when ``kg_dedup`` is on."""
    head = np.asarray(dataset.head_entities, dtype=np.int64)
    tail = np.asarray(dataset.tail_entities, dtype=np.int64)
    rel = np.asarray(dataset.relations, dtype=np.int64) - 1
    if getattr(model, "kg_dedup", True):
        triples = np.unique(np.stack([head, rel, tail], axis=1), axis=0)
        head, rel, tail = triples[:, 0], triples[:, 1], triples[:, 2]
    return head, rel, tail


def relation_names(dataset):
    """Names of KGIN's relations 0 .. Rk-1 (inverse relations end in ``_r``)."""
    tokens = list(dataset.field2id_token[dataset.relation_field])
    return [str(t) for t in tokens[1:-1]]


def intent_relation_weights(model):
    """[F, Rk]: every intent's attention over relations, ``softmax(W[p])``."""
    return torch.softmax(model.intent_relation_logits.detach(), dim=1)


@torch.no_grad()
def propagate(model, dataset, edges=None):
    """KGIN's evaluation-time propagation, written plainly, keeping every hop.

    Returns a dict: ``user``, ``entity`` (final representations), per hop lists ``user_agg``
    (``a``), ``user_norm`` / ``entity_norm`` (the normalisation scalars), ``beta`` ([n_users, F]
    intent weights), ``entity_hops`` (the entity representations entering each hop, then the
    last one) and ``intents`` ([F, d]). ``edges``: ``(head, relation, tail)`` to propagate over
    instead of the dataset's (e.g. with some removed).
    """
    head, rel, tail = kg_edges(model, dataset) if edges is None else edges
    n_entities = model.entity_embedding.shape[0]
    n_items = model.n_items
    head_t, rel_t, tail_t = (torch.from_numpy(a) for a in (head, rel, tail))
    degree = torch.bincount(head_t, minlength=n_entities).clamp(min=1).to(torch.float32)

    inter = dataset.inter_matrix(form="coo").tocsr()
    inter.sum_duplicates()
    inter.data[:] = 1.0
    row_deg = np.maximum(np.asarray(inter.sum(axis=1)).ravel(), 1.0)
    norm_inter = sp.diags(1.0 / row_deg) @ inter
    norm_inter = norm_inter.tocoo()
    inter_t = torch.sparse_coo_tensor(
        np.vstack([norm_inter.row, norm_inter.col]), norm_inter.data.astype(np.float32),
        norm_inter.shape, check_invariants=True).coalesce()

    relation = model.relation_embedding.detach()
    intents = intent_relation_weights(model) @ relation
    keys = model.intent_keys.detach()
    user, entity = model.user_embedding.detach(), model.entity_embedding.detach()
    user_res, entity_res = user.clone(), entity.clone()
    out = {"user_agg": [], "user_norm": [], "entity_norm": [], "beta": [], "intents": intents,
           "user_input": [], "entity_hops": [entity]}
    for _ in range(model.context_hops):
        messages = relation[rel_t] * entity[tail_t]
        entity_agg = torch.zeros_like(entity).index_add_(0, head_t, messages) / degree[:, None]
        user_agg = torch.sparse.mm(inter_t, entity[:n_items])
        beta = torch.softmax(user @ keys.t(), dim=1)
        user_out = user_agg * (beta @ intents) + user_agg
        entity_norm = entity_agg.norm(dim=1).clamp(min=NORM_EPS)
        user_norm = user_out.norm(dim=1).clamp(min=NORM_EPS)
        out["user_input"].append(user)
        out["user_agg"].append(user_agg)
        out["beta"].append(beta)
        out["user_norm"].append(user_norm)
        out["entity_norm"].append(entity_norm)
        entity = entity_agg / entity_norm[:, None]
        out["entity_hops"].append(entity)
        user = user_out / user_norm[:, None]
        entity_res = entity_res + entity
        user_res = user_res + user
    out["user"], out["entity"] = user_res, entity_res
    out["edges"] = (head, rel, tail)
    out["degree"] = degree
    return out


def intent_decomposition(model, prop, user, item):
    """Score of (user, item) split into ``base``, ``collaborative`` and one term per intent; the
    terms sum to the score."""
    item_vec = prop["entity"][item]
    base = float(model.user_embedding.detach()[user] @ item_vec)
    collaborative = 0.0
    per_intent = np.zeros(prop["intents"].shape[0])
    for hop in range(len(prop["user_agg"])):
        agg = prop["user_agg"][hop][user]
        scale = float(prop["user_norm"][hop][user])
        collaborative += float(agg @ item_vec) / scale
        intent_terms = ((agg[None, :] * prop["intents"]) @ item_vec).numpy() / scale
        per_intent += prop["beta"][hop][user].numpy() * intent_terms
    return {"base": base, "collaborative": collaborative, "intents": per_intent.tolist()}


def path_decomposition(model, prop, user, item, max_sequences=None):
    """``e*_u . e*_i`` split by KG relation sequence (paths from the item, up to the model's hops)
    plus the item's own embedding term ``item_self``. Returns ``(item_self, {sequence: value})``
    where a sequence is a tuple of relation indices; the parts sum to the score."""
    head, rel, tail = prop["edges"]
    n_entities = model.entity_embedding.shape[0]
    n_rel = model.relation_embedding.shape[0]
    user_vec = prop["user"][user].numpy().astype(np.float64)
    relation = model.relation_embedding.detach().numpy().astype(np.float64)
    ego = model.entity_embedding.detach().numpy().astype(np.float64)
    degree = prop["degree"].numpy().astype(np.float64)
    hops = len(prop["entity_norm"])
    item_self = float(user_vec @ ego[item])
    # per relation, an [entities x entities] matrix of edge multiplicities
    by_rel = [sp.csr_matrix((np.ones(int((rel == r).sum())), (head[rel == r], tail[rel == r])),
                            shape=(n_entities, n_entities)) for r in range(n_rel)]
    contributions = defaultdict(float)
    for length in range(1, hops + 1):
        # weights over entities reached by each relation sequence of this length from the item;
        # the k-th step leaves an entity computed at hop (length - k + 1): its 1 / (deg * norm)
        frontier = {(): sp.csr_matrix(([1.0], ([0], [item])), shape=(1, n_entities))}
        for step in range(length):
            level = length - step  # hop (1-based) of the entity being left
            scale = 1.0 / (degree * prop["entity_norm"][level - 1].numpy().astype(np.float64))
            nxt = {}
            for seq, weights in frontier.items():
                scaled = weights.multiply(scale[None, :]).tocsr()
                for r in range(n_rel):
                    reached = scaled @ by_rel[r]
                    if reached.nnz:
                        nxt[seq + (r,)] = reached
            frontier = nxt
        for seq, weights in frontier.items():
            vec = user_vec.copy()
            for r in seq:
                vec = vec * relation[r]
            idx = weights.indices
            contributions[seq] += float(weights.data @ (ego[idx] @ vec))
    items = sorted(contributions.items(), key=lambda kv: -abs(kv[1]))
    if max_sequences is not None:
        items = items[:max_sequences]
    return item_self, dict(items)


def explain_user(model, dataset, prop, user, top_relations=3):
    """The user's intent weights (hop 1 = the base embedding, as in the paper, and every hop) and
    each intent's top relations by attention weight."""
    names = relation_names(dataset)
    weights = intent_relation_weights(model).numpy()
    intents = []
    for p in range(weights.shape[0]):
        order = np.argsort(-weights[p])[:top_relations]
        intents.append({
            "intent": p,
            "weight": float(prop["beta"][0][user][p]),
            "weight_per_hop": [float(b[user][p]) for b in prop["beta"]],
            "top_relations": [{"relation": names[r], "attention": float(weights[p][r])}
                              for r in order],
        })
    return intents


def model_scores(model, users):
    """The model's own scores for ``users`` (internal ids) over all items: [len(users), n_items]."""
    from recbole.data.interaction import Interaction

    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(Interaction({model.USER_ID: torch.as_tensor(users)}))
    return scores.reshape(len(users), -1)


def check_against_model(model, prop, atol=1e-4):
    """The plain propagation's final item representations scored against the model's scores."""
    ours = prop["user"] @ prop["entity"][: model.n_items].t()
    theirs = model_scores(model, list(range(model.n_users)))
    return bool(torch.allclose(ours, theirs, atol=atol)), float((ours - theirs).abs().max())
