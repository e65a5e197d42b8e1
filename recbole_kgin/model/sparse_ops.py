# -*- coding: utf-8 -*-
"""Sparse-dense products with a fixed sparsity pattern, built once, and their exact gradients.

KGIN multiplies the same two sparse matrices (knowledge graph, interactions) by dense embeddings at
every hop of every step; node dropout only removes entries. :class:`CachedPattern` stores the full
pattern once in CSR order together with the permutation into its transpose's CSR order, so that a
step's matrix and its transpose are gathered from cached index arrays (no sort, no COO/CSR
conversion); :func:`spmm` is ``matrix @ dense`` whose backward multiplies by that cached transpose.
Only the dense operand gets a gradient (the matrix values are constants: degrees and dropout
scales). :meth:`CachedPattern.row_subset` restricts a pattern to some rows (a batch's users or
items). :func:`relation_aggregate` is KGIN's relation-weighted sum over (head, relation) pairs as
one autograd function. :func:`csr_mm` is the product itself, without ``torch.sparse.mm``'s extra
zero-fill and copy on CPU. Indices are int32 where the sizes allow (less memory traffic), int64
otherwise.
"""

import warnings

import torch

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

_INT32_MAX = 2**31 - 1


class SparsePair:
    """A CSR matrix ``A`` [n_rows, n_cols] and its transpose ``A^T`` in CSR, same values."""

    __slots__ = ("matrix", "transpose")

    def __init__(self, matrix, transpose):
        self.matrix = matrix
        self.transpose = transpose


def csr_mm(matrix, dense, out=None):
    """``matrix @ dense`` for a CSR ``matrix``. On CPU the product is written straight into an
    uninitialised output (``addmm`` with ``beta=0`` ignores it): ``torch.sparse.mm`` there
    zero-fills a result, multiplies into a second one and copies it over, which at Last-FM scale
    costs about three times the product itself. Same numbers either way (tested). ``out`` (CPU): a
    buffer of the result's shape to write into; use the returned tensor (on other devices ``out``
    is ignored)."""
    if dense.device.type != "cpu":
        return torch.sparse.mm(matrix, dense)
    if out is None:
        out = dense.new_empty(matrix.shape[0], dense.shape[1])
    return torch.addmm(out, matrix, dense.contiguous(), beta=0.0, alpha=1.0, out=out)


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pair, dense):
        ctx.pair = pair
        return csr_mm(pair.matrix, dense)

    @staticmethod
    def backward(ctx, grad):
        if not ctx.needs_input_grad[1]:
            return None, None
        return None, csr_mm(ctx.pair.transpose, grad)


def spmm(pair, dense):
    """``pair.matrix @ dense``; the gradient of ``dense`` is ``pair.transpose @ grad``."""
    if not torch.is_grad_enabled() or not dense.requires_grad:
        return csr_mm(pair.matrix, dense)
    return _SpMM.apply(pair, dense)


def _relation_messages(pair_mean, relation, pair_rel, blocks):
    """``relation[pair_rel] * pair_mean``: a broadcast product per block of pairs of one relation
    when ``blocks`` [(start, end, relation), ...] cover the pairs, else a gather and a product."""
    if blocks is None:
        return relation.index_select(0, pair_rel).mul_(pair_mean)
    out = torch.empty_like(pair_mean)
    for start, end, r in blocks:
        torch.mul(pair_mean[start:end], relation[r], out=out[start:end])
    return out


class _RelationAggregate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pair_mean, relation, pair_rel, pair_head, head_sum, rel_sum, blocks):
        messages = _relation_messages(pair_mean, relation, pair_rel, blocks)
        ctx.save_for_backward(pair_mean, relation, pair_rel, pair_head)
        ctx.rel_sum, ctx.blocks = rel_sum, blocks
        return csr_mm(head_sum.matrix, messages)

    @staticmethod
    def backward(ctx, grad):
        pair_mean, relation, pair_rel, pair_head = ctx.saved_tensors
        grad_messages = grad.index_select(0, pair_head)  # each pair has exactly one head
        grad_relation = grad_pair_mean = None
        if ctx.needs_input_grad[1]:
            product = grad_messages * pair_mean
            grad_relation = csr_mm(ctx.rel_sum.matrix, product)
            del product
        if ctx.needs_input_grad[0]:
            if ctx.blocks is None:
                grad_pair_mean = grad_messages.mul_(relation.index_select(0, pair_rel))
            else:
                for start, end, r in ctx.blocks:
                    grad_messages[start:end].mul_(relation[r])
                grad_pair_mean = grad_messages
        return grad_pair_mean, grad_relation, None, None, None, None, None


