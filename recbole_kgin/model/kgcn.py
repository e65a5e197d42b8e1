# -*- coding: utf-8 -*-
"""RecBole's KGCN with a full-ranking evaluation that does not repeat work across users and items.

RecBole 1.2.1's ``KGCN.full_sort_predict`` pairs every user of a batch with every item and runs the
training forward on the ``users x items`` pairs: each pair rebuilds its item's sampled receptive
field (``K^h`` entities at hop ``h``) and applies the aggregator's linear layer to every node of it.
One validation pass thus costs ``users x items x (1 + K + ... + K^n_iter)`` gathers and
``d x d`` products, which takes minutes on a CPU even for 2,000 users.

The model itself is a per-user propagation over a fixed graph: the neighbours (``adj_entity``,
``adj_relation``) are sampled once per model, so the vector that iteration ``i`` gives an entity for
a user depends on the entity and the user only, not on which item's tree it sits in:

    v_0(e) = entity_embedding(e)
    a(u, e, k) = softmax over k of  mean(u * relation_embedding(adj_relation[e, k]))
    n_i(u, e) = mean over k of  a(u, e, k) * v_i(u, adj_entity[e, k])
    v_{i+1}(u, e) = act_i(linear_i(combine(v_i(u, e), n_i(u, e))))

(``combine``: ``self + neighbours`` for ``sum``, ``neighbours`` for ``neighbor``,
``[self; neighbours]`` for ``concat``; ``act`` is ReLU, and tanh at the last iteration), and an
item's score is ``user . v_n_iter(u, item)``. :meth:`KGCN.full_sort_predict` computes exactly this,
once per (user, entity) on the entities that lie within ``n_iter - 1 - i`` hops of an item at
iteration ``i``. At the first iteration the input vectors do not depend on the user, so the linear
layer (linear in its input, whatever the attention weights) is applied once per entity before the
user-specific weighted mean. Three more changes of arithmetic, none of the function: the softmax
takes one exponential per (user, relation) instead of one per (user, entity, neighbour); the last
tanh is computed as ``2 sigmoid(2x) - 1`` (torch's CPU tanh is several times slower than its
sigmoid); on a CPU each iteration runs over cache-sized blocks of entities.

The scores equal RecBole's to float rounding (tested in float64 and float32, for every aggregator
and depth, on the CPU and on CUDA, and the gradients too); ``kgcn_fast_full_sort: False`` runs
RecBole's own method. Training (``calculate_loss``) and ``predict`` are RecBole's, unchanged.
One validation pass of 2,000 users on ``lastfm-kg-resplit-u2k``: about 20 s instead of 170 s on one
CPU thread (BENCHMARKS.md §9).
"""

import torch

from recbole.model.knowledge_aware_recommender.kgcn import KGCN as RecBoleKGCN

from recbole_kgin.model.options import bool_option

# Floats of the largest per-chunk intermediate of the fast path: 64 M floats, 256 MB.
_CHUNK_FLOATS = 64 * 2**20
# Floats of one block of entities x users x dim on a CPU (2 MB: stays in cache).
_BLOCK_FLOATS = 2**19
# (user, item) pairs per call of RecBole's own method (RecBole's KGCN.yaml batch: 4,096 scores)
_PLAIN_PAIRS = 4096


def receptive_sets(adj_entity, items, depth):
    """Entity sets ``A_0 = items``, ``A_h = A_{h-1}`` plus the sampled neighbours of ``A_{h-1}``,
    for ``h = 0 .. depth``; each ``A_h`` starts with ``A_{h-1}`` (same order)."""
    sets = [items]
    for _ in range(depth):
        current = sets[-1]
        seen = torch.zeros(adj_entity.shape[0], dtype=torch.bool, device=items.device)
        seen[current] = True
        neighbours = torch.unique(adj_entity[current].reshape(-1))
        sets.append(torch.cat([current, neighbours[~seen[neighbours]]]))
    return sets


