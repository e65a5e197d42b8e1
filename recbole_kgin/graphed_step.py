# -*- coding: utf-8 -*-
"""A training step recorded once as a CUDA graph and replayed (KGIN's ``cuda_graph``).

With ``static_graph`` a KGIN training step launches the same kernels on tensors of the same shapes
at every step; only the batch's ids change. :class:`GraphedStep` copies each batch into fixed
input tensors and replays the recorded step (zero_grad, loss, backward, optimizer step) with one
call instead of some 270 launches. A batch of another size (an epoch's last, smaller one) runs
eagerly, and so do the first ``warmup`` steps of each size (CUDA graphs need the caches and the
optimizer state to exist before recording). The replayed step draws its random numbers from
torch's CUDA generator as the eager step does (graph-safe Philox offsets), so it computes what the
eager step computes.

Recording itself is :func:`cuda_capture`; tests on machines without a GPU pass a stand-in that
re-runs the recorded function on replay, which checks everything here except CUDA's recording.
If recording fails (an operation CUDA cannot record), the step warns once and stays eager.
"""

import warnings

import torch


def cuda_capture(step, pool=None):
    """``(graph, output)``: ``step()`` recorded as a CUDA graph (``torch.cuda.graph`` records on
    its own side stream; nothing runs until ``graph.replay()``, which writes the step's outputs
    into ``output``)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        output = step()
    return graph, output


class GraphedStep:
    """``step(interaction)`` -> the batch's loss (a 0-dim tensor), after zero_grad, backward and
    ``optimizer.step()``; ``fields``: the interaction fields the loss reads."""

    def __init__(self, model, optimizer, fields, warmup=3, capture=cuda_capture,
                 loss_func=None):
        self.model, self.optimizer, self.fields = model, optimizer, tuple(fields)
        self.warmup, self.capture = int(warmup), capture
        self.loss_func = loss_func or model.calculate_loss
        self.graphs = {}  # batch size -> (graph, static inputs, static loss)
        self.eager_steps = {}  # batch size -> eager steps run so far
        self.replays = 0
        self.failed = None  # why recording failed (then every step is eager)
        # CUDA records after warm-up steps on a side stream (lazy initialisations off the
        # recorded stream)
        self._side = torch.cuda.Stream() if capture is cuda_capture else None

    def _run(self, interaction):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_func(interaction)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _warm(self, interaction):
        if self._side is None or self.failed is not None:
            return self._run(interaction)
        self._side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._side):
            loss = self._run(interaction)
        torch.cuda.current_stream().wait_stream(self._side)
        return loss

    def __call__(self, interaction):
        size = len(interaction)
        entry = self.graphs.get(size)
        if entry is None:
            done = self.eager_steps.get(size, 0)
            if self.failed is not None or done < self.warmup:
                self.eager_steps[size] = done + 1
                return self._warm(interaction)
            entry = self._record(interaction, size)
            if entry is None:
                return self._run(interaction)
        graph, static, loss = entry
        for field in self.fields:
            static[field].copy_(interaction[field])
        graph.replay()
        self.replays += 1
        return loss

    def _record(self, interaction, size):
        from recbole.data.interaction import Interaction

        static = Interaction({f: interaction[f].clone() for f in self.fields})
        try:
            pool = next(iter(self.graphs.values()))[0].pool() if self.graphs else None
            graph, loss = self.capture(lambda: self._run(static), pool)
        except Exception as error:  # noqa: BLE001 - any recording failure: stay eager
            self.failed = f"{type(error).__name__}: {error}".splitlines()[0]
            warnings.warn(f"cuda_graph: recording the training step failed ({self.failed}); "
                          "training continues with eager steps")
            return None
        self.graphs[size] = (graph, static, loss)
        return self.graphs[size]
