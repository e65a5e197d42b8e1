# -*- coding: utf-8 -*-
"""Work buffers reused from step to step (KGIN's ``fused_propagation`` on CPU).

A training step at Last-FM scale allocates about 1.5 GB in some 60 tensors of 1 MB or more. The
speed of that rests on the C allocator keeping freed blocks: when another model in the same
process fragments the heap, each such tensor comes from fresh pages, and the step slows several
fold. A :class:`BufferPool` keeps the large work tensors of a step and hands them out again in the
next one. A :class:`Lease` holds what one step took: it gives the buffers back once (after the
backward pass, or when the step's graph is freed without one), so a buffer is never handed out
while a step that may still read it holds it. On CUDA the pool allocates plainly: torch's caching
allocator already reuses device memory.
"""

import weakref

import torch


class BufferPool:
    """Free tensors by (trailing shape, dtype, device); :meth:`take` reuses one or allocates it.

    A request for ``rows`` rows is served by the smallest free buffer with at least that many and
    at most about twice as many (the first ``rows`` rows of it), and a new buffer gets its rows rounded up to a multiple of
    ``ROUND_ROWS``: work tensors whose row count moves a little from step to step (the batch's
    users stacked under all entities) still find their buffer again."""

    ROUND_ROWS = 2048

    def __init__(self):
        self._free = {}
        self.allocated = 0  # tensors this pool has allocated (for tests and benchmarks)

    @staticmethod
    def _key(shape, dtype, device):
        return tuple(int(n) for n in shape[1:]), dtype, torch.device(device)

    def take_base(self, shape, dtype, device):
        """``(view of the requested shape, the buffer it lies in)``."""
        device = torch.device(device)
        rows = int(shape[0])
        if device.type != "cpu":
            t = torch.empty(shape, dtype=dtype, device=device)
            return t, t
        free = self._free.get(self._key(shape, dtype, device), [])
        # (not a large buffer for a small request: the large one would be missing next)
        fits = [i for i, b in enumerate(free) if rows <= b.shape[0] <= 2 * rows + self.ROUND_ROWS]
        if fits:
            base = free.pop(min(fits, key=lambda i: free[i].shape[0]))
        else:
            self.allocated += 1
            capacity = -(-max(rows, 1) // self.ROUND_ROWS) * self.ROUND_ROWS
            base = torch.empty((capacity, *shape[1:]), dtype=dtype, device=device)
        return base[:rows], base

    def take(self, shape, dtype, device):
        return self.take_base(shape, dtype, device)[0]

    def give(self, tensors):
        for t in tensors:
            if t.device.type == "cpu":
                self._free.setdefault(self._key(t.shape, t.dtype, t.device), []).append(t)

    def clear(self):
        """Free every buffer not handed out (e.g. before an evaluation)."""
        self.allocated -= sum(len(v) for v in self._free.values())
        self._free.clear()


class Lease:
    """The buffers one step took from ``pool``; :meth:`release` gives them back, once."""

    def __init__(self, pool):
        self.pool = pool
        self.taken = []
        self.released = False

    def take(self, shape, dtype, device):
        view, base = self.pool.take_base(shape, dtype, device)
        self.taken.append((view, base))
        return view

    def give_back(self, tensor):
        """Return one buffer early, once nothing of the step reads it any more (no-op for a
        tensor this lease did not hand out)."""
        for i, (view, base) in enumerate(self.taken):
            if view is tensor:
                del self.taken[i]
                self.pool.give([base])
                return

    def release(self):
        if not self.released:
            self.released = True
            self.pool.give([base for _, base in self.taken])
            self.taken = []

    def bind(self, owner):
        """Release when ``owner`` (an autograd context) is freed, if not released before."""
        weakref.finalize(owner, self.release)