class KGCN(RecBoleKGCN):
    """RecBole's KGCN; ``full_sort_predict`` is computed once per (user, entity) (module docstring).

    The class keeps RecBole's name, so RecBole's ``KGCN.yaml`` and trainer apply unchanged.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.fast_full_sort = bool_option(config, "kgcn_fast_full_sort")

    def _weights(self, layer):
        """``(W_self, W_neighbour)`` of a layer for the configured aggregator, so that
        ``linear(combine(s, n)) = s W_self^T + n W_neighbour^T + bias``: one matrix twice for
        ``sum``, no ``W_self`` for ``neighbor``, the two halves of the weight for ``concat``."""
        weight = layer.weight
        if self.aggregator_class == "sum":
            return weight, weight
        if self.aggregator_class == "neighbor":
            return None, weight
        if self.aggregator_class == "concat":
            d = self.embedding_size
            return weight[:, :d], weight[:, d:]
        raise ValueError(f"config key 'aggregator' = {self.aggregator_class!r}: "
                         "expected sum, neighbor or concat")

    def _combine_linear(self, layer, self_part, neighbour_part):
        """``linear(combine(self, neighbours))`` without the bias (``sum``: one product of the
        sum, as RecBole computes it)."""
        w_self, w_neighbour = self._weights(layer)
        if w_self is w_neighbour:
            return (self_part + neighbour_part) @ w_self.T
        mixed = neighbour_part @ w_neighbour.T
        return mixed if w_self is None else self_part @ w_self.T + mixed

    def _plan(self, device):
        """The user-independent part: per iteration, the entities computed (``outputs``), their
        neighbours as rows of the previous iteration's entities, and the neighbours' relations."""
        items = torch.arange(self.n_items, device=device)
        sets = receptive_sets(self.adj_entity, items, self.n_iter)
        position = torch.full((self.adj_entity.shape[0],), -1, dtype=torch.long, device=device)
        plan = []
        for i in range(self.n_iter):
            inputs, outputs = sets[self.n_iter - i], sets[self.n_iter - 1 - i]
            position[inputs] = torch.arange(inputs.numel(), device=device)
            plan.append((inputs, outputs, position[self.adj_entity[outputs]],
                         self.adj_relation[outputs]))
        return plan

    def _first_inputs(self, plan):
        """Parameter-only part of the first iteration: ``W_neighbour e`` gathered for every
        computed entity's neighbours ([q, K, d]) and ``W_self e + bias`` ([q, d])."""
        inputs, outputs, neighbours, _ = plan[0]
        layer = self.linear_layers[0]
        w_self, w_neighbour = self._weights(layer)
        embedded = self.entity_embedding(inputs)  # [n, d]
        neighbour_in = (embedded @ w_neighbour.T)[neighbours]
        n_out = outputs.numel()
        if w_self is None:
            return neighbour_in, layer.bias.expand(n_out, -1)
        return neighbour_in, embedded[:n_out] @ w_self.T + layer.bias

    def _attention(self, user_e):
        """A function of the relations ([q, K]) giving each user's weights ``softmax_k / K``,
        entity-major ([q, K, B]). The softmax is computed from one exponential per (user,
        relation), shifted by the user's largest logit (the shift cancels); should any of these
        underflow, from the logits directly."""
        # relation attention logits of every user for every relation: mean(u * r) = u . r / d
        logits = (self.relation_embedding.weight @ user_e.T) / self.embedding_size  # [R, B]
        weights = torch.exp(logits - logits.max(dim=0, keepdim=True).values)
        k = self.neighbor_sample_size
        if bool(weights.min() < torch.finfo(weights.dtype).tiny * 1e6):
            return lambda relations: torch.softmax(logits[relations], dim=1) / k

        def attention(relations):
            w = weights[relations]
            return w / (w.sum(dim=1, keepdim=True) * k)

        return attention

    def _scores(self, user_e, plan, first_inputs):
        """Scores of every user of ``user_e`` for every item, [users, items]. Each iteration runs
        over blocks of its entities (a few MB on a CPU, so that each block's chain of operations
        stays in cache; one block on a GPU), entity-major ([entities, users, dim]), so that
        gathering neighbours copies whole [users, dim] rows."""
        attention = self._attention(user_e)
        n_users, d = user_e.shape
        block = (max(1, _BLOCK_FLOATS // (n_users * d)) if user_e.device.type == "cpu"
                 else None)
        vectors = None
        last = self.n_iter - 1
        for i, (_, outputs, neighbours, relations) in enumerate(plan):
            layer = self.linear_layers[i]
            q = outputs.numel()
            result = user_e.new_empty((n_users, q) if i == last else (q, n_users, d))
            for start in range(0, q, block or q):
                end = min(q, start + (block or q))
                weights = attention(relations[start:end])  # [b, K, B]
                if vectors is None:
                    # user-independent inputs: the linear layer was applied per entity beforehand
                    neighbour_in, self_in = first_inputs  # [q, K, d], [q, d]
                    pre = torch.baddbmm(self_in[start:end].unsqueeze(1),
                                        weights.transpose(1, 2), neighbour_in[start:end])
                else:
                    # v_i is user-specific: mix the neighbours per user, then the linear layer
                    rows = neighbours[start:end]
                    mixed = vectors.index_select(0, rows[:, 0]) * weights[:, 0, :, None]
                    for j in range(1, rows.shape[1]):
                        mixed.addcmul_(vectors.index_select(0, rows[:, j]), weights[:, j, :, None])
                    pre = self._combine_linear(layer, vectors[start:end], mixed)
                    pre += layer.bias
                if i == last:
                    # tanh(x) = 2 sigmoid(2x) - 1: the same function, and torch's CPU sigmoid
                    # is several times faster than its tanh
                    item_vectors = torch.sigmoid(pre.mul_(2)).mul(2).sub_(1)
                    result[:, start:end] = (item_vectors * user_e).sum(dim=-1).T
                else:
                    result[start:end] = pre.relu_()
            vectors = result
        return vectors

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID]
        if not self.fast_full_sort:
            # RecBole's method, a few users at a time: it holds every (user, item) pair's receptive
            # field at once, so the project's large evaluation batch would take GBs
            step = max(1, _PLAIN_PAIRS // self.n_items)
            return torch.cat([super(KGCN, self).full_sort_predict(
                {self.USER_ID: users[start:start + step]})
                for start in range(0, users.numel(), step)])
        user_e = self.user_embedding(users)
        plan = self._plan(user_e.device)
        # floats per user of an iteration's output ([q, d]) and the first iteration's weights
        per_user = max(outputs.numel() * (self.neighbor_sample_size + self.embedding_size)
                       for _, outputs, _, _ in plan)
        chunk = max(1, _CHUNK_FLOATS // per_user)
        first_inputs = self._first_inputs(plan)
        scores = [self._scores(user_e[start:start + chunk], plan, first_inputs)
                  for start in range(0, users.numel(), chunk)]
        return torch.cat(scores).reshape(-1)
