#!/usr/bin/env python
"""Training-step, evaluation and memory benchmark: this package's KGIN vs RecBole 1.2.1's KGIN.

Both models are built by the shared pipeline (create_config / load_data / build_model) on the same
data with the same published settings (d 64, 3 hops, 4 intents, batch 1024, lr 1e-4, node dropout
0.5, message dropout 0.1). By default each model runs alone in its own process, as it does when it
trains, and the models alternate (A B, then B A, ... for ``--rounds``), so background load falls on
both alike; ``--in-process`` interleaves their steps in one process instead (then each model's
allocations fragment the other's memory, which slows the model that reuses large buffers). A step is
what one training iteration costs: the next batch from RecBole's training loader (negative sampling
included) + forward + backward + Adam.

Measured and written to JSON (``--json``):

* ``ours_step_s`` / ``recbole_step_s``: median step seconds after warm-up (over all rounds);
  ``ratio_step`` = RecBole's median / ours (same run);
* ``ours_step_cpu_s`` / ``recbole_step_cpu_s`` / ``ratio_step_cpu``: the same with the process's
  CPU seconds (all threads) instead of wall seconds, less sensitive to other jobs on the machine;
* ``ours_eval_s`` / ``recbole_eval_s``: full-ranking evaluation of every user: one propagation
  without dropout, scores of all items, training items masked, top-20 per user;
* ``ours_peak_rss_gb`` (CPU): peak resident memory (VmHWM) of a separate process that loads the data and
  trains and evaluates our KGIN alone (the same steps); on CUDA ``ours_peak_gpu_gb``
  (``torch.cuda.max_memory_allocated``) is recorded in the main run;
* optionally (``--epoch``) one full training epoch of each model;
* with ``--in-process`` and our KGIN listed first among several models:
  ``ours_step_alone_in_process_s`` (our steps in the same process before any other model is
  built) and ``ratio_in_process_vs_alone`` = our median step among the other model's steps / that;
* ``<model>_minor_faults_per_step``: median minor page faults of a measured step (memory that the
  step received fresh from the OS: what allocator churn costs);
* ``<model>_ops_per_step`` and ``<model>_ops_by_phase``: aten operations per step, views left out
  (batch, forward, backward, optimizer), a proxy of GPU kernel launches;
  ``<model>_large_allocations_per_step``: the tensors of 1 MiB or more those operations allocated
  (count and GB; in-place operations, views and ``out=`` writes allocate nothing).

Inputs: ``--scale lastfm`` (a synthetic graph with Last-FM's sizes: 23,566 users, 106,389 entities of
which 48,123 items, 464,567 KG triplets over 9 relations, 1,289,003 interactions, split 96/2/2 per
user) or ``--dataset NAME`` (any dataset RecBole can load: a converted one under atomic_data/, or
ml-100k). ``--device cpu|cuda``.

    PYTHONPATH=. python benchmarks/kgin_step.py --scale lastfm --device cpu --json benchmarks/results/step_lastfm_cpu.json
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# Last-FM (paper Table 1 and the authors' files): sizes of the synthetic graph of --scale lastfm
LASTFM = dict(users=23_566, items=48_123, entities=106_389, relations=9, triplets=464_567,
              interactions=1_289_003)

# triplets per relation in Last-FM's kg_final.txt (authors' files)
LASTFM_RELATION_COUNTS = (66708, 271029, 67890, 17714, 32397, 3431, 515, 3383, 1500)

PUBLISHED = {
    "embedding_size": 64, "learning_rate": 1e-4, "train_batch_size": 1024, "reg_weight": 1e-5,
    "context_hops": 3, "n_factors": 4, "ind": "distance", "node_dropout_rate": 0.5,
    "mess_dropout_rate": 0.1, "sim_regularity": 1e-4, "temperature": 0.2, "kg_reverse_r": True,
    "seed": 2020, "show_progress": False, "state": "WARNING",
}
NAMES = {"KGIN": "ours", "RecBoleKGIN": "recbole"}


def machine(device):
    from machine import describe

    return describe(device)


# ------------------------------------------------------------------ synthetic Last-FM-sized data
def write_lastfm_scale(root, seed=0, sizes=LASTFM):
    """Write RecBole atomic files of a random graph with Last-FM's sizes under ``root/lastfm-scale``.

    Item and entity popularity follow a Zipf-like law (exponent 0.8, mixed half and half with a
    uniform law so that nearly every id occurs), users' interaction counts a
    log-normal law, so that degrees are skewed as in the real data. Every item is an entity.
    """
    rng = np.random.default_rng(seed)
    name = "lastfm-scale"
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    n_u, n_i, n_e = sizes["users"], sizes["items"], sizes["entities"]

    def zipf_probs(n, s=0.8):
        # Zipf-like, mixed with a uniform floor so that nearly every id occurs somewhere
        p = 1.0 / np.arange(1, n + 1) ** s
        p = p[rng.permutation(n)]
        return 0.5 * p / p.sum() + 0.5 / n

    # interactions: unique (user, item) pairs, every user at least 5
    counts = np.maximum(5, rng.lognormal(mean=3.5, sigma=1.0, size=n_u)).astype(np.int64)
    counts = np.minimum(counts, n_i // 4)
    counts = np.round(counts * sizes["interactions"] / counts.sum()).astype(np.int64)
    item_p = zipf_probs(n_i)
    keys = []
    for u, c in enumerate(counts):
        items = rng.permutation(np.unique(rng.choice(n_i, size=int(c * 1.3) + 5, p=item_p)))
        items = items[: int(c)]
        keys.append(u * n_i + items)
    keys = np.unique(np.concatenate(keys))
    # adjust to the exact count
    target = sizes["interactions"]
    if keys.shape[0] > target:
        keys = np.sort(rng.choice(keys, size=target, replace=False))
    while keys.shape[0] < target:
        extra = rng.integers(0, n_u, size=target) * n_i + rng.choice(n_i, size=target, p=item_p)
        keys = np.unique(np.concatenate([keys, extra[: target - keys.shape[0]]]))
    users, items = keys // n_i, keys % n_i
    with open(folder / f"{name}.inter", "w") as f:
        f.write("user_id:token\titem_id:token\n")
        np.savetxt(f, np.stack([users, items], 1), fmt="u%d\ti%d")

    # knowledge graph shaped like Last-FM's (counted from the authors' kg_final.txt): 75 % of the
    # heads are items, 99 % of the tails are other entities (Zipf-skewed), relation frequencies as
    # there, about 2 tails per (head, relation) pair; unique (head, relation, tail)
    n_t, n_pairs = sizes["triplets"], int(sizes["triplets"] / 1.97)
    rel_share = np.array(LASTFM_RELATION_COUNTS, dtype=np.float64)
    pair_head = np.where(rng.random(n_pairs) < 0.75, rng.integers(0, n_i, size=n_pairs),
                         rng.integers(n_i, n_e, size=n_pairs))
    pair_rel = rng.choice(len(rel_share), size=n_pairs, p=rel_share / rel_share.sum())
    other_p = zipf_probs(n_e - n_i, s=1.0)
    trip = np.empty((0, 3), dtype=np.int64)
    while trip.shape[0] < n_t:
        m = n_t - trip.shape[0]
        pair = rng.integers(0, n_pairs, size=m)
        tail = np.where(rng.random(m) < 0.99, n_i + rng.choice(n_e - n_i, size=m, p=other_p),
                        rng.integers(0, n_i, size=m))
        new = np.stack([pair_head[pair], pair_rel[pair], tail], 1)
        trip = np.unique(np.concatenate([trip, new[new[:, 0] != new[:, 2]]]), axis=0)
    trip = trip[rng.permutation(trip.shape[0])[:n_t]]
    with open(folder / f"{name}.kg", "w") as f:
        f.write("head_id:token\trelation_id:token\ttail_id:token\n")
        np.savetxt(f, trip, fmt="e%d\tr%d\te%d")
    with open(folder / f"{name}.link", "w") as f:
        f.write("item_id:token\tentity_id:token\n")
        f.write("".join(f"i{k}\te{k}\n" for k in range(n_i)))
    return name


# ------------------------------------------------------------------ measuring
def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


class Runner:
    """One model, its optimizer and an endless iterator over its training loader."""

    def __init__(self, name, config, train_data, device):
        from recbole_kgin.quick_start import build_model

        self.name, self.device = name, device
        self.train_data = train_data
        self.model = build_model(config, train_data)
        # the optimizer each model's trainer builds: ours per adam_impl, RecBole's the loop form
        from recbole_kgin.trainer import adam_options

        impl = (config["adam_impl"] or "auto") if name == "KGIN" else "loop"
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config["learning_rate"],
                                          **adam_options(impl, device))
        self.config = config
        self._iter = None
        # user-item batches only, for both models (KGINTrainer does this for ours; RecBole's
        # KGTrainer would also sample an unused KG batch per step for its KGIN)
        from recbole.utils import KGDataLoaderState

        train_data.set_mode(KGDataLoaderState.RS)
        self.add_negatives = None
        self.faults = []  # minor page faults of every step
        self.graphed = None
        if name == "KGIN" and config["cuda_graph"]:  # as KGINTrainer does: replayed CUDA graphs
            from recbole_kgin.graphed_step import GraphedStep
            from recbole_kgin.trainer import cuda_graph_problem

            problem = cuda_graph_problem(config, device)
            if problem:
                raise SystemExit(f"cuda_graph: {problem}")
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config["learning_rate"],
                                              capturable=True, **adam_options(impl, device))
            model = self.model
            self.graphed = GraphedStep(model, self.optimizer,
                                       (model.USER_ID, model.ITEM_ID, model.NEG_ITEM_ID))
        if name == "KGIN" and config["neg_sampling_device"]:  # as KGINTrainer does
            from recbole_kgin.trainer import device_negatives

            self.add_negatives = device_negatives(train_data, self.model, device)

    def next_batch(self):
        while True:
            if self._iter is None:
                self._iter = iter(self.train_data)
            try:
                return next(self._iter)
            except StopIteration:
                self._iter = None

    def step(self):
        """(wall seconds, process CPU seconds) of one step: batch (with negative sampling) +
        forward + backward + Adam."""
        self.model.train()
        sync(self.device)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start, cpu_start = time.perf_counter(), time.process_time()
        batch = self.next_batch().to(self.device)
        if self.add_negatives is not None:
            batch = self.add_negatives(batch)
        self.train_batch(batch)
        sync(self.device)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        # minor page faults: memory the step touched for the first time (fresh pages from the OS)
        self.faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
        return elapsed, cpu

    def train_batch(self, batch):
        """Forward, backward and one Adam update on ``batch``."""
        if self.graphed is not None:
            self.graphed(batch)
            return
        self.optimizer.zero_grad()
        loss = self.model.calculate_loss(batch)
        if isinstance(loss, tuple):
            loss = sum(loss)
        loss.backward()
        self.optimizer.step()

    def epoch(self):
        """Seconds of one full training epoch (RecBole's loader, one pass)."""
        self.model.train()
        sync(self.device)
        start = time.perf_counter()
        for batch in self.train_data:
            batch = batch.to(self.device)
            self.train_batch(batch if self.add_negatives is None else self.add_negatives(batch))
        sync(self.device)
        return time.perf_counter() - start

    @torch.no_grad()
    def evaluate_all_users(self, history, batch_users):
        """Seconds of a full-ranking pass over every user: propagate once (no dropout), score all
        items, mask training items, take the top 20. ``history`` comes from :func:`history_batches`
        (the training items of each batch of users, prepared once, as RecBole's loader does)."""
        from recbole.data.interaction import Interaction

        model = self.model
        model.eval()
        sync(self.device)
        start = time.perf_counter()
        if hasattr(model, "_cache"):
            model._cache = None  # ours caches between calls: measure a fresh propagation
        if hasattr(model, "restore_user_e"):
            model.restore_user_e = model.restore_entity_e = None
        checksum = 0.0
        for users, rows, cols in history:
            inter = Interaction({model.USER_ID: users.to(self.device)})
            scores = model.full_sort_predict(inter).view(users.shape[0], -1)
            scores.index_put_((rows.to(self.device), cols.to(self.device)),
                              torch.tensor(-float("inf"), device=self.device))
            top = torch.topk(scores, 20, dim=1).indices
            checksum += float(top[:, 0].sum())
        sync(self.device)
        return time.perf_counter() - start


# aten operators that return a view of their input: they launch no kernel (the ops-per-step proxy
# of GPU kernel launches leaves them out)
VIEW_OPS = frozenset({"slice", "select", "view", "t", "expand", "detach", "alias", "as_strided",
                      "squeeze", "unsqueeze", "permute", "transpose", "_unsafe_view",
                      "_reshape_alias", "view_as", "expand_as", "lift_fresh"})


def count_ops(runner, steps=1):
    """``(non-view aten calls, all aten calls, {phase: non-view calls})`` per training step (batch
    with negative sampling, forward, backward, optimizer), counted with a TorchDispatchMode on
    this thread; the phases are ``batch``, ``forward``, ``backward`` and ``optimizer``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.total = 0
            self.views = 0
            self.phase = "batch"
            self.by_phase = {"batch": 0, "forward": 0, "backward": 0, "optimizer": 0}
            self.large = [0, 0]  # tensors of 1 MiB or more that operations allocated: count, bytes

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.total += 1
            if func.overloadpacket.__name__.rstrip("_") in VIEW_OPS:
                self.views += 1
            else:
                self.by_phase[self.phase] += 1
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if name.endswith("_") or name.rstrip("_") in VIEW_OPS or "out" in (kwargs or {}):
                return out  # in place, a view or written into a given buffer: nothing allocated
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                    size = t.numel() * t.element_size()
                    if size >= 2**20:
                        self.large[0] += 1
                        self.large[1] += size
            return out

    counter = Count()
    train_batch = getattr(runner, "train_batch", None)

    def phased(batch):  # the same work as Runner.train_batch, with the phase marked
        counter.phase = "forward"
        runner.optimizer.zero_grad()
        loss = runner.model.calculate_loss(batch)
        if isinstance(loss, tuple):
            loss = sum(loss)
        counter.phase = "backward"
        loss.backward()
        counter.phase = "optimizer"
        runner.optimizer.step()
        counter.phase = "batch"

    graphed = getattr(runner, "graphed", None) is not None
    if graphed:  # a replayed CUDA graph: the copies of the batch and the replay (no aten op)
        counter.by_phase["replay"] = 0
        train_batch = None

        def replayed(batch):
            counter.phase = "replay"
            runner.graphed(batch)
            counter.phase = "batch"

        runner.train_batch = replayed
    elif hasattr(runner, "train_batch"):
        runner.train_batch = phased
    try:
        with counter:
            for _ in range(steps):
                runner.step()
    finally:
        if graphed:
            del runner.train_batch  # back to the class's method
        elif hasattr(runner, "train_batch"):
            runner.train_batch = train_batch
    return ((counter.total - counter.views) / steps, counter.total / steps,
            {k: v / steps for k, v in counter.by_phase.items()},
            {"tensors": counter.large[0] / steps, "gb": counter.large[1] / steps / 1e9})


def history_batches(history, n_users, batch_users):
    """[(user ids, row in batch, item id)] of the training items of every batch of users (user id 0
    is RecBole's padding)."""
    indptr = torch.from_numpy(history.indptr).long()
    cols = torch.from_numpy(history.indices).long()
    out = []
    for lo in range(1, n_users, batch_users):
        hi = min(n_users, lo + batch_users)
        rows = torch.repeat_interleave(torch.arange(hi - lo), torch.diff(indptr[lo:hi + 1]))
        out.append((torch.arange(lo, hi), rows, cols[int(indptr[lo]):int(indptr[hi])]))
    return out


def stream_bandwidth_gbs(mib=256, repeats=5):
    """Best-of-``repeats`` bandwidth (GB/s) of ``c = a + b`` over float32 arrays of ``mib`` MiB each
    (3 arrays of traffic per pass), with torch's current thread count."""
    n = mib * 2**20 // 4
    a, b, c = torch.ones(n), torch.ones(n), torch.empty(n)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.add(a, b, out=c)
        best = min(best, time.perf_counter() - start)
    return 3 * n * 4 / best / 1e9


def traffic_floor_gb(sizes, d=64, hops=3, keep=0.5, n_params=None):
    """Bytes (GB) a training step must move at least: one d-float row gathered per kept non-zero
    of the KG and interaction matrices, forward and backward, every hop; Adam reading parameter,
    gradient and both moments and writing three of them. Dense per-hop work is left out, so this
    is a lower bound."""
    row = d * 4
    kept = keep * (sizes["n_kg_edges"] + sizes["training_pairs"])
    sparse = 2 * hops * kept * row
    n_params = n_params or (sizes["n_users"] + sizes["n_entities"]) * d
    return (sparse + 7 * 4 * n_params) / 1e9


def literal(value):
    """A command-line value as a Python value where it reads as one ('0.5', 'True'), else text."""
    import ast

    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def load(model_name, dataset, device, overrides, data_path):
    from recbole_kgin.quick_start import create_config, load_data

    cfg = dict(PUBLISHED, use_gpu=device == "cuda", checkpoint_dir="saved/bench-step")
    cfg["gpu_id"] = "0" if device == "cuda" else ""
    if model_name != "KGIN":  # RecBole's KGIN with glibc's defaults, as RecBole runs it
        cfg["retain_cpu_memory"] = False  # (--same-allocator gives its process the setting)
    if data_path:
        cfg["data_path"] = data_path
        cfg["eval_args"] = {"split": {"RS": [0.96, 0.02, 0.02]}, "group_by": "user",
                            "order": "RO", "mode": "full"}
    cfg.update({k: literal(v) for k, v in overrides.items()})
    config = create_config(model_name, dataset, config_dict=cfg)
    _, train_data, _, _ = load_data(config)
    return config, train_data


def peak_rss_gb():
    """Peak resident memory of this process (VmHWM: counted from this program's exec, not from
    the parent it was forked from)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def child_rss(args, data_path, dataset):
    """Peak RSS (GB) of a separate process running our KGIN alone on the same data."""
    with tempfile.TemporaryDirectory(prefix="kgin-rss-") as tmp:
        out = Path(tmp) / "rss.json"
        cmd = [sys.executable, __file__, "--models", "KGIN", "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--device", args.device, "--no-rss",
               "--_data-path", data_path or "", "--dataset", dataset, "--json", str(out)]
        proc = subprocess.run(cmd + args.rest, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            raise SystemExit("the peak-memory run of KGIN failed")
        import json

        return json.loads(out.read_text())["self_peak_rss_gb"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--scale", choices=["lastfm"], help="synthetic graph with these sizes")
    src.add_argument("--dataset", help="a dataset RecBole can load (atomic_data/ or built-in)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--models", default="KGIN,RecBoleKGIN",
                        help="comma-separated; MODEL@key=value[@key=value] runs a model with its "
                        "own overrides, e.g. KGIN@sparse_backend=torch,KGIN")
    parser.add_argument("--skip-eval", action="store_true", help="no evaluation pass")
    parser.add_argument("--bandwidth", action="store_true",
                        help="only measure this machine's memory bandwidth (c = a + b) and exit")
    parser.add_argument("--steps", type=int, default=10, help="measured steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps per model first")
    parser.add_argument("--epoch", action="store_true", help="also time one training epoch each")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", help="write the record here")
    parser.add_argument("--data-dir", help="with --scale: keep the synthetic files here (written "
                        "when missing, reused otherwise) instead of a temporary directory")
    parser.add_argument("--rounds", type=int, default=2,
                        help="each model runs alone in its own process, the models alternating, "
                        "this many times (default 2); medians over all rounds")
    parser.add_argument("--same-allocator", action="store_true",
                        help="give every model's process the glibc settings of our "
                        "retain_cpu_memory (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=2^31-1), so "
                        "RecBole's KGIN also reuses freed memory")
    parser.add_argument("--in-process", action="store_true",
                        help="instead, interleave the models' steps in this one process")
    parser.add_argument("--profile", metavar="PATH",
                        help="with one model: also profile 5 more steps (torch.profiler, CPU and "
                        "CUDA activity) and write the operator tables, by self device time and by "
                        "self CPU time, to PATH")
    parser.add_argument("--no-rss", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_data-path", dest="data_path", default=None, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    args.rest = rest
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.bandwidth:
        print(f"c = a + b over 256 MiB float32 arrays, {torch.get_num_threads()} threads: "
              f"{stream_bandwidth_gbs():.1f} GB/s")
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")

    import recbole_kgin  # noqa: F401  (compat shims before RecBole loads)
    from recbole.utils import init_seed

    from recbole_kgin.errors import split_overrides

    overrides = split_overrides(rest)
    tmp = None
    t0 = time.perf_counter()
    if args.scale == "lastfm" and not args.data_path:
        if args.data_dir:
            args.data_path = args.data_dir
        else:
            tmp = tempfile.TemporaryDirectory(prefix="kgin-bench-")
            args.data_path = tmp.name
        dataset = "lastfm-scale"
        if not (Path(args.data_path) / dataset / f"{dataset}.link").is_file():
            write_lastfm_scale(args.data_path)
            print(f"synthetic Last-FM-sized data written in {time.perf_counter() - t0:.1f} s",
                  flush=True)
    else:
        dataset = args.dataset or ("lastfm-scale" if args.scale else "ml-100k")
    data_path = args.data_path or None

    models = args.models.split(",")
    if len(models) > 1 and not args.in_process:
        record = isolated(args, data_path, dataset, models)
        finish(args, record, t0, tmp)
        return
    runners = {}
    alone = {}  # with --in-process and several models: our KGIN's steps before any other exists
    alone_model = None
    for m in models:
        t = time.perf_counter()
        name, *own = m.split("@")
        own = split_overrides([f"--{kv}" for kv in own])
        config, train_data = load(name, dataset, args.device, dict(overrides, **own), data_path)
        init_seed(config["seed"], True)
        runners[m] = Runner(name, config, train_data, args.device)
        print(f"{m}: data + model built in {time.perf_counter() - t:.1f} s", flush=True)
        if name == "KGIN" and len(models) > 1 and not alone:  # KGIN or KGIN@key=value...
            alone_model = m
            timed = [runners[m].step() for _ in range(args.warmup + args.steps)][args.warmup:]
            alone = {"wall": [x for x, _ in timed], "cpu": [c for _, c in timed],
                     "faults": runners[m].faults[args.warmup:]}
            print(f"{m} alone in this process: median step "
                  f"{statistics.median(alone['wall']):.3f} s", flush=True)
    first = runners[models[0]]
    history = first.train_data._dataset.inter_matrix(form="csr")
    history.sum_duplicates()
    n_users = first.model.n_users

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = {m: [] for m in models}
    cpu_times = {m: [] for m in models}
    for i in range(args.warmup + args.steps):
        line = []
        for m in models:
            sec, cpu = runners[m].step()
            if i >= args.warmup:
                times[m].append(sec)
                cpu_times[m].append(cpu)
            line.append(f"{m} {sec:.3f} s (CPU {cpu:.3f} s)")
        print(f"step {i}{' (warm-up)' if i < args.warmup else ''}: " + ", ".join(line), flush=True)
    ops = {m: count_ops(runners[m]) for m in models}
    print("aten operations per step (without views / all): "
          + ", ".join(f"{m} {a:.0f} / {b:.0f} ({', '.join(f'{k} {v:.0f}' for k, v in c.items())})"
                      for m, (a, b, c, _) in ops.items()), flush=True)
    eval_s = {m: [] for m in models}
    batch_users = max(1, 4_194_304 // first.model.n_items)
    batches = history_batches(history, n_users, batch_users)
    for _ in range(0 if args.skip_eval else 2):
        for m in models:
            eval_s[m].append(runners[m].evaluate_all_users(batches, batch_users))
    if not args.skip_eval:
        print("eval of all users: " + ", ".join(f"{m} {min(v):.2f} s" for m, v in eval_s.items()))
    if args.profile:
        profile_steps(runners[models[0]], args.device, args.profile)
    epochs = {}
    if args.epoch:
        for m in models:
            epochs[m] = runners[m].epoch()
            print(f"{m}: one training epoch {epochs[m]:.1f} s ({len(runners[m].train_data)} steps)",
                  flush=True)

    record = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(args.device),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "device": args.device,
        "data": f"synthetic Last-FM-sized graph {LASTFM}" if args.scale else dataset,
        "training_pairs": len(first.train_data._dataset),
        "sizes_seen_by_model": {k: int(getattr(first.model, k)) for k in (
            "n_users", "n_items", "n_entities", "n_kg_edges", "n_kg_pairs")
            if hasattr(first.model, k)},
        "settings": PUBLISHED, "overrides": overrides,
        "steps_measured": args.steps, "warmup_steps": args.warmup,
    }
    for m in models:
        key = NAMES.get(m, m)
        record[f"{key}_step_s"] = statistics.median(times[m])
        record[f"{key}_step_all_s"] = [round(x, 4) for x in times[m]]
        record[f"{key}_step_cpu_s"] = statistics.median(cpu_times[m])
        record[f"{key}_step_cpu_all_s"] = [round(x, 4) for x in cpu_times[m]]
        measured = runners[m].faults[args.warmup:args.warmup + args.steps]
        if alone and m == alone_model:  # its first steps ran alone: the interleaved ones follow
            measured = runners[m].faults[-(args.steps + 1):-1]
        record[f"{key}_minor_faults_per_step"] = statistics.median(measured)
        record[f"{key}_ops_per_step"] = ops[m][0]
        record[f"{key}_aten_calls_per_step"] = ops[m][1]
        record[f"{key}_ops_by_phase"] = ops[m][2]
        record[f"{key}_large_allocations_per_step"] = ops[m][3]
        if eval_s[m]:
            record[f"{key}_eval_s"] = min(eval_s[m])
        if m in epochs:
            record[f"{key}_epoch_s"] = epochs[m]
    if alone:
        record["ours_step_alone_in_process_s"] = statistics.median(alone["wall"])
        record["ours_step_alone_in_process_all_s"] = [round(x, 4) for x in alone["wall"]]
        record["ours_step_cpu_alone_in_process_s"] = statistics.median(alone["cpu"])
        record["ours_minor_faults_alone_in_process_per_step"] = statistics.median(alone["faults"])
        # the item-3 figure: our step among another model's steps / our step before it existed
        record["alone_model"] = alone_model
        record["ratio_in_process_vs_alone"] = (record[f"{NAMES.get(alone_model, alone_model)}_step_s"]
                                               / record["ours_step_alone_in_process_s"])
        print(f"our step interleaved / alone in the same process: "
              f"{record['ratio_in_process_vs_alone']:.2f}x", flush=True)
    add_ratios(record, args)
    if args.device == "cuda":
        record["peak_gpu_gb_all_models"] = torch.cuda.max_memory_allocated() / 2**30
    if args.device == "cuda" and models == ["KGIN"]:
        record["ours_peak_gpu_gb"] = record["peak_gpu_gb_all_models"]
    if not args.no_rss and args.device == "cpu":
        del runners, first
        record["ours_peak_rss_gb"] = child_rss(args, data_path, dataset)
        print(f"peak RSS of a KGIN-only process: {record['ours_peak_rss_gb']:.2f} GB")
    finish(args, record, t0, tmp)


def profile_steps(runner, device, path, steps=5):
    """Operator tables of ``steps`` training steps (torch.profiler) written to ``path``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            runner.step()
    averages = prof.key_averages()
    parts = [f"{runner.name}: {steps} training steps on {device}"]
    for key in (["self_device_time_total"] if device == "cuda" else []) + ["self_cpu_time_total"]:
        parts += [f"\n== sorted by {key}", averages.table(sort_by=key, row_limit=35)]
    Path(path).write_text("\n".join(parts) + "\n")
    print(f"profile written: {path}", flush=True)


def add_ratios(record, args):
    if "ours_step_s" in record and "recbole_step_s" in record:
        record["ratio_step"] = record["recbole_step_s"] / record["ours_step_s"]
        if "ours_eval_s" in record and "recbole_eval_s" in record:
            record["ratio_eval"] = record["recbole_eval_s"] / record["ours_eval_s"]
        record["ratio_step_cpu"] = record["recbole_step_cpu_s"] / record["ours_step_cpu_s"]
        print(f"step: ours {record['ours_step_s']:.3f} s, RecBole {record['recbole_step_s']:.3f} s,"
              f" ratio {record['ratio_step']:.2f}x")


def finish(args, record, t0, tmp):
    """Memory-traffic floor (CPU), this process's peak memory and wall time; write the JSON."""
    if args.device == "cpu" and "n_kg_edges" in record.get("sizes_seen_by_model", {}):
        sizes = dict(record["sizes_seen_by_model"], training_pairs=record["training_pairs"])
        record["traffic_floor_gb_per_step"] = traffic_floor_gb(sizes)
        record["stream_bandwidth_gbs"] = stream_bandwidth_gbs()
        record["floor_step_s"] = record["traffic_floor_gb_per_step"] / record["stream_bandwidth_gbs"]
    record["self_peak_rss_gb"] = peak_rss_gb()
    record["wall_s"] = time.perf_counter() - t0
    if args.json:
        from recbole_kgin.experiment.files import write_json

        write_json(Path(args.json), record)
        print(f"written: {args.json}")
    if tmp is not None:
        tmp.cleanup()


def isolated(args, data_path, dataset, models):
    """Each model alone in a fresh process (this script with ``--models M --in-process``), the
    models alternating (A B, then B A, ...) for ``--rounds`` rounds, so that background load
    falls on both alike; a model is measured as it trains, without another model's tensors in its
    process. Step medians over all rounds; evaluation and one-epoch figures from the first round;
    peak RSS of our KGIN = the largest of its processes."""
    import json

    steps = {m: [] for m in models}
    cpu = {m: [] for m in models}
    record, evals, epochs, rss, gpu = None, {}, {}, [], []
    counts, faults = {}, {}  # operation counts (first round) and page faults of every round
    with tempfile.TemporaryDirectory(prefix="kgin-step-") as tmp:
        for r in range(args.rounds):
            for m in (models if r % 2 == 0 else models[::-1]):
                out = Path(tmp) / f"{r}.json"
                cmd = [sys.executable, __file__, "--models", m, "--in-process", "--no-rss",
                       "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--device", args.device, "--_data-path", data_path or "",
                       "--dataset", dataset, "--json", str(out)]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                if args.skip_eval or r > 0:
                    cmd.append("--skip-eval")
                if args.epoch and r == 0:
                    cmd.append("--epoch")
                env = dict(os.environ)
                if args.same_allocator:
                    env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(2**31 - 1))
                proc = subprocess.run(cmd + args.rest, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"the run of {m} failed")
                child = json.loads(out.read_text())
                key = NAMES.get(m, m)
                steps[m] += child[f"{key}_step_all_s"]
                cpu[m] += child[f"{key}_step_cpu_all_s"]
                if f"{key}_eval_s" in child:
                    evals[m] = child[f"{key}_eval_s"]
                for field in ("ops_per_step", "aten_calls_per_step", "ops_by_phase",
                              "large_allocations_per_step"):
                    counts.setdefault(f"{key}_{field}", child[f"{key}_{field}"])
                faults.setdefault(key, []).append(child[f"{key}_minor_faults_per_step"])
                if f"{key}_epoch_s" in child:
                    epochs[m] = child[f"{key}_epoch_s"]
                if m == "KGIN":
                    rss.append(child["self_peak_rss_gb"])
                    if "ours_peak_gpu_gb" in child:
                        gpu.append(child["ours_peak_gpu_gb"])
                print(f"round {r + 1}, {m}: steps " + ", ".join(
                    f"{x:.3f}" for x in child[f"{key}_step_all_s"]) + " s", flush=True)
                if record is None:
                    record = {k: child[k] for k in (
                        "date", "machine", "device", "data", "training_pairs",
                        "sizes_seen_by_model", "settings", "overrides", "steps_measured",
                        "warmup_steps")}
    if args.scale:
        record["data"] = f"synthetic Last-FM-sized graph {LASTFM}"
    record.update(command=" ".join(["python", *sys.argv]), rounds=args.rounds,
                  method="each model alone in its own process, models alternating per round",
                  same_allocator=args.same_allocator,
                  load_avg_1_5_15=[round(x, 2) for x in os.getloadavg()])
    for m in models:
        key = NAMES.get(m, m)
        record[f"{key}_step_s"] = statistics.median(steps[m])
        record[f"{key}_step_all_s"] = steps[m]
        record[f"{key}_step_cpu_s"] = statistics.median(cpu[m])
        if m in evals:
            record[f"{key}_eval_s"] = evals[m]
        if m in epochs:
            record[f"{key}_epoch_s"] = epochs[m]
    record.update(counts)
    for key, values in faults.items():
        record[f"{key}_minor_faults_per_step"] = statistics.median(values)
    if rss:
        record["ours_peak_rss_gb"] = max(rss)
    if gpu:
        record["ours_peak_gpu_gb"] = max(gpu)
    add_ratios(record, args)
    if "ours_eval_s" in record:
        print(f"eval of all users: " + ", ".join(
            f"{NAMES.get(m, m)} {evals[m]:.2f} s" for m in models if m in evals))
    return record


if __name__ == "__main__":
    main()
