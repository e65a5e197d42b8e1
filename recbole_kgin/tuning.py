# -*- coding: utf-8 -*-
"""Hyperparameter search with Ray Tune (``run_recbole_kgin.py tune``).

    run_recbole_kgin.py tune --dataset ml-100k --model KGIN --space properties/tune/KGIN.yaml \\
        --num-samples 12 [--scheduler asha|fifo] [--search random|grid|hyperopt|optuna] \\
        [--cpus-per-trial 1] [--gpus-per-trial 0] [--address ADDR] [--resume] [--out ray_results] \\
        [--name NAME] [--max-failures 1] [--config_files "a.yaml b.yaml"] [--key=value ...]

A search is the experiment layer run over one model (``compare`` runs the same layer over several):

1. Everything is checked before Ray starts: the configuration is merged exactly like a single run,
   the space file is checked against it (:mod:`recbole_kgin.tune_space`), optional search packages
   are looked up.
2. The dataset is built once (``<experiment>/dataset/``) and handed to the trials through
   ``tune.with_parameters``; every trial splits it like a single run does.
3. Trials train through the shared pipeline, report every validation (ASHA can stop poor trials)
   and never evaluate test (:func:`recbole_kgin.experiment.runner.run_trial`).
4. When the search is complete: ``trials.md`` / ``trials.csv`` (sorted by the best validation
   score), ``best.yaml`` (usable as ``--config_files``), and one final run of the best
   configuration — the same final run ``compare`` makes for every seed — tested once:
   ``best_test.json`` (its per-user test metrics in ``best_model/``).

An interrupted search (Ctrl-C, SIGUSR1) continues with the same command plus ``--resume``. Every
trial that ends is also written to ``<experiment>/search_trials.jsonl``: where Ray Tune's own state
cannot be restored (a copy without it, another Ray version), ``--resume`` keeps those trials and
runs only the configurations they lack (:mod:`recbole_kgin.experiment.ledger`).
One command at a time writes into an experiment folder: it holds ``<experiment>/.run.lock``
(:mod:`recbole_kgin.experiment.run_lock`); a second one is refused with the holder's PID before it
writes anything.
``--address`` connects to a running Ray cluster; run the command on a cluster node.
"""

import sys
import time
from pathlib import Path

from recbole_kgin.arguments import parse_tune, search_options
from recbole_kgin.errors import UsageError
from recbole_kgin.experiment import ledger, protocol, report, run_lock, search
from recbole_kgin.experiment.files import read_json, write_atomic, write_json
from recbole_kgin.experiment.runner import build_dataset_blob
from recbole_kgin.tune_space import read_space

SETTINGS_FILE = "search.json"
LEDGER_FILE = ledger.FILE_NAME  # <experiment>/search_trials.jsonl: every ended trial
TRIALS_CSV = "trials.csv"
TRIALS_MD = "trials.md"
BEST_YAML = "best.yaml"
BEST_TEST = "best_test.json"
BEST_MODEL = "best_model"

parse_args = parse_tune


def prepare_settings(args):
    """Merge the configuration, check the space and options; return the settings dict."""
    from recbole_kgin.quick_start import create_config

    missing = [f"--{k}" for k in ("model", "dataset", "space") if not getattr(args, k)]
    if missing:
        raise UsageError(f"{', '.join(missing)} required")
    for file in args.config_files:
        if not Path(file).is_file():
            raise UsageError(f"config file not found: {file}")
    config = create_config(args.model, args.dataset, config_file_list=args.config_files,
                           config_dict=dict(args.overrides))
    settings = search.search_settings(
        config, args.space, search_options(args, args.num_samples, args.scheduler))
    settings["config_files"] = [str(Path(f).resolve()) for f in args.config_files]
    settings["seed"] = int(config["seed"])
    return settings


