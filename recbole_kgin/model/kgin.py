# -*- coding: utf-8 -*-
r"""
KGIN
##################################################
Reference:
    Xiang Wang, Tinglin Huang, Dingxian Wang, Yancheng Yuan, Zhenguang Liu, Xiangnan He and
    Tat-Seng Chua. "Learning Intents behind Interactions with Knowledge Graph for Recommendation."
    In WWW 2021 (arXiv:2102.07057).

What this implementation computes (d = embedding size, F = number of intents, Rk = number of
knowledge-graph relations, inverse relations included when ``kg_reverse_r`` is on):

* intents ``e_p = sum_r softmax_r(W[p])_r * e_r`` with ``W`` of shape [F, Rk];
* per hop, relational path-aware entity aggregation ``e_h' = mean_{(h,r,t)} e_r * e_t``
  (an entity with no outgoing edge gets 0);
* per hop, intent-aware user aggregation ``a_u = sum_i A_hat[u, i] e_i`` (``A_hat = D^-1 A`` of the
  training interactions), ``beta(u, p) = softmax_p(e_u . L_p)`` with the current hop's ``e_u``,
  ``e_u' = a_u * (sum_p beta(u, p) e_p) + a_u``;
* message dropout (training only), then row-wise L2 normalisation of every hop's output;
* final representations = base embedding + sum of the normalised hop outputs; ``y(u, i) = e_u . e_i``;
* loss = BPR + ``reg_weight`` * (|e_u|^2 + |e_i+|^2 + |e_i-|^2) / 2 / batch + ``sim_regularity`` * IND,
  IND in {``distance``, ``cosine``, ``mi``} over the rows of ``W``.

Differences from RecBole 1.2.1's built-in KGIN: intents attend over the KG relations only (not
RecBole's ``[PAD]`` or ``[UI-Relation]`` tokens), node dropout uses ``node_dropout_rate`` and is applied
only while training, evaluation is deterministic and cached, the independence losses are vectorised,
and aggregation uses native torch ops (no compiled extension).

Switchable choices (see ``properties/model/KGIN.yaml``):

* ``node_dropout_semantics``: ``drop`` (default) keeps a fraction ``1 - node_dropout_rate`` of the KG
  edges and drops interaction entries with probability ``node_dropout_rate``; ``reference`` keeps a
  fraction ``node_dropout_rate`` of both, like the authors' code. Both agree at the published 0.5.
* ``kg_dedup``: drop duplicate (h, r, t) triplets, as the authors' graph construction does.
* ``joint_init``: draw user and entity embeddings with one Xavier bound computed over the stacked
  [users + entities, d] table, as the authors' code does; ``False`` uses a bound per table.
* ``user_propagation`` (``cached`` backend, training): ``batch`` (default) propagates only the users
  of the step's batch, and the last hop only for the batch's items. A user's hop output depends on
  that user's own interactions and embedding and on the items, never on another user; the last
  hop's entity outputs are read only at the batch's items; and the loss reads only these rows, so
  the loss and every gradient are those of ``all`` (every user and item, as the authors' code), which
  is tested. Message
  dropout of the user rows draws the mask of every user and keeps the batch's rows, so on CPU the
  random numbers are those of ``all`` too; on CUDA ``all`` uses torch's fused dropout kernel and the
  masks differ (same distribution).

* ``fused_propagation`` (``cached`` backend, training with ``user_propagation: batch``): the
  propagation as one autograd function with a written-out backward and work buffers reused between
  steps (:mod:`recbole_kgin.model.kgin_propagation`); ``fused_normalize``: message dropout + L2
  normalisation as one autograd function; ``relation_messages``: ``gather`` or ``blocks``;
  ``fused_loss``: BPR + L2 (with the gathers of each pair's rows) and the distance independence
  loss as autograd functions with written-out backwards (:mod:`recbole_kgin.model.kgin_loss`). All
  four compute the same loss and gradients as their plain forms (tested).
* ``static_graph`` (off by default; training, with ``fused_propagation``): node dropout as zero
  values on the full cached graph, every user propagated and the last hop over every item, so that
  every step has the same sparse structure and shapes (:meth:`KGIN._static_graph`); the same loss
  and gradients (tested). It is what ``cuda_graph`` (:mod:`recbole_kgin.graphed_step`) records.

Message dropout draws its masks with :class:`DropoutMasks` (on CPU from NumPy's PCG64, one seed per
step from torch's generator): the same distribution as ``nn.Dropout``, other random numbers.
"""

import math
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole.model.abstract_recommender import KnowledgeRecommender
from recbole.utils import InputType

from recbole_kgin.model import kgin_loss
from recbole_kgin.model.cpu_memory import apply_setting
from recbole_kgin.model.fused_ops import normalize_rows
from recbole_kgin.model.options import bool_option
from recbole_kgin.model.sparse_ops import (CachedPattern, group_sum, ragged_ranges,
                                          relation_aggregate, spmm)

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

IND_TYPES = ("distance", "cosine", "mi")
DROPOUT_SEMANTICS = ("drop", "reference")
SPARSE_BACKENDS = ("cached", "torch")
USER_PROPAGATION = ("batch", "all")
RELATION_MESSAGES = ("gather", "blocks")