def relation_aggregate(pair_mean, relation, pair_rel, pair_head, head_sum, rel_sum, blocks=None):
    """``out[h] = sum over the pairs p headed by h of relation[pair_rel[p]] * pair_mean[p]``.

    ``pair_head`` / ``pair_rel``: each pair's head row and relation (int64); ``head_sum``: the
    SparsePair of the [heads x pairs] 0/1 matrix that sums the pairs of each head; ``rel_sum``: that
    of the [relations x pairs] 0/1 matrix that sums the pairs of each relation; ``blocks``:
    optional [(start, end, relation)] when the pairs of one relation are contiguous (no gather of
    relation rows then). One temporary of the pairs' size in forward and two in backward; the same
    numbers as gathering the relation rows, multiplying and summing with autograd."""
    if not torch.is_grad_enabled() or not (pair_mean.requires_grad or relation.requires_grad):
        return csr_mm(head_sum.matrix, _relation_messages(pair_mean, relation, pair_rel, blocks))
    return _RelationAggregate.apply(pair_mean, relation, pair_rel, pair_head, head_sum, rel_sum,
                                    blocks)


def ragged_ranges(starts, counts):
    """``(owner, positions)`` of the concatenated ranges ``starts[i] .. starts[i] + counts[i] - 1``:
    ``positions`` lists them in order and ``owner`` says which range each position came from
    (``owner`` has the dtype of ``counts``; 7 operations)."""
    owner = torch.repeat_interleave(counts)  # 0 repeated counts[0] times, 1 counts[1] times, ...
    # where each range begins in the result: the exclusive cumulative sum of the counts
    shift = starts - torch.cumsum(counts, 0).sub_(counts)
    positions = torch.arange(owner.shape[0], device=starts.device).add_(shift[owner])
    return owner, positions


def group_sum(groups, n_groups, dtype=torch.float32, sorted_groups=False):
    """SparsePair of the [n_groups x len(groups)] 0/1 matrix whose row g sums the columns ``j``
    with ``groups[j] == g`` (entries sorted by group, then column). Only the matrix is built (its
    ``transpose`` is None): the gradient of a group sum is a gather, not a product. With
    ``sorted_groups`` the caller promises ``groups`` non-decreasing (no sort then). 4 or 5
    operations."""
    n = groups.shape[0]
    dt = torch.int32 if max(n, int(n_groups)) <= _INT32_MAX else torch.int64
    if sorted_groups:
        rows, cols = groups, torch.arange(n, dtype=dt, device=groups.device)
    else:
        rows, order = torch.sort(groups, stable=True)
        cols = order.to(dt)
    ones = torch.ones(n, dtype=dtype, device=groups.device)
    matrix = torch.sparse_csr_tensor(_crow(rows, n_groups, dt), cols, ones, (int(n_groups), n),
                                     check_invariants=False)
    return SparsePair(matrix, None)


def _crow(sorted_rows, n_rows, dtype):
    """CSR row pointers of entries whose row indices ``sorted_rows`` are non-decreasing: one
    operation (torch's own COO-to-CSR conversion)."""
    return torch._convert_indices_from_coo_to_csr(sorted_rows, n_rows,
                                                  out_int32=dtype == torch.int32)


