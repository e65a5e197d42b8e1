# -*- coding: utf-8 -*-
"""Argument parsing of the ``compare`` and ``tune`` sub-commands (the command line's edge): flags
become a namespace, ``--key=value`` pairs become RecBole overrides. No logic beyond parsing."""

import argparse
import os
from pathlib import Path

from recbole_kgin.data.kg_variants import VARIANTS
from recbole_kgin.errors import UsageError, split_overrides

DEFAULT_COMPARE_MODELS = "KGIN,KGAT,CKE,KGItemKNN,KGEASE,BPR,LightGCN,Pop,ItemKNN,EASE"


def _add_ray_options(parser, max_failures):
    parser.add_argument("--search", choices=("random", "grid", "hyperopt", "optuna"),
                        default="random", help="search algorithm (default random; hyperopt and "
                        "optuna need their package)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per Ray trial "
                        "(default 1; also torch's thread count in the trial)")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0,
                        help="GPUs per Ray trial (default 0)")
    parser.add_argument("--max-failures", type=int, default=max_failures,
                        help=f"retries of a failing trial (default {max_failures})")
    parser.add_argument("--address", default=None, help="address of a running Ray cluster "
                        "(auto or HOST:PORT); default: start Ray on this machine")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run with the same settings")
    parser.add_argument("--config_files", default=None,
                        help="space-separated YAML config files, applied in order")
    parser.add_argument("--verbose", type=int, default=0, help="Ray progress output 0-2")


def _overrides(rest, parser_name):
    overrides = split_overrides(rest)
    for key in ("model", "dataset"):
        if key in overrides:
            raise UsageError(f"--{key}=... is not an override of {parser_name}; use its "
                             f"--{key}{'s' if parser_name == 'compare' and key == 'model' else ''} flag")
    return overrides


def _check_address(address):
    if address and address.startswith("ray://"):
        raise UsageError("ray:// client addresses are not supported: run the command on a cluster "
                         "node with --address=auto or --address=HOST:PORT")


def _check_ray_options(args):
    """The Ray options shared by compare and tune, and the machine or cluster they name: checked
    before anything is written or Ray starts (one line each)."""
    import math

    from recbole_kgin.experiment import preflight

    if not (math.isfinite(args.cpus_per_trial) and args.cpus_per_trial > 0):
        raise UsageError(f"--cpus-per-trial {args.cpus_per_trial:g}: expected a number > 0")
    if not (math.isfinite(args.gpus_per_trial) and args.gpus_per_trial >= 0):
        raise UsageError(f"--gpus-per-trial {args.gpus_per_trial:g}: expected a number >= 0")
    if args.gpus_per_trial > 1 and args.gpus_per_trial != int(args.gpus_per_trial):
        raise UsageError(f"--gpus-per-trial {args.gpus_per_trial:g}: a fraction must be below 1 "
                         "(Ray shares one GPU between trials, never parts of several)")
    if args.max_failures < -1:
        raise UsageError(f"--max-failures {args.max_failures}: expected an integer >= 0 "
                         "(or -1: retry without limit)")
    if not 0 <= args.verbose <= 3:
        raise UsageError(f"--verbose {args.verbose}: expected 0, 1, 2 or 3")
    _check_address(args.address)
    preflight.check_local_resources(args.cpus_per_trial, args.gpus_per_trial, args.address)
    preflight.check_reachable(args.address)


def _check_overridden_dirs(overrides):
    from recbole_kgin.experiment import preflight

    for key in ("checkpoint_dir", "dataset_save_path", "dataloaders_save_path"):
        if isinstance(overrides.get(key), str) and overrides[key]:
            preflight.check_output_dir(overrides[key], f"--{key}")


def compare_parser():
    parser = argparse.ArgumentParser(
        prog="run_recbole_kgin.py compare",
        description="Tune, train and test several models on one dataset with one protocol and "
        "equal budgets; one table with mean ± std over seeds and paired significance tests. "
        "Extra --key=value pairs are RecBole overrides for every model; --epochs=N is the epoch "
        "cap of every trial and run (default 300), --eval_step=N the validation interval "
        "(default 1), --train_batch_size=N the batch of every model (default 1024).",
        allow_abbrev=False,  # --key=value overrides must never be taken for a prefix of a flag
    )
    parser.add_argument("--dataset", "-d", required=True, help="dataset name")
    parser.add_argument("--models", "-m", default=DEFAULT_COMPARE_MODELS,
                        help=f"comma-separated model names (default {DEFAULT_COMPARE_MODELS})")
    parser.add_argument("--trials", type=int, default=0, help="search trials per model, selected "
                        "on validation (default 0: the shipped settings)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="final runs per model with different model seeds (default 1)")
    parser.add_argument("--patience", type=int, default=10,
                        help="early stopping after this many epochs without improvement (default 10)")
    parser.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo",
                        help="fifo (default: every trial trains to early stopping) or asha")
    parser.add_argument("--out", default="results", help="output root (default: results)")
    parser.add_argument("--run", default=None,
                        help="run name: outputs go to OUT/RUN (default: the dataset name)")
    parser.add_argument("--force", action="store_true",
                        help="re-run models that already finished in OUT/RUN")
    parser.add_argument("--kg-variants", default="full",
                        help="KG controls: comma-separated KG variants among "
                        f"{', '.join(VARIANTS)}; every knowledge-aware model's selected "
                        "configuration is retrained on each with the same seeds, split and budget "
                        "(default full: none)")
    parser.add_argument("--split-seeds", type=int, default=1,
                        help="repeat the seed runs of every selected configuration on this many "
                        "seeded random splits (split seeds S, S+1, ...; the search runs on the first); "
                        "datasets RecBole splits itself only (default 1)")
    parser.add_argument("--correction", choices=("holm", "bh", "none"), default="holm",
                        help="multiplicity correction over every p-value of the table: holm "
                        "(Holm-Bonferroni, default), bh (Benjamini-Hochberg) or none")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="significance level of the marks, after correction (default 0.05)")
    _add_ray_options(parser, max_failures=0)
    return parser


