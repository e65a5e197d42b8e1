# -*- coding: utf-8 -*-
"""RecBole's KGAT without DGL.

RecBole 1.2.1's KGAT uses DGL twice, and only to build one matrix: ``__init__`` asks the dataset for
the collaborative knowledge graph (CKG) as a DGL graph, and ``init_graph`` cuts that graph into one
subgraph per relation to row-normalise each. DGL's PyPI wheels do not support current torch, so this
subclass keeps everything of RecBole's model (parameters, losses, the attentive update, the trainer
``KGATTrainer`` and the default ``KGAT.yaml``, which RecBole finds by the unchanged model name) and
computes the same initial matrix from the CKG in SciPy COO form:

    A[s, t] = sum over relations r = 1 .. n_relations - 1 of  m_r(s, t) / d_r(s)

where ``m_r(s, t)`` is the number of CKG edges ``s -> t`` with relation ``r`` and ``d_r(s)`` the
number of edges with relation ``r`` leaving ``s`` (RecBole's loop over ``range(1, n_relations)``,
i.e. every KG relation and the user-item relation, never the padding relation 0). Rows follow the
edge source, as in DGL's ``adjacency_matrix(transpose=False)``; parallel edges add up, as they do
when RecBole sums its per-relation SciPy matrices.
"""

import numpy as np
import scipy.sparse as sp
import torch

from recbole.model.knowledge_aware_recommender.kgat import KGAT as RecBoleKGAT


class _CkgAsCoo:
    """Read-through view of a ``KnowledgeBasedDataset`` whose ``ckg_graph(form="dgl")`` answers
    with the SciPy COO matrix (values = relation ids) instead of a DGL graph."""

    def __init__(self, dataset):
        self._dataset = dataset

    def __getattr__(self, name):
        return getattr(self._dataset, name)

    def ckg_graph(self, form="coo", value_field=None):
        if form == "dgl":
            form = "coo"
        return self._dataset.ckg_graph(form=form, value_field=value_field)


def relation_normalised_adjacency(rows, cols, relations, n_nodes, relation_ids):
    """Sum over ``relation_ids`` of the row-normalised adjacency of each relation's edges.

    Returns a SciPy CSR matrix of shape ``(n_nodes, n_nodes)`` (float64), duplicates summed.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    relations = np.asarray(relations, dtype=np.int64)
    keep = np.isin(relations, np.asarray(list(relation_ids), dtype=np.int64))
    rows, cols, relations = rows[keep], cols[keep], relations[keep]
    if rows.size == 0:
        return sp.csr_matrix((n_nodes, n_nodes), dtype=np.float64)
    # out-degree of every (source, relation) pair, looked up for every edge
    _, group, degree = np.unique(
        np.stack([rows, relations]), axis=1, return_inverse=True, return_counts=True
    )
    values = 1.0 / degree[np.asarray(group).reshape(-1)]
    return sp.coo_matrix((values, (rows, cols)), shape=(n_nodes, n_nodes)).tocsr()


class KGAT(RecBoleKGAT):
    """RecBole's KGAT (same parameters, losses and trainer) with a DGL-free ``init_graph``."""

    graph_backend = "scipy"

    def __init__(self, config, dataset):
        super().__init__(config, _CkgAsCoo(dataset))

    def init_graph(self):
        n_nodes = self.n_users + self.n_entities
        ckg = self.ckg  # SciPy COO of the CKG, values = relation ids (see _CkgAsCoo)
        adjacency = relation_normalised_adjacency(
            ckg.row, ckg.col, ckg.data, n_nodes, range(1, self.n_relations)
        ).tocoo()
        indices = torch.from_numpy(np.stack([adjacency.row, adjacency.col]).astype(np.int64))
        values = torch.from_numpy(adjacency.data.astype(np.float32))
        return torch.sparse_coo_tensor(indices, values, self.matrix_size).coalesce().to(self.device)