class CachedPattern:
    """The pattern of a sparse matrix: entries ``(row[k], col[k])``, sorted by row then column.

    ``select(values, keep)`` returns a :class:`SparsePair` holding the entries where ``keep`` is
    true (all when ``keep`` is None) with the given per-entry ``values`` (aligned with the
    entries), restricted to the first ``n_rows`` rows when asked. The transpose is gathered
    through a permutation computed once.
    """

    def __init__(self, row, col, n_rows, n_cols, checked=False):
        row = torch.as_tensor(row, dtype=torch.int64)
        col = torch.as_tensor(col, dtype=torch.int64)
        if row.numel() > 1 and not checked:  # checked: built sorted by this module
            key = row * max(n_cols, 1) + col
            if bool((key[1:] < key[:-1]).any()):
                raise ValueError("CachedPattern: entries must be sorted by row, then column")
        self.n_rows, self.n_cols = int(n_rows), int(n_cols)
        self.nnz = int(row.numel())
        small = max(self.n_rows, self.n_cols, self.nnz) <= _INT32_MAX
        self.index_dtype = torch.int32 if small else torch.int64
        self.row, self.col = row, col
        # entries in the transpose's CSR order: by column, then row (stable sort keeps row order)
        self.t_perm = torch.sort(col, stable=True).indices
        self._full = None  # (crow, col, t_crow, t_col) of the whole pattern
        self._index = self._ptr = None  # see _indices and _row_pointers

    def to(self, device):
        for name in ("row", "col", "t_perm"):
            setattr(self, name, getattr(self, name).to(device))
        self._full = self._index = self._ptr = None
        return self

    def _full_structure(self):
        if self._full is None:
            dt = self.index_dtype
            t_row = self.row[self.t_perm]
            self._full = (
                _crow(self.row, self.n_rows, dt), self.col.to(dt),
                _crow(self.col[self.t_perm], self.n_cols, dt), t_row.to(dt),
            )
        return self._full

    def _indices(self):
        """The rows and columns in the index dtype, converted once for every :meth:`select`."""
        if self._index is None:
            dt = self.index_dtype
            self._index = (self.row.to(dt), self.col.to(dt))
        return self._index

    def _row_pointers(self):
        """int64 CSR row pointers of the whole pattern and the entries of each row in the index
        dtype (for :meth:`row_subset`), built once."""
        if self._ptr is None:
            crow = _crow(self.row, self.n_rows, torch.int64)
            self._ptr = (crow, torch.diff(crow).to(self.index_dtype))
        return self._ptr

    def row_subset(self, rows, values, keep=None):
        """SparsePair of the rows ``rows`` (unique; any order) of this pattern, renumbered
        0 .. len(rows)-1, with the per-entry ``values`` (aligned with this pattern's entries) and
        only the entries where ``keep`` (bool mask over this pattern's entries; None: all): the
        same matrix as gathering the rows and selecting, in about 20 operations."""
        crow, counts = self._row_pointers()
        new_rows, entries = ragged_ranges(crow[rows], counts[rows])
        if keep is not None:
            kept = keep[entries].nonzero().squeeze(1)
            new_rows, entries = new_rows[kept], entries[kept]
        dt, n = self.index_dtype, int(rows.shape[0])
        col = self._indices()[1][entries]
        vals = values[entries]
        matrix = torch.sparse_csr_tensor(_crow(new_rows, n, dt), col, vals, (n, self.n_cols),
                                         check_invariants=False)
        # the transpose's CSR order: by column, then row (a stable sort keeps the row order)
        t_col, t_perm = torch.sort(col, stable=True)
        transpose = torch.sparse_csr_tensor(
            _crow(t_col, self.n_cols, dt), new_rows[t_perm], vals[t_perm],
            (self.n_cols, n), check_invariants=False)
        return SparsePair(matrix, transpose)

    def select(self, values, keep=None, n_rows=None):
        """SparsePair of the kept entries (``keep``: bool mask over entries, or None for all),
        restricted to rows ``< n_rows`` (the first rows; None: all)."""
        n_rows = self.n_rows if n_rows is None else int(n_rows)
        dt = self.index_dtype
        if keep is None and n_rows == self.n_rows:
            crow, col, t_crow, t_col = self._full_structure()
            fwd_vals, t_vals = values, values[self.t_perm]
        else:
            if keep is None:
                keep = torch.ones(self.nnz, dtype=torch.bool, device=self.row.device)
            if n_rows < self.n_rows:
                keep = keep & (self.row < n_rows)
            row_dt, col_dt = self._indices()
            idx = keep.nonzero().squeeze(1)  # increasing: CSR order is kept
            t_idx = self.t_perm[keep[self.t_perm]]  # kept entries in transpose order
            crow = _crow(self.row[idx], n_rows, dt)
            col = col_dt[idx]
            t_crow = _crow(self.col[t_idx], self.n_cols, dt)  # sorted: transpose order
            t_col = row_dt[t_idx]
            fwd_vals, t_vals = values[idx], values[t_idx]
        matrix = torch.sparse_csr_tensor(
            crow, col, fwd_vals, (n_rows, self.n_cols), check_invariants=False
        )
        transpose = torch.sparse_csr_tensor(
            t_crow, t_col, t_vals, (self.n_cols, n_rows), check_invariants=False
        )
        return SparsePair(matrix, transpose)
