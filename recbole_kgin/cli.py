# -*- coding: utf-8 -*-
"""Command line of ``run_recbole_kgin.py``.

    run_recbole_kgin.py [--model=KGIN] [--dataset=ml-100k] [--config_files="a.yaml b.yaml"] [--key=value ...]
    run_recbole_kgin.py convert --src DIR --name NAME [...]
    run_recbole_kgin.py compare --dataset NAME --models KGIN,KGAT,... [--key=value ...]
    run_recbole_kgin.py tune --dataset NAME --model KGIN --space FILE [...] [--key=value ...]
    run_recbole_kgin.py --resume=CHECKPOINT [--result_file=PATH]
    run_recbole_kgin.py recommend --checkpoint PATH --users U1,U2 [--topk 20] [--format json|table]
    run_recbole_kgin.py explain --checkpoint PATH --user U [--item I] [--format json|table]

``--key=value`` pairs are RecBole configuration overrides (highest precedence), exactly as with
RecBole's own ``run_recbole.py``.
"""

import argparse
import os
import sys

from recbole_kgin.errors import UsageError, split_overrides

SUBCOMMANDS = ("convert", "compare", "tune", "recommend", "explain")

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def parse_bool(option, value):
    """``True``/``False`` (also 1/0, yes/no, on/off, any case) or a one-line error."""
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"{option}={value!r}: expected True or False")


def config_file_list(values):
    """``--config_files`` values, each either one existing file (spaces allowed in its name) or a
    space-separated list of files, as in RecBole; the option may be repeated."""
    files = []
    for value in values or []:
        if os.path.isfile(value):
            files.append(value)
            continue
        parts = value.split()
        if not parts:
            raise UsageError("--config_files is empty")
        for part in parts:
            if not os.path.isfile(part):
                raise UsageError(f"config file not found: {part}"
                                 + (f" (from --config_files {value!r})" if part != value else ""))
        files.extend(parts)
    return files or None


class _Parser(argparse.ArgumentParser):
    """argparse reporting a bad option as one line (exit 2) instead of usage + exit."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _train_main(argv):
    parser = _Parser(
        prog="run_recbole_kgin.py", allow_abbrev=False,
        description="Train and test a model (default: KGIN on RecBole's bundled ml-100k). "
        "Sub-commands: convert, compare, tune, recommend, explain (run_recbole_kgin.py SUBCOMMAND -h).",
    )
    parser.add_argument("--model", "-m", default=None, help="model name (ours or RecBole's; "
                        "case-insensitive; default KGIN)")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name (default ml-100k)")
    parser.add_argument("--config_files", action="append", default=None,
                        help="YAML files applied in order: space-separated, or repeat the option "
                        "(a value naming one existing file is taken whole)")
    parser.add_argument("--saved", default="True",
                        help="save checkpoints (True/False): the best weights and the state to "
                        "resume from, after every epoch")
    parser.add_argument("--resume", default=None, metavar="CHECKPOINT",
                        help="continue an interrupted run from its checkpoint")
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="allow --resume to read a pickled (RecBole) checkpoint; only for "
                        "files you trust")
    parser.add_argument("--result_file", default=None, metavar="PATH",
                        help="write best validation / test metrics, best epoch, epochs run and "
                        "the checkpoint path as JSON")
    args, rest = parser.parse_known_args(argv)
    overrides = split_overrides(rest)
    # no model, dataset, config file or override: the quick start (--saved / --result_file may
    # still be given)
    quick_start = (args.model is None and args.dataset is None and not args.config_files
                   and not overrides and args.resume is None)
    saved = parse_bool("--saved", args.saved)
    files = config_file_list(args.config_files)
    model, dataset = args.model, args.dataset
    if args.resume is None:
        if quick_start:
            from recbole_kgin.config import PROPERTIES_DIR

            files = [str(PROPERTIES_DIR / "quick_start.yaml")]
            print("quick start: KGIN (published settings) on RecBole's bundled ml-100k, "
                  "10 epochs (properties/quick_start.yaml)", flush=True)
        elif not files:
            model, dataset = model or "KGIN", dataset or "ml-100k"
        else:
            model = model or _from_files(files, "model", "KGIN")
            dataset = dataset or _from_files(files, "dataset", "ml-100k")

    from recbole_kgin.quick_start import metrics_table, run_recbole_kgin

    result = run_recbole_kgin(
        model=model, dataset=dataset, config_file_list=files, config_dict=overrides,
        saved=saved, resume=args.resume, trust_checkpoint=args.trust_checkpoint,
        result_file=args.result_file,
    )
    name = result["model"]
    print()
    print(metrics_table(
        {f"{name} valid": result["best_valid_result"],
         f"{name} test": result["test_result"]},
        title=f"{name} on {result['dataset']}: best epoch {_epoch_label(result)}, "
              f"{_seconds(result['seconds_per_epoch'])} per training epoch, "
              f"{result['total_seconds']:.0f} s in all",
    ))
    if result["saved_model_file"]:
        print(f"checkpoint: {result['saved_model_file']}")
    if args.result_file:
        print(f"result: {args.result_file}")
    return 0


def _seconds(value):
    return "-" if value is None else f"{value:.1f} s"


def _from_files(files, key, default):
    """``key`` as set by the last of ``files`` that sets it (None lets the config decide)."""
    from recbole_kgin.config import read_yaml

    value = None
    for file in files:
        value = read_yaml(file).get(key, value)
    return value if value is not None else default


def _epoch_label(result):
    """Best epoch counted from 1 (RecBole's log counts from 0), out of the epochs trained."""
    if result["best_epoch"] is None:
        return "-"
    return f"{result['best_epoch'] + 1} of {result['epochs_run']}"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    from recbole_kgin import quiet

    quiet.install()
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
        if argv and argv[0] in ("recommend", "explain"):
            from recbole_kgin.inference import main as inference_main

            return inference_main(argv[0], argv[1:])
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
    except OSError as err:  # a file RecBole or a library opened (our writes raise OutputError)
        if os.environ.get("RECBOLE_KGIN_DEBUG"):
            raise
        where = err.filename or "a file"
        print(f"error: {where}: {err.strerror or err} (set RECBOLE_KGIN_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        return 1
