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
user-specific weighted mean. The result equals
RecBole's to float rounding (tested for every aggregator and depth); ``kgcn_fast_full_sort: False``
runs RecBole's own method. Training (``calculate_loss``) and ``predict`` are RecBole's, unchanged.
"""

import torch

from recbole.model.knowledge_aware_recommender.kgcn import KGCN as RecBoleKGCN

# Floats of the largest per-chunk intermediate of the fast path: 64 M floats, 256 MB.
_CHUNK_FLOATS = 64 * 2**20
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
        fast = config["kgcn_fast_full_sort"]
        if fast is None:
            fast = True
        if not isinstance(fast, bool):
            raise ValueError(f"config key 'kgcn_fast_full_sort' = {fast!r}: expected True or False")
        self.fast_full_sort = fast

    def _combine_linear(self, layer, self_part, neighbour_part):
        """``linear(combine(self, neighbours))`` without the bias, for the configured aggregator."""
        weight = layer.weight
        d = self.embedding_size
        if self.aggregator_class == "sum":
            return (self_part + neighbour_part) @ weight.T
        if self.aggregator_class == "neighbor":
            return neighbour_part @ weight.T
        if self.aggregator_class == "concat":
            return self_part @ weight[:, :d].T + neighbour_part @ weight[:, d:].T
        raise ValueError(f"config key 'aggregator' = {self.aggregator_class!r}: "
                         "expected sum, neighbor or concat")

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
        embedded = self.entity_embedding(inputs)  # [n, d]
        zero = torch.zeros_like(embedded)
        neighbour_in = self._combine_linear(layer, zero, embedded)[neighbours]
        n_out = outputs.numel()
        self_in = self._combine_linear(layer, embedded[:n_out], zero[:n_out]) + layer.bias
        return neighbour_in, self_in

    def _attention(self, user_e):
        """A function of the relations ([q, K]) giving each user's weights ``softmax_k / K``,
        entity-major ([q, K, B]). The softmax is computed from one exponential per (user,
        relation), shifted by the user's largest logit (the shift cancels); where a row's terms
        all underflow, from the logits directly."""
        # relation attention logits of every user for every relation: mean(u * r) = u . r / d
        logits = (self.relation_embedding.weight @ user_e.T) / self.embedding_size  # [R, B]
        weights = torch.exp(logits - logits.max(dim=0, keepdim=True).values)
        k = self.neighbor_sample_size

        def attention(relations):
            w = weights[relations]
            total = w.sum(dim=1, keepdim=True)
            if bool((total < torch.finfo(total.dtype).tiny * 1e6).any()):
                return torch.softmax(logits[relations], dim=1) / k
            return w / (total * k)

        return attention

    def _item_vectors(self, user_e, plan, first_inputs):
        """``v_n_iter(u, item)`` for every item and every user of ``user_e``: [items, users, dim]
        (entity-major, so that gathering neighbours copies whole [users, dim] blocks)."""
        attention = self._attention(user_e)
        vectors = None
        for i, (_, outputs, neighbours, relations) in enumerate(plan):
            weights = attention(relations)  # [q, K, B]
            if vectors is None:
                # user-independent inputs: the linear layer was applied per entity beforehand
                neighbour_in, self_in = first_inputs  # [q, K, d], [q, d]
                pre = torch.bmm(weights.transpose(1, 2), neighbour_in) + self_in.unsqueeze(1)
            else:
                # v_i is user-specific: mix the neighbours per user, then the linear layer
                mixed = weights[:, 0, :, None] * vectors.index_select(0, neighbours[:, 0])
                for j in range(1, neighbours.shape[1]):
                    mixed += weights[:, j, :, None] * vectors.index_select(0, neighbours[:, j])
                layer = self.linear_layers[i]
                pre = self._combine_linear(layer, vectors[:outputs.numel()], mixed)
                pre += layer.bias
            vectors = torch.tanh(pre) if i == self.n_iter - 1 else torch.relu(pre)
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
        d, k = self.embedding_size, self.neighbor_sample_size
        # floats per user of the intermediates of an iteration: weights [q, K] and about four
        # [q, d] tensors (the inputs, a gathered neighbour, the mix, the output)
        per_user = max(outputs.numel() * (k + 4 * d) for _, outputs, _, _ in plan)
        chunk = max(1, _CHUNK_FLOATS // per_user)
        first_inputs = self._first_inputs(plan)
        scores = []
        for start in range(0, users.numel(), chunk):
            part = user_e[start:start + chunk]
            item_vectors = self._item_vectors(part, plan, first_inputs)  # [items, b, d]
            scores.append(torch.einsum("bd,nbd->bn", part, item_vectors))
        return torch.cat(scores).reshape(-1)
