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
    """Free tensors by (shape, dtype, device); :meth:`take` reuses one or allocates it."""

    def __init__(self):
        self._free = {}
        self.allocated = 0  # tensors this pool has allocated (for tests and benchmarks)

    @staticmethod
    def _key(shape, dtype, device):
        return tuple(int(n) for n in shape), dtype, torch.device(device)

    def take(self, shape, dtype, device):
        device = torch.device(device)
        if device.type != "cpu":
            return torch.empty(shape, dtype=dtype, device=device)
        free = self._free.get(self._key(shape, dtype, device))
        if free:
            return free.pop()
        self.allocated += 1
        return torch.empty(shape, dtype=dtype, device=device)

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
        t = self.pool.take(shape, dtype, device)
        self.taken.append(t)
        return t

    def give_back(self, tensor):
        """Return one buffer early, once nothing of the step reads it any more (no-op for a
        tensor this lease did not take)."""
        for i, t in enumerate(self.taken):
            if t is tensor:
                del self.taken[i]
                self.pool.give([t])
                return

    def release(self):
        if not self.released:
            self.released = True
            self.pool.give(self.taken)
            self.taken = []

    def bind(self, owner):
        """Release when ``owner`` (an autograd context) is freed, if not released before."""
        weakref.finalize(owner, self.release)