def parse_models(text):
    names = [name.strip() for name in text.split(",")]
    if not names or any(not name for name in names):
        raise UsageError(f"--models {text!r}: give comma-separated model names")
    seen = set()
    for name in names:
        if name in seen:
            raise UsageError(f"model {name} is listed twice in --models")
        seen.add(name)
    return names


def parse_kg_variants(text):
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if name not in VARIANTS:
            raise UsageError(f"--kg-variants: unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--kg-variants {text!r}: a variant is listed twice")
    return names


def parse_compare(argv):
    args, rest = compare_parser().parse_known_args(argv)
    args.overrides = _overrides(rest, "compare")
    args.models = parse_models(args.models)
    args.kg_variants = parse_kg_variants(args.kg_variants)
    if args.split_seeds < 1:
        raise UsageError(f"--split-seeds {args.split_seeds}: expected an integer >= 1")
    if not 0.0 < args.alpha < 1.0:
        raise UsageError(f"--alpha {args.alpha}: expected a number between 0 and 1")
    args.config_files = args.config_files.split() if args.config_files else []
    for file in args.config_files:
        if not os.path.isfile(file):
            raise UsageError(f"config file not found: {file}")
    run = args.run or args.dataset
    if not run or os.sep in run or run in (".", ".."):
        raise UsageError(f"--run {run!r} must be a plain directory name")
    args.run = run
    from recbole_kgin.experiment import preflight

    preflight.check_output_dir(Path(args.out) / run, "--out")
    _check_overridden_dirs(args.overrides)
    _check_ray_options(args)
    return args


def tune_parser():
    parser = argparse.ArgumentParser(
        prog="run_recbole_kgin.py tune",
        description="Ray Tune hyperparameter search. Trials report validation results every "
        "validation; the test split is evaluated once, for the best configuration. Extra "
        "--key=value arguments are RecBole configuration overrides for every trial.",
    )
    parser.add_argument("--model", "-m", help="model name (KGIN or a RecBole model)")
    parser.add_argument("--dataset", "-d", help="dataset name")
    parser.add_argument("--space", help="search-space YAML file (see properties/tune/*.yaml)")
    parser.add_argument("--num-samples", type=int, default=10, help="trials to sample (default "
                        "10; with grid values: samples per grid point, like Ray)")
    parser.add_argument("--scheduler", choices=("asha", "fifo"), default="asha",
                        help="asha (default) or fifo")
    parser.add_argument("--grace-period", type=int, default=None, help="ASHA: epochs before a "
                        "trial can be stopped (default: eval_step)")
    parser.add_argument("--reduction-factor", type=float, default=2.0,
                        help="ASHA reduction factor (default 2)")
    parser.add_argument("--out", default="ray_results", help="Ray storage path (default ray_results)")
    parser.add_argument("--name", default=None, help="experiment name (default MODEL-DATASET)")
    _add_ray_options(parser, max_failures=1)
    parser.set_defaults(verbose=1)
    return parser


def parse_tune(argv):
    """Parse ``argv`` (after the sub-command) into an :class:`argparse.Namespace`."""
    args, rest = tune_parser().parse_known_args(argv)
    args.overrides = split_overrides(rest)
    for key in ("model", "dataset"):
        if key in args.overrides:
            if getattr(args, key) not in (None, args.overrides[key]):
                raise UsageError(f"--{key} given twice with different values")
            setattr(args, key, args.overrides.pop(key))
    args.config_files = args.config_files.split() if args.config_files else []
    if args.name is None and args.model and args.dataset:
        args.name = f"{args.model}-{args.dataset}"
    if not args.name or os.sep in args.name or args.name in (".", ".."):
        if args.name:
            raise UsageError(f"--name {args.name!r} must be a plain directory name")
        raise UsageError("--model and --dataset are required (or --name with --resume)")
    if args.num_samples < 1:
        raise UsageError(f"--num-samples {args.num_samples}: expected an integer >= 1")
    if args.grace_period is not None and args.grace_period < 1:
        raise UsageError(f"--grace-period {args.grace_period}: expected an integer >= 1")
    if not args.reduction_factor > 1:
        raise UsageError(f"--reduction-factor {args.reduction_factor:g}: expected a number > 1")
    from recbole_kgin.experiment import preflight

    preflight.check_output_dir(Path(args.out).expanduser() / args.name, "--out")
    args.out = str(Path(args.out).expanduser().resolve())
    _check_overridden_dirs(args.overrides)
    _check_ray_options(args)
    return args


def search_options(args, num_samples, scheduler):
    """The search options shared by ``tune`` and ``compare``."""
    return {
        "num_samples": num_samples, "scheduler": scheduler, "search": args.search,
        "cpus_per_trial": float(args.cpus_per_trial), "gpus_per_trial": float(args.gpus_per_trial),
        "max_failures": int(args.max_failures),
        "grace_period": getattr(args, "grace_period", None),
        "reduction_factor": float(getattr(args, "reduction_factor", 2.0)),
        "verbose": int(args.verbose),
    }