def _load_settings(exp_dir, args):
    settings = read_json(Path(exp_dir) / SETTINGS_FILE)
    if settings is None:
        raise UsageError(f"nothing to resume: {Path(exp_dir) / SETTINGS_FILE} not found")
    for key in ("model", "dataset"):
        given = getattr(args, key)
        if given is not None and given != settings[key]:
            raise UsageError(f"--resume: {exp_dir} is a search of {key} {settings[key]!r}, "
                             f"not {given!r}")
    if args.space:
        space = {k: [d, a] for k, (d, a) in read_space(args.space).items()}
        if space != settings["space"]:
            raise UsageError(f"--resume: {args.space} differs from the space this search was "
                             f"started with ({settings['space_file']})")
    return settings


def write_tables(rows, settings, exp_dir):
    keys = list(settings["space"])
    write_atomic(Path(exp_dir) / TRIALS_CSV, report.trials_csv(rows, keys, settings["valid_metric"]))
    selected = search.best_row(rows)
    edges = protocol.edge_flags(selected["params"], settings["space"]) if selected else None
    write_atomic(Path(exp_dir) / TRIALS_MD, report.trials_markdown(
        rows, keys, settings, edges, selected["params"] if selected else None))


def write_best_yaml(best, settings, exp_dir):
    """``best.yaml``: usable as ``run_recbole_kgin.py --config_files best.yaml``."""
    import yaml

    fixed = {k: v for k, v in settings["user_layer"].items() if k not in best["params"]}
    dump = lambda d: yaml.safe_dump(d, sort_keys=False, default_flow_style=False).rstrip("\n")
    parts = [
        f"# Best configuration of the search {Path(exp_dir).name} (trial {best['trial_id']}): "
        f"valid {settings['valid_metric']} = {best['best_valid']:.6f}",
        f"# Run it: run_recbole_kgin.py --config_files {BEST_YAML}",
        dump({"model": settings["model"], "dataset": settings["dataset"]}),
    ]
    if fixed:
        parts += ["# fixed for every trial (config files and --key=value overrides)", dump(fixed)]
    if best["params"]:
        parts += ["# searched (" + Path(settings["space_file"]).name + ")", dump(best["params"])]
    path = Path(exp_dir) / BEST_YAML
    write_atomic(path, "\n".join(parts) + "\n")
    return path


def final_run(best, settings, exp_dir, dataset_blob, seed):
    """The best configuration trained once more (a final run of the experiment layer, one Ray
    trial) and tested once; returns its record, or raises with the run's one-line error."""
    folder = Path(exp_dir) / BEST_MODEL
    errors, _, _ = search.run_finals(settings, best["params"], [seed], folder, dataset_blob)
    if errors:
        raise RuntimeError(f"the final run of the best configuration failed: {errors[seed]}")
    record = read_json(folder / f"seed-{seed}.json")
    if record is None:
        raise KeyboardInterrupt
    return record


def _check_new(exp_dir):
    if exp_dir.exists() and any(p.name != run_lock.LOCK_NAME for p in exp_dir.iterdir()):
        raise UsageError(f"{exp_dir} already exists: pass --resume to continue that search, "
                         f"or another --name / --out")