def _inverse_degrees(head, n_rows, dtype):
    """``1 / max(deg, 1)`` per row, ``deg`` the number of entries of ``head`` equal to the row: 3
    operations in torch's default float dtype (the reciprocal of the integer counts), 4 otherwise;
    the same numbers either way (the counts are exact in every float dtype)."""
    deg = torch.bincount(head, minlength=n_rows).clamp_(min=1)
    if dtype != torch.get_default_dtype():
        deg = deg.to(dtype)
    return torch.reciprocal(deg)


def _require(config, key, check, expected):
    """Read ``config[key]`` and raise a one-line ValueError naming the key when it is invalid."""
    value = config[key]
    if value is None or not check(value):
        raise ValueError(f"config key '{key}' = {value!r}: expected {expected}")
    return value


def cosine_independence(weight):
    r"""Sum over intent pairs p < q of cos^2(W[p], W[q])."""
    unit = F.normalize(weight, p=2, dim=1)
    sim = unit @ unit.t()
    return torch.triu(sim.pow(2), diagonal=1).sum()


def mi_independence(weight, temperature):
    r"""InfoNCE over intents: sum_p -log(exp(s_pp / t) / sum_q exp(s_pq / t)), s = cosine."""
    unit = F.normalize(weight, p=2, dim=1)
    logits = (unit @ unit.t()) / temperature
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).sum()


def message_dropout(x, p, rows=None, n_rows=None):
    """Dropout of the rows of ``x`` (training): each entry is kept with probability 1 - p and
    scaled by 1 / (1 - p), as ``F.dropout``.

    With ``rows`` (increasing ids of ``x``'s rows among ``n_rows``) the mask of all ``n_rows`` rows
    is drawn and these rows are used, so the random numbers do not depend on which rows are
    computed. On CPU the uniform numbers come from NumPy's PCG64 seeded from torch's generator
    (reproducible under ``torch.manual_seed``; about 3x faster than torch's CPU Bernoulli sampler,
    which runs on one thread); on other devices from torch's Bernoulli sampler, with or without
    ``rows`` (so that both give the same numbers there too)."""
    return x * DropoutMasks().noise(x, p, rows, n_rows)


class DropoutMasks:
    """The message-dropout masks of one propagation, drawn one after the other from one random
    stream (see :func:`message_dropout`). On CPU the stream is NumPy's PCG64 with one seed from
    torch's generator, drawn at the first mask: 2 operations per step instead of 2 per mask.
    Every path (plain, fused, ``torch`` backend) draws its masks in the same order, so all of them
    see the same numbers."""

    def __init__(self):
        self._generator = None

    def noise(self, x, p, rows=None, n_rows=None, lease=None):
        """The mask :func:`message_dropout` multiplies ``x`` by: ``1 / (1 - p)`` where an entry is
        kept, else 0 (same shape, dtype and device as ``x``). ``lease``
        (:class:`~recbole_kgin.model.buffers.Lease`): take the work buffers from it (same
        numbers)."""
        n = x.shape[0] if rows is None else rows.shape[0]
        out = (lease.take((n, x.shape[1]), torch.float32, x.device) if lease is not None
               else torch.empty((n, x.shape[1]), dtype=torch.float32, device=x.device))
        noise = self.finish(self.draw(out, p, rows, n_rows, lease), p)
        return noise if x.dtype == torch.float32 else noise.to(x.dtype)

    def draw(self, out, p, rows=None, n_rows=None, lease=None):
        """Write the next mask's raw draws into ``out`` (float32; the rows ``rows`` of an
        ``n_rows``-row mask when given) and return it; :meth:`finish` turns draws into the mask.
        Several draws can be finished together (one operation for all)."""
        shape = (out.shape[0] if rows is None else int(n_rows), out.shape[1])
        device = out.device
        if rows is None:
            full = out
        elif lease is not None:
            full = lease.take(shape, torch.float32, device)
        else:
            full = torch.empty(shape, dtype=torch.float32, device=device)
        if device.type != "cpu":
            full.bernoulli_(1.0 - p)
        else:
            if self._generator is None:
                seed = int(torch.randint(0, 2**62, (1,)).item())
                self._generator = np.random.Generator(np.random.PCG64(seed))
            self._generator.random(dtype=np.float32, out=full.numpy().reshape(-1))
        if rows is not None:
            torch.index_select(full, 0, rows, out=out)
            if lease is not None:
                lease.give_back(full)
        return out

    @staticmethod
    def finish(draws, p, scale=True):
        """The mask from :meth:`draw`'s output, in place: ``1 / (1 - p)`` where kept, else 0
        (CPU: a uniform number >= p; other devices: a Bernoulli(1 - p) draw of 1). ``scale``
        False: 1 where kept (for a product that a row-wise L2 normalisation follows, where the
        factor cancels; one operation fewer on CPU, none at all on other devices)."""
        if draws.device.type == "cpu":
            draws = draws.ge_(p)
        return draws.div_(1.0 - p) if scale else draws


