#!/usr/bin/env python
"""Where the aten operations of one KGIN training step come from: a histogram by source line.

``kgin_step.py`` counts the non-view operations of a step (``ours_ops_per_step``, a proxy of GPU
kernel launches, issue 23) and splits them by phase. This script says which line of this package
issues them, to decide what to fuse next: every non-view operation of one measured step (after
three warm-up steps) is attributed to the innermost frame of ``recbole_kgin`` (or of the benchmark)
on the Python stack when it was dispatched, and counted per (file:line, operation). Views are left
out as in ``kgin_step.py`` (``VIEW_OPS``).

    PYTHONPATH=. python benchmarks/kgin_ops_by_line.py --dataset ml-100k
    PYTHONPATH=. python benchmarks/kgin_ops_by_line.py --scale lastfm --data-dir /tmp/lfm --top 40 \
        --static_graph=True

``--key=value`` arguments override the configuration as in ``kgin_step.py``. Output: the total,
then one line per (count, file:line, operation), largest first. A measurement, never asserted.
"""

import argparse
import collections
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import kgin_step as ks  # noqa: E402


def _origin(stack):
    for frame in reversed(stack):
        if "recbole_kgin" in frame.filename or "kgin_step" in frame.filename:
            return f"{Path(frame.filename).name}:{frame.lineno}"
    return "?"


def ops_by_line(runner, warmup=3):
    """``Counter`` of ``(file:line, operation)`` over the non-view operations of one step."""
    from torch.utils._python_dispatch import TorchDispatchMode

    for _ in range(warmup):
        runner.step()
    counts = collections.Counter()

    class ByLine(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name.rstrip("_") not in ks.VIEW_OPS:
                counts[(_origin(traceback.extract_stack()[:-1]), name)] += 1
            return func(*args, **(kwargs or {}))

    with ByLine():
        runner.step()
    return counts


def main(argv=None):
    import recbole_kgin  # noqa: F401  (compat shims before RecBole loads)
    from recbole.utils import init_seed

    from recbole_kgin.errors import split_overrides

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dataset", default="ml-100k", help="a dataset RecBole can load")
    where.add_argument("--scale", choices=["lastfm"], help="the synthetic Last-FM-scale graph")
    parser.add_argument("--data-dir", default="/tmp/kgin-step-data",
                        help="where --scale writes its synthetic dataset")
    parser.add_argument("--top", type=int, default=30, help="lines to print (0: all)")
    args, rest = parser.parse_known_args(argv)
    overrides = split_overrides(rest)
    dataset, data_path = args.dataset, None
    if args.scale:  # the synthetic graph of kgin_step.py, written once into --data-dir
        dataset, data_path = "lastfm-scale", args.data_dir
        if not (Path(data_path) / dataset / f"{dataset}.link").is_file():
            ks.write_lastfm_scale(data_path)
    config, train_data = ks.load("KGIN", dataset, "cpu", overrides, data_path)
    init_seed(config["seed"], True)
    counts = ops_by_line(ks.Runner("KGIN", config, train_data, "cpu"))
    print(f"total {sum(counts.values())} non-view operations in one step")
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    for (line, name), count in ranked[:args.top or None]:
        print(f"{count:5d}  {line:32s} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