def run_search(args, callbacks=None, log=print):
    """Run (or resume) the search described by parsed ``args``; return a summary dict.
    ``callbacks`` are extra Ray Tune callbacks (the tests use them to interrupt a search)."""
    exp_dir = Path(args.out) / args.name
    if args.resume:
        settings = _load_settings(exp_dir, args)
    else:
        settings = prepare_settings(args)
        _check_new(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    lock = run_lock.acquire(exp_dir, "tune", option="--name / --out")  # before anything is written
    try:
        return _search_locked(args, exp_dir, settings, callbacks, log)
    finally:
        lock.release()


def _search_locked(args, exp_dir, settings, callbacks, log):
    resume = args.resume
    if resume:
        settings = _load_settings(exp_dir, args)  # again: a command may have ended meanwhile
        if not search.can_restore(exp_dir):
            # stopped before Ray Tune saved anything, or its state was not copied: start it again,
            # keeping the trials of its ledger
            ended, _ = ledger.progress(exp_dir / LEDGER_FILE)
            if ended:
                log(f"note: {exp_dir} holds no Ray Tune state that can be restored; starting the "
                    f"search again with its recorded settings, keeping the {ended} trial"
                    f"{'s' * (ended != 1)} of {LEDGER_FILE}")
            else:
                log(f"note: {exp_dir} holds no Ray Tune state yet (the search stopped before its "
                    "first save); starting the search again with its recorded settings")
            resume = False
    else:
        _check_new(exp_dir)
    settings["verbose"] = args.verbose

    start = time.perf_counter()
    if not resume:
        write_json(exp_dir / SETTINGS_FILE, settings)
    log(f"building the dataset once ({settings['dataset']}) ...")
    blob = build_dataset_blob(settings["model"], settings["dataset"], settings["user_layer"],
                              exp_dir / "dataset")
    started = search.start_ray(args.address)
    try:
        if args.address:  # trials on other nodes write their results into the experiment folder
            search.check_shared_folder(exp_dir)
        rows, complete = search.run_search(settings, exp_dir, blob, resume=resume,
                                           callbacks=callbacks, label=f"{settings['model']} search",
                                           ledger_path=exp_dir / LEDGER_FILE)
        write_tables(rows, settings, exp_dir)
        summary = {"experiment": str(exp_dir), "rows": rows, "complete": complete,
                   "settings": settings, "best": None}
        best = search.best_row(rows) if complete else None
        summary["search_seconds"] = time.perf_counter() - start
        if best is None:
            return summary
        best_yaml = write_best_yaml(best, settings, exp_dir)
        log(f"training the best configuration ({best['trial_id']}) once more and testing it ...")
        record = final_run(best, settings, exp_dir, blob, settings["seed"])
        summary["best"] = {
            "model": settings["model"], "dataset": settings["dataset"],
            "trial_id": best["trial_id"], "params": best["params"],
            "valid_metric": settings["valid_metric"], "search_best_valid": best["best_valid"],
            "search_best_epoch": best["best_epoch"], "search_epochs_run": best["epochs_run"],
            "best_valid_score": record["best_valid_score"],
            "best_epoch": None if record["best_epoch"] is None else record["best_epoch"] + 1,
            "epochs_run": record["epochs_run"], "best_valid_result": record["best_valid_result"],
            "test_result": record["test_result"], "seconds_per_epoch": record["seconds_per_epoch"],
            "train_seconds": record["train_seconds"],
            "per_user": str(Path(exp_dir) / BEST_MODEL / f"seed-{settings['seed']}.npz"),
            "best_yaml": str(best_yaml), "search_seconds": summary["search_seconds"],
        }
        write_json(exp_dir / BEST_TEST, summary["best"])
        summary["total_seconds"] = time.perf_counter() - start
        return summary
    finally:
        search.stop_ray(started)


def _print_summary(summary):
    from recbole_kgin.quick_start import metrics_table

    settings, rows = summary["settings"], summary["rows"]
    exp_dir = Path(summary["experiment"])
    counts = {s: sum(r["status"] == s for r in rows) for s in ("finished", "stopped", "error")}
    print(f"\n{len(rows)} trials: {counts['finished']} finished, {counts['stopped']} stopped early, "
          f"{counts['error']} errored ({summary['search_seconds']:.0f} s)")
    print(f"trials table: {exp_dir / TRIALS_MD}")
    best = summary["best"]
    if best is None:
        return
    print(f"best trial {best['trial_id']}: valid {settings['valid_metric']} "
          f"{best['search_best_valid']:.4f} (final run: {best['best_valid_score']:.4f})")
    for key, value in best["params"].items():
        print(f"  {key}: {value}")
    print(metrics_table({"best valid": best["best_valid_result"],
                         "best test": best["test_result"]}))
    print(f"best config: {exp_dir / BEST_YAML}\ntest metrics: {exp_dir / BEST_TEST}")


def main(argv=None):
    """``run_recbole_kgin.py tune ...``; returns the exit code."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    summary = run_search(args)
    _print_summary(summary)
    if not summary["complete"]:
        print(f"the search is incomplete: continue it with the same command plus --resume "
              f"(experiment {summary['experiment']})", file=sys.stderr)
        return 130
    if summary["best"] is None:
        print("error: no trial produced a validation score", file=sys.stderr)
        return 1
    return 0