def distance_independence(weight, eps=1e-8):
    r"""Sum over intent pairs p < q of the distance correlation between W[p] and W[q].

    Every row of ``weight`` is one sample of ``n = weight.shape[1]`` scalars. The pairwise distance
    matrices are double-centred and all pairwise distance covariances come out of one Gram matrix.
    The small ``eps`` terms keep the square roots differentiable at 0 (the authors' code does the same).
    """
    n = weight.shape[1]
    sq = weight.pow(2)
    # |x_i - x_j| for every row at once: [F, n, n]
    dist = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * weight.unsqueeze(2) * weight.unsqueeze(1))
    dist = torch.sqrt(dist.clamp(min=0.0) + eps)
    centred = (
        dist
        - dist.mean(dim=1, keepdim=True)
        - dist.mean(dim=2, keepdim=True)
        + dist.mean(dim=(1, 2), keepdim=True)
    )
    flat = centred.reshape(centred.shape[0], -1)
    dcov = torch.sqrt((flat @ flat.t() / (n * n)).clamp(min=0.0) + eps)  # [F, F]
    diag = dcov.diagonal()
    dcor = dcov / torch.sqrt(diag.unsqueeze(1) * diag.unsqueeze(0) + eps)
    return torch.triu(dcor, diagonal=1).sum()


