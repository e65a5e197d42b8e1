# -*- coding: utf-8 -*-
"""Command line of ``run_recbole_kgin.py``.

    run_recbole_kgin.py [--model=KGIN] [--dataset=ml-100k] [--config_files="a.yaml b.yaml"] [--key=value ...]
    run_recbole_kgin.py convert --src DIR --name NAME [...]
    run_recbole_kgin.py compare --dataset NAME --models KGIN,KGAT,... [--key=value ...]
    run_recbole_kgin.py tune --dataset NAME --model KGIN --space FILE [...] [--key=value ...]

``--key=value`` pairs are RecBole configuration overrides (highest precedence), exactly as with
RecBole's own ``run_recbole.py``.
"""

import argparse
import os
import sys

from recbole_kgin.errors import UsageError, split_overrides

SUBCOMMANDS = ("convert", "compare", "tune")


def _train_main(argv):
    parser = argparse.ArgumentParser(
        prog="run_recbole_kgin.py",
        description="Train and test a model (default: KGIN on RecBole's bundled ml-100k). "
        "Sub-commands: convert, compare, tune (run_recbole_kgin.py SUBCOMMAND -h).",
    )
    parser.add_argument("--model", "-m", default="KGIN", help="model name (ours or RecBole's)")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", default=None,
                        help="space-separated YAML files, applied in order")
    parser.add_argument("--saved", default="True", help="save the best checkpoint (True/False)")
    quick_start = not argv
    args, rest = parser.parse_known_args(argv)
    overrides = split_overrides(rest)
    files = args.config_files.split() if args.config_files else None
    if quick_start:
        from recbole_kgin.config import PROPERTIES_DIR

        files = [str(PROPERTIES_DIR / "quick_start.yaml")]
        print("quick start: KGIN (published settings) on RecBole's bundled ml-100k, "
              "10 epochs (properties/quick_start.yaml)", flush=True)

    from recbole_kgin.quick_start import metrics_table, run_recbole_kgin

    result = run_recbole_kgin(
        model=args.model, dataset=args.dataset, config_file_list=files,
        config_dict=overrides, saved=args.saved.lower() != "false",
    )
    print()
    print(metrics_table(
        {f"{args.model} valid": result["best_valid_result"],
         f"{args.model} test": result["test_result"]},
        title=f"{args.model} on {args.dataset}: best epoch {_epoch_label(result)}, "
              f"{result['seconds_per_epoch']:.1f} s per training epoch, "
              f"{result['total_seconds']:.0f} s in all",
    ))
    if result["saved_model_file"]:
        print(f"checkpoint: {result['saved_model_file']}")
    return 0


def _epoch_label(result):
    """Best epoch counted from 1 (RecBole's log counts from 0), out of the epochs trained."""
    if result["best_epoch"] is None:
        return "-"
    return f"{result['best_epoch'] + 1} of {result['epochs_run']}"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "convert":
            from recbole_kgin.data.convert import main as convert_main

            return convert_main(argv[1:])
        if argv and argv[0] == "compare":
            from recbole_kgin.compare import main as compare_main

            return compare_main(argv[1:])
        if argv and argv[0] == "tune":
            from recbole_kgin.tuning import main as tune_main

            return tune_main(argv[1:])
        return _train_main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, KeyError, FileNotFoundError) as err:
        if os.environ.get("RECBOLE_KGIN_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message} (set RECBOLE_KGIN_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