class KGIN(KnowledgeRecommender):
    r"""KGIN: intents as attentive combinations of KG relations, relational path-aware aggregation.

    Every training step propagates over the whole graph (with fresh node dropout); evaluation
    propagates once without any dropout and caches the final user/entity representations until the
    model is put back into training mode or its parameters are loaded.
    """

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        positive_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0
        rate = lambda v: isinstance(v, (int, float)) and 0.0 <= float(v) < 1.0
        non_negative = lambda v: isinstance(v, (int, float)) and float(v) >= 0.0

        self.embedding_size = _require(config, "embedding_size", positive_int, "a positive int")
        self.n_factors = _require(config, "n_factors", positive_int, "a positive int")
        self.context_hops = _require(config, "context_hops", positive_int, "a positive int")
        self.node_dropout_rate = float(
            _require(config, "node_dropout_rate", rate, "a number in [0, 1)")
        )
        self.mess_dropout_rate = float(
            _require(config, "mess_dropout_rate", rate, "a number in [0, 1)")
        )
        self.reg_weight = float(_require(config, "reg_weight", non_negative, "a number >= 0"))
        self.sim_regularity = float(
            _require(config, "sim_regularity", non_negative, "a number >= 0")
        )
        self.ind = _require(config, "ind", lambda v: v in IND_TYPES, f"one of {IND_TYPES}")
        self.temperature = float(
            _require(config, "temperature", lambda v: isinstance(v, (int, float)) and v > 0,
                     "a number > 0")
        )
        self.node_dropout_semantics = _require(
            config, "node_dropout_semantics", lambda v: v in DROPOUT_SEMANTICS,
            f"one of {DROPOUT_SEMANTICS}",
        )
        self.sparse_backend = config["sparse_backend"] or "cached"
        if self.sparse_backend not in SPARSE_BACKENDS:
            raise ValueError(f"config key 'sparse_backend' = {self.sparse_backend!r}: expected "
                             f"one of {SPARSE_BACKENDS}")
        self.retains_cpu_memory = apply_setting(config["retain_cpu_memory"])
        self.user_propagation = config["user_propagation"] or "batch"
        if self.user_propagation not in USER_PROPAGATION:
            raise ValueError(f"config key 'user_propagation' = {self.user_propagation!r}: expected "
                             f"one of {USER_PROPAGATION}")
        self.kg_dedup = bool(config["kg_dedup"]) if config["kg_dedup"] is not None else True
        self.fused_normalize = bool_option(config, "fused_normalize")
        self.fused_propagation = bool_option(config, "fused_propagation")
        self.fused_loss = bool_option(config, "fused_loss")
        self.static_graph = bool_option(config, "static_graph", default=False)
        if self.static_graph and not (self.fused_propagation and self.sparse_backend == "cached"):
            raise ValueError("config key 'static_graph' = True: needs fused_propagation: True and "
                             "sparse_backend: cached")
        self.relation_messages = config["relation_messages"] or "gather"
        if self.relation_messages not in RELATION_MESSAGES:
            raise ValueError(f"config key 'relation_messages' = {self.relation_messages!r}: "
                             f"expected one of {RELATION_MESSAGES}")
        joint_init = bool(config["joint_init"]) if config["joint_init"] is not None else True

        # ---- knowledge graph: keep only real KG relations, renumbered 0 .. Rk-1 ----
        rel_tokens = list(dataset.field2id_token[self.RELATION_ID])
        if rel_tokens[0] != "[PAD]" or rel_tokens[-1] != "[UI-Relation]":
            raise ValueError(
                "unexpected relation vocabulary: KGIN expects RecBole's [PAD] first and "
                "[UI-Relation] last"
            )
        self.n_kg_relations = len(rel_tokens) - 2
        if self.n_kg_relations < 1:
            raise ValueError("the knowledge graph has no relation: KGIN needs a .kg file")
        head = np.asarray(dataset.head_entities, dtype=np.int64)
        tail = np.asarray(dataset.tail_entities, dtype=np.int64)
        rel = np.asarray(dataset.relations, dtype=np.int64) - 1
        if self.kg_dedup:
            triples = np.unique(np.stack([head, rel, tail], axis=1), axis=0)
            head, rel, tail = triples[:, 0], triples[:, 1], triples[:, 2]
        # Aggregation runs per (head, relation) pair:
        #   S[(h, r)] = sum_t e_t / deg(h)   (one sparse-dense product over the edges),
        #   e_h' = sum_r e_r * S[(h, r)]     (one small scatter over the pairs),
        # which is the mean over edges of e_r * e_t with far fewer [edges x d] temporaries.
        # Pairs are numbered by (head is not an item, relation, head): the pairs headed by items
        # form a prefix (the last hop of training needs only them), and within it and the rest the
        # pairs of one relation are contiguous blocks (e_r multiplies a block without a gather).
        # An entity's pairs still come in relation order. Edges are sorted by (pair, tail).
        n_rel = self.n_kg_relations
        pair_key = head * n_rel + rel
        keys, pair_of_edge = np.unique(pair_key, return_inverse=True)
        pair_head, pair_rel = keys // n_rel, keys % n_rel
        order = np.lexsort((pair_head, pair_rel, pair_head >= self.n_items))
        new_id = np.empty_like(order)
        new_id[order] = np.arange(order.shape[0])
        pair_head, pair_rel = pair_head[order], pair_rel[order]
        pair_of_edge = new_id[pair_of_edge.reshape(-1)]
        edge_order = np.lexsort((tail, pair_of_edge))
        head, tail, pair_of_edge = head[edge_order], tail[edge_order], pair_of_edge[edge_order]
        self.n_kg_edges = int(head.shape[0])
        self.n_kg_pairs = int(pair_head.shape[0])
        self.n_item_pairs = int((pair_head < self.n_items).sum())
        segment = (pair_head >= self.n_items).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, (np.diff(pair_rel) != 0) | (np.diff(segment) != 0)])
        ends = np.r_[starts[1:], self.n_kg_pairs]
        # (first pair, end, relation) of each block; the item prefix ends at a block boundary
        self.relation_blocks = [(int(a), int(b), int(pair_rel[a])) for a, b in zip(starts, ends)]
        self.item_relation_blocks = [blk for blk in self.relation_blocks
                                     if blk[1] <= self.n_item_pairs]
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
        for name, value in (
            ("kg_head", head), ("kg_tail", tail), ("kg_pair", pair_of_edge),
            ("pair_head", pair_head), ("pair_rel", pair_rel),
        ):
            self.register_buffer(name, as_tensor(value), persistent=False)

        # ---- interaction matrix: binarised training interactions, row-normalised (D^-1 A) ----
        inter = dataset.inter_matrix(form="coo").tocsr()
        inter.sum_duplicates()
        inter.sort_indices()
        inter.data[:] = 1.0
        row_deg = np.diff(inter.indptr)
        values = 1.0 / np.repeat(np.maximum(row_deg, 1), row_deg)
        self.register_buffer("inter_crow", as_tensor(inter.indptr), persistent=False)
        self.register_buffer("inter_col", as_tensor(inter.indices), persistent=False)
        self.register_buffer(
            "inter_values", torch.from_numpy(values.astype(np.float32)), persistent=False
        )

        # ---- parameters ----
        d = self.embedding_size
        self.user_embedding = nn.Parameter(torch.empty(self.n_users, d))
        self.entity_embedding = nn.Parameter(torch.empty(self.n_entities, d))
        self.relation_embedding = nn.Parameter(torch.empty(self.n_kg_relations, d))
        self.intent_relation_logits = nn.Parameter(torch.empty(self.n_factors, self.n_kg_relations))
        self.intent_keys = nn.Parameter(torch.empty(self.n_factors, d))
        if joint_init:
            bound = math.sqrt(6.0 / (self.n_users + self.n_entities + d))
            nn.init.uniform_(self.user_embedding, -bound, bound)
            nn.init.uniform_(self.entity_embedding, -bound, bound)
        else:
            nn.init.xavier_uniform_(self.user_embedding)
            nn.init.xavier_uniform_(self.entity_embedding)
        nn.init.xavier_uniform_(self.relation_embedding)
        nn.init.xavier_uniform_(self.intent_relation_logits)
        nn.init.xavier_uniform_(self.intent_keys)

        self._cache = None
        self._patterns = None  # CachedPattern objects of the "cached" backend, built on first use
        # fields RecBole's trainer looks at when saving / restoring
        self.other_parameter_name = []

    # ------------------------------------------------------------------ graph helpers
    def _kept_fraction(self):
        if self.node_dropout_semantics == "reference":
            return self.node_dropout_rate
        return 1.0 - self.node_dropout_rate

    def _kg_operator(self, edge_index=None):
        """Sparse [pairs, entities] matrix with 1/deg(h) at ((h, r), t) for the given edges
        (all edges when ``edge_index`` is None). Edge indices must be increasing."""
        if edge_index is None:
            head, tail, pair = self.kg_head, self.kg_tail, self.kg_pair
        else:
            head, tail, pair = (
                self.kg_head[edge_index], self.kg_tail[edge_index], self.kg_pair[edge_index]
            )
        deg = torch.bincount(head, minlength=self.n_entities).to(self.entity_embedding.dtype)
        values = deg.clamp(min=1.0).reciprocal()[head]
        counts = torch.bincount(pair, minlength=self.n_kg_pairs)
        crow = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        return torch.sparse_csr_tensor(
            crow, tail, values, (self.n_kg_pairs, self.n_entities), check_invariants=False
        )

    def _item_rows(self, kg_op):
        """The rows of ``kg_op`` whose head is an item (a prefix: pairs are sorted by head)."""
        crow = kg_op.crow_indices()[: self.n_item_pairs + 1]
        nnz = int(crow[-1])
        return torch.sparse_csr_tensor(
            crow, kg_op.col_indices()[:nnz], kg_op.values()[:nnz],
            (self.n_item_pairs, self.n_entities), check_invariants=False,
        )

    def _inter_operator(self, values):
        return torch.sparse_csr_tensor(
            self.inter_crow, self.inter_col, values, (self.n_users, self.n_items),
            check_invariants=False,
        )

    def _sample_graph(self):
        """Node dropout for one training step: a random subset of KG edges (sampled without
        replacement) and a dropped-and-rescaled interaction matrix."""
        if self.node_dropout_rate == 0.0:
            return self._kg_operator(), self._inter_operator(self.inter_values)
        keep = self._kept_fraction()
        n_keep = int(self.n_kg_edges * keep)
        device = self.kg_head.device
        chosen = torch.zeros(self.n_kg_edges, dtype=torch.bool, device=device)
        chosen[torch.randperm(self.n_kg_edges, device=device)[:n_keep]] = True
        kg_op = self._kg_operator(chosen.nonzero().squeeze(1))
        mask = torch.rand(self.inter_values.shape, device=device) < keep
        inter_values = self.inter_values * mask / (1.0 - self.node_dropout_rate)
        return kg_op, self._inter_operator(inter_values)

    # ------------------------------------------------------------------ cached sparse backend
    def _cached_patterns(self):
        """The KG and interaction patterns with their transposes, built once per device."""
        device = self.kg_head.device
        if self._patterns is None or self._patterns["device"] != device:
            inter_rows = torch.repeat_interleave(
                torch.arange(self.n_users, device=device), torch.diff(self.inter_crow)
            )
            keep = self._kept_fraction()
            n_ip = self.n_item_pairs
            dtype = self.entity_embedding.dtype
            self._patterns = {
                "device": device,
                "kg": CachedPattern(self.kg_pair, self.kg_tail, self.n_kg_pairs, self.n_entities),
                "inter": CachedPattern(inter_rows, self.inter_col, self.n_users, self.n_items),
                # dropout keeps entries with probability `keep` and rescales them by 1 / (1 - rate)
                "inter_scaled": self.inter_values / (1.0 - self.node_dropout_rate),
                "n_keep": int(self.n_kg_edges * keep),
                # [entities x pairs]: sums the messages of the pairs headed by each entity
                "head_sum": group_sum(self.pair_head, self.n_entities, dtype),
                "item_head_sum": group_sum(self.pair_head[:n_ip], self.n_items, dtype),
                # [relations x pairs]: sums the gradients of the pairs of each relation
                "rel_sum": group_sum(self.pair_rel, self.n_kg_relations, dtype),
                "item_rel_sum": group_sum(self.pair_rel[:n_ip], self.n_kg_relations, dtype),
            }
        return self._patterns

    def _item_subset(self, item_ids, kg_values, chosen, sums=True):
        """The last hop restricted to the items ``item_ids`` (increasing, unique): the KG pair of the
        (item, relation) pairs they head, with each pair's relation, its row among ``item_ids`` and
        the [items x pairs] / [relations x pairs] summing matrices (None unless ``sums``:
        ``fused_propagation`` sums these pairs with ``index_add_`` instead, 9 operations fewer
        than building the matrices)."""
        pat = self._patterns
        if "pairs_by_item" not in pat:  # the item pairs grouped by item (relation order kept)
            by_item = torch.sort(self.pair_head[: self.n_item_pairs], stable=True)
            pat["pairs_by_item"] = by_item.indices
            ptr = torch.searchsorted(
                by_item.values, torch.arange(self.n_items + 1, device=item_ids.device))
            pat["item_pair_ptr"], pat["item_pair_count"] = ptr, torch.diff(ptr)
        local, positions = ragged_ranges(pat["item_pair_ptr"][item_ids],
                                         pat["item_pair_count"][item_ids])
        pairs = pat["pairs_by_item"][positions]
        rel = self.pair_rel[pairs]
        dtype = self.entity_embedding.dtype
        return {
            "kg": pat["kg"].row_subset(pairs, kg_values, chosen), "pair_rel": rel,
            "pair_head": local,
            "head_sum": group_sum(local, item_ids.shape[0], dtype, sorted_groups=True)
            if sums else None,
            "rel_sum": group_sum(rel, self.n_kg_relations, dtype) if sums else None,
        }

    def _node_dropout_draws(self):
        """``(kept KG edges, kept interaction entries)`` as bool masks: the same random draws, in
        the same order, as :meth:`_sample_graph` (every cached path draws them here)."""
        pat, device = self._patterns, self.kg_head.device
        chosen = torch.zeros(self.n_kg_edges, dtype=torch.bool, device=device)
        chosen[torch.randperm(self.n_kg_edges, device=device)[: pat["n_keep"]]] = True
        inter_keep = torch.rand(self.inter_values.shape, device=device) < self._kept_fraction()
        return chosen, inter_keep

    def _cached_graph(self, training, items_only, users=None, item_ids=None):
        """(kg pair for all hops, kg pair of the item rows or None unless ``items_only``,
        interaction pair of every user or of the rows ``users``) for one propagation:
        the same edges and values as :meth:`_sample_graph` / the full graph, from cached indices
        (the random draws are those of every entry, whatever ``users`` is)."""
        pat = self._cached_patterns()
        kg, inter = pat["kg"], pat["inter"]
        if training and self.node_dropout_rate > 0.0:
            chosen, inter_keep = self._node_dropout_draws()
            inter_values = pat["inter_scaled"]
        else:
            chosen, inter_keep, inter_values = None, None, self.inter_values
        head = self.kg_head if chosen is None else self.kg_head[chosen]
        kg_values = _inverse_degrees(head, self.n_entities, self.entity_embedding.dtype)[
            self.kg_head]
        kg_all = kg.select(kg_values, chosen)
        if item_ids is not None:
            kg_items = self._item_subset(item_ids, kg_values, chosen,
                                         sums=not self._fused_batch(users, item_ids))
        elif items_only:
            kg_items = kg.select(kg_values, chosen, n_rows=self.n_item_pairs)
        else:
            kg_items = None
        if users is None:
            return kg_all, kg_items, inter.select(inter_values, inter_keep)
        return kg_all, kg_items, inter.row_subset(users, inter_values, inter_keep)

    def _static_graph(self, training):
        """(kg pair of all pairs, kg pair of the item pairs, interaction pair of every user) for
        ``static_graph``: node dropout sets the dropped entries' values to 0 on the full cached
        patterns instead of removing them, so the sparsity pattern is the same at every step. The
        random draws, degrees and kept values are those of :meth:`_cached_graph`, and a dropped
        entry adds 0 to its product."""
        pat = self._cached_patterns()
        if "kg_items" not in pat:  # the edges of the item pairs are a prefix of the edges
            n_edges = int(pat["kg"]._row_pointers()[0][self.n_item_pairs])
            pat["kg_items"] = CachedPattern(self.kg_pair[:n_edges], self.kg_tail[:n_edges],
                                            self.n_item_pairs, self.n_entities, checked=True)
        device, dtype = self.kg_head.device, self.entity_embedding.dtype
        if training and self.node_dropout_rate > 0.0:
            chosen, inter_keep = self._node_dropout_draws()
            inter_values = pat["inter_scaled"] * inter_keep
            deg = torch.zeros(self.n_entities, dtype=dtype, device=device).index_add_(
                0, self.kg_head, chosen.to(dtype))
            kg_values = deg.clamp_(min=1.0).reciprocal_()[self.kg_head].mul_(chosen)
        else:
            inter_values = self.inter_values
            kg_values = _inverse_degrees(self.kg_head, self.n_entities, dtype)[self.kg_head]
        n_item_edges = pat["kg_items"].nnz
        return (pat["kg"].select(kg_values), pat["kg_items"].select(kg_values[:n_item_edges]),
                pat["inter"].select(inter_values))

    def _static_forward(self, training):
        """``static_graph``: (every user's, every item's) final representations in training, by
        ``fused_propagation`` over the full graph with the dropped entries at 0 (see
        :meth:`_static_graph`); the same rows as :meth:`forward` with ``items_only``."""
        from recbole_kgin.model.kgin_propagation import HopGraph

        kg_all, kg_items, inter = self._static_graph(training)
        pat, n_ip = self._patterns, self.n_item_pairs
        last = HopGraph(kg_items, self.pair_rel[:n_ip], self.pair_head[:n_ip],
                        pat["item_head_sum"], pat["item_rel_sum"], self.n_items)
        return self._run_fused(training, kg_all, last, inter, self.intent_embeddings())

    # ------------------------------------------------------------------ model
    def intent_embeddings(self):
        """[F, d]: every intent is a softmax-weighted combination of KG relation embeddings."""
        return torch.softmax(self.intent_relation_logits, dim=1) @ self.relation_embedding

    def forward(self, sample_graph=None, items_only=False, users=None, item_ids=None):
        """Propagate over the whole graph; returns final (user, entity) representations.

        ``sample_graph`` defaults to ``self.training``: node dropout and message dropout are applied
        only in training mode. With ``items_only`` the entity output holds the first ``n_items``
        rows only (the items): the last hop then skips the entities that nothing scores, with the
        same result for the rows it returns. ``users`` (``cached`` backend; increasing, unique user
        ids): the user output holds these users' rows only, in that order, and only they are
        propagated, with the same result for these rows. ``item_ids`` (``cached`` backend, implies
        ``items_only``; increasing, unique item ids): the entity output holds these items' rows
        only, and the last hop computes only them.
        """
        training = self.training if sample_graph is None else sample_graph
        if (users is not None or item_ids is not None) and self.sparse_backend != "cached":
            raise ValueError("forward(users=..., item_ids=...) needs sparse_backend: cached")
        items_only = items_only or item_ids is not None
        if self.sparse_backend == "cached":
            kg_pair, kg_item_pair, inter_pair = self._cached_graph(training, items_only, users,
                                                                   item_ids)
            subset = kg_item_pair if item_ids is not None else None
            inter_mm = lambda x: spmm(inter_pair, x)
            pat = self._patterns

            def kg_mm(x, items):
                if items and subset is not None:
                    return spmm(subset["kg"], x)
                return spmm(kg_item_pair if items else kg_pair, x)

            def aggregate(pair_mean, items, n_rows, n_pairs):
                if items and subset is not None:
                    return relation_aggregate(pair_mean, self.relation_embedding,
                                              subset["pair_rel"], subset["pair_head"],
                                              subset["head_sum"], subset["rel_sum"])
                prefix = "item_" if items else ""
                blocks = self.item_relation_blocks if items else self.relation_blocks
                if self.relation_messages == "gather":
                    blocks = None  # one gather of relation rows: 2 operations, not 2 per block
                return relation_aggregate(
                    pair_mean, self.relation_embedding, self.pair_rel[:n_pairs],
                    self.pair_head[:n_pairs], pat[prefix + "head_sum"], pat[prefix + "rel_sum"],
                    blocks)
        else:
            if training:
                kg_op, inter_op = self._sample_graph()
            else:
                kg_op, inter_op = self._kg_operator(), self._inter_operator(self.inter_values)
            kg_mm = lambda x, items: torch.sparse.mm(self._item_rows(kg_op) if items else kg_op, x)
            inter_mm = lambda x: torch.sparse.mm(inter_op, x)

            def aggregate(pair_mean, items, n_rows, n_pairs):
                messages = pair_mean * self.relation_embedding.index_select(
                    0, self.pair_rel[:n_pairs])
                return pair_mean.new_zeros(n_rows, pair_mean.shape[1]).index_add_(
                    0, self.pair_head[:n_pairs], messages)

        # the torch backend stays the plain reference: F.normalize and autograd
        fused_normalize = self.fused_normalize and self.sparse_backend == "cached"
        intents = self.intent_embeddings()
        if self._fused_batch(users, item_ids):
            return self._fused_forward(training, kg_pair, subset, inter_pair, intents, users,
                                       item_ids)
        user_emb, entity_emb = self.user_embedding, self.entity_embedding
        if users is not None:
            user_emb = user_emb.index_select(0, users)
        user_res, entity_res = user_emb, entity_emb
        masks = DropoutMasks()
        for hop in range(self.context_hops):
            last = hop == self.context_hops - 1
            items = last and items_only
            if items and item_ids is not None:
                n_rows, n_pairs = item_ids.shape[0], None
                entity_res = entity_res.index_select(0, item_ids)
            elif items:
                n_rows, n_pairs = self.n_items, self.n_item_pairs
                entity_res = entity_res[: self.n_items]
            else:
                n_rows, n_pairs = self.n_entities, self.n_kg_pairs
            # relational path-aware aggregation: mean over (h, r, t) of e_r * e_t
            pair_mean = kg_mm(entity_emb, items)  # [pairs, d]
            entity_agg = aggregate(pair_mean, items, n_rows, n_pairs)  # sum_r e_r * pair mean
            # intent-aware user aggregation
            user_agg = inter_mm(entity_emb[: self.n_items])
            attention = torch.softmax(user_emb @ self.intent_keys.t(), dim=1)  # [n_users, F]
            user_agg = user_agg * (attention @ intents) + user_agg
            entity_noise = user_noise = None
            if training and self.mess_dropout_rate > 0.0:
                rows = item_ids if items else None  # the mask of every item is drawn
                entity_noise = masks.noise(entity_agg, self.mess_dropout_rate, rows, self.n_items)
                user_noise = masks.noise(user_agg, self.mess_dropout_rate, users, self.n_users)
            if fused_normalize:  # message dropout, then row-wise L2 normalisation
                entity_emb = normalize_rows(entity_agg, entity_noise)
                user_emb = normalize_rows(user_agg, user_noise)
            else:
                if entity_noise is not None:
                    entity_agg, user_agg = entity_agg * entity_noise, user_agg * user_noise
                entity_emb = F.normalize(entity_agg, p=2, dim=1)
                user_emb = F.normalize(user_agg, p=2, dim=1)
            entity_res = entity_res + entity_emb
            user_res = user_res + user_emb
        return user_res, entity_res

    def _fused_batch(self, users, item_ids):
        """Whether :meth:`forward` runs ``fused_propagation`` over a batch's rows."""
        return bool(self.fused_propagation and self.sparse_backend == "cached"
                    and users is not None and item_ids is not None and torch.is_grad_enabled())

    def _fused_forward(self, training, kg_pair, subset, inter_pair, intents, users, item_ids):
        """:meth:`forward` for a batch (``users``, ``item_ids``) as one autograd function with
        reused work buffers (:mod:`recbole_kgin.model.kgin_propagation`); same result."""
        from recbole_kgin.model.kgin_propagation import HopGraph

        last = HopGraph(subset["kg"], subset["pair_rel"], subset["pair_head"],
                        subset["head_sum"], subset["rel_sum"], item_ids.shape[0],
                        noise_rows=item_ids)
        return self._run_fused(training, kg_pair, last, inter_pair, intents, users, item_ids)

    def _run_fused(self, training, kg_pair, last, inter_pair, intents, users=None, item_ids=None):
        """``fused_propagation`` over ``context_hops`` hops: the full KG pair ``kg_pair`` in every
        hop but the last, the HopGraph ``last`` in it; ``users`` / ``item_ids``: the batch's rows
        (None: every user / item)."""
        from recbole_kgin.model.buffers import BufferPool
        from recbole_kgin.model.kgin_propagation import HopGraph, Propagation, propagate

        pat = self._patterns
        if getattr(self, "_buffer_pool", None) is None:
            self._buffer_pool = BufferPool()
        full = HopGraph(kg_pair, self.pair_rel, self.pair_head, pat["head_sum"], pat["rel_sum"],
                        self.n_entities)
        hops = [full] * (self.context_hops - 1) + [last]
        rate = self.mess_dropout_rate if training else 0.0
        prop = Propagation(hops, inter_pair, self.n_items, item_ids, users, self.n_users, rate,
                           DropoutMasks(), self._buffer_pool)
        user_base = self.user_embedding if users is None else \
            self.user_embedding.index_select(0, users)
        return propagate(user_base, self.entity_embedding, self.relation_embedding, intents,
                         self.intent_keys, prop)

    def _fused_losses(self):
        """``fused_loss`` applies (the ``torch`` backend stays the plain reference)."""
        return self.fused_loss and self.sparse_backend == "cached"

    def independence_loss(self):
        weight = self.intent_relation_logits
        if self.n_factors < 2:
            return weight.new_zeros(())
        if self.ind == "distance":
            if self._fused_losses():
                return kgin_loss.distance_independence(weight)
            return distance_independence(weight)
        if self.ind == "cosine":
            return cosine_independence(weight)
        return mi_independence(weight, self.temperature)

    def calculate_loss(self, interaction):
        self._cache = None
        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]

        # every path gives (user rows, item rows, each pair's user row, its positive's and then its
        # negative's item row)
        if self.static_graph and torch.is_grad_enabled():
            user_rows, item_rows = self._static_forward(self.training)
            position, item_position = user, torch.cat([pos_item, neg_item])
        elif self.sparse_backend == "cached" and self.user_propagation == "batch":
            batch_users, position = torch.unique(user, sorted=True, return_inverse=True)
            batch_items, item_position = torch.unique(torch.cat([pos_item, neg_item]), sorted=True,
                                                      return_inverse=True)
            user_rows, item_rows = self.forward(users=batch_users, item_ids=batch_items)
        else:
            user_rows, item_rows = self.forward(items_only=True)
            position, item_position = user, torch.cat([pos_item, neg_item])
        if self._fused_losses():
            return kgin_loss.bpr_l2_loss(user_rows, item_rows, position, item_position,
                                         self.reg_weight, self.independence_loss(),
                                         self.sim_regularity)
        u_e = user_rows[position]
        pos_e = item_rows[item_position[: pos_item.shape[0]]]
        neg_e = item_rows[item_position[pos_item.shape[0]:]]
        pos_scores = (u_e * pos_e).sum(dim=1)
        neg_scores = (u_e * neg_e).sum(dim=1)
        bpr = -F.logsigmoid(pos_scores - neg_scores).mean()
        l2 = (u_e.pow(2).sum() + pos_e.pow(2).sum() + neg_e.pow(2).sum()) / 2.0 / user.shape[0]
        return bpr + self.reg_weight * l2 + self.sim_regularity * self.independence_loss()

    # ------------------------------------------------------------------ evaluation
    def _eval_embeddings(self):
        if self._cache is None:
            with torch.no_grad():
                self._cache = self.forward(sample_graph=False, items_only=True)
        return self._cache

    def train(self, mode=True):
        if mode:
            self._cache = None
        elif getattr(self, "_buffer_pool", None) is not None:
            self._buffer_pool.clear()  # evaluation needs the memory; training takes it again
        return super().train(mode)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        self._cache = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def predict(self, interaction):
        user_all, item_all = self._eval_embeddings()
        u_e = user_all[interaction[self.USER_ID]]
        i_e = item_all[interaction[self.ITEM_ID]]
        return (u_e * i_e).sum(dim=1)

    def full_sort_predict(self, interaction):
        user_all, item_all = self._eval_embeddings()
        u_e = user_all[interaction[self.USER_ID]]
        return (u_e @ item_all.t()).reshape(-1)
