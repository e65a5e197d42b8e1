# -*- coding: utf-8 -*-
"""Hyperparameter search with Ray Tune (``run_recbole_kgin.py tune``).

    run_recbole_kgin.py tune --dataset ml-100k --model KGIN --space properties/tune/KGIN.yaml \\
        --num-samples 12 [--scheduler asha|fifo] [--search random|grid|hyperopt|optuna] \\
        [--cpus-per-trial 1] [--gpus-per-trial 0] [--address ADDR] [--resume] [--out ray_results] \\
        [--name NAME] [--max-failures 1] [--config_files "a.yaml b.yaml"] [--key=value ...]

How a search runs
-----------------
1. Everything the user asked for is checked before Ray starts: the configuration is merged exactly
   like a single run (:func:`recbole_kgin.quick_start.create_config`), the space file is checked
   against the merged configuration (:mod:`recbole_kgin.tune_space`), optional search packages are
   looked up.
2. The driver builds the dataset once (the shared pipeline's ``build_dataset`` with ``save_dataset``, into
   ``<experiment>/dataset/``) and hands the pickled dataset to the trials through
   ``tune.with_parameters``: Ray stores it once in its object store and ships it once to every node.
   A trial only deserialises it and splits it (RecBole's split mutates the dataset, so each trial
   needs its own copy); no trial reads the raw data files. A resumed search reloads the saved file
   instead of parsing the data again.
3. Every trial builds its configuration through the same shared pipeline as a single run
   (``create_config`` -> ``data_preparation`` -> ``build_model`` -> ``build_trainer`` ->
   ``fit_and_test(..., evaluate_test=False)``) and reports its validation result after every
   validation through ``trainer.epoch_callback``, so ASHA can stop poor trials early. Trials never
   evaluate the test split.
4. When the search is complete the driver writes ``trials.md`` / ``trials.csv`` (sorted by the best
   validation score), ``best.yaml`` (model, dataset, the user's config files and overrides, the chosen
   values) and then trains ``best.yaml`` once more through the shared pipeline, on the same dataset,
   split and thread count as the trials, and evaluates the test split once: ``best_test.json``.
   That retrain is what ``run_recbole_kgin.py --config_files best.yaml`` computes (a standalone
   run uses torch's default thread count, which can change the last digits).

Faults: a trial that raises is retried ``--max-failures`` times (Ray's ``FailureConfig``), then
recorded as ``error`` and the search goes on. A search interrupted with Ctrl-C or SIGUSR1 (Ray saves
its state) continues with the same command plus ``--resume`` (``Tuner.restore`` of
``<out>/<name>``); finished trials are kept, unfinished trials start again from their first epoch.

``--address`` connects to a running Ray cluster (``ray.init(address=...)``); run the command on a
cluster node, with this package installed on every node. All paths handed to trials are absolute
and results are written under Ray's storage path ``<out>/<name>``.
"""

import argparse
import csv
import json
import os
import pickle
import sys
import time
from pathlib import Path

from recbole_kgin import ray_api
from recbole_kgin.errors import UsageError, split_overrides
from recbole_kgin.tune_space import (
    check_search_compatible,
    check_space,
    grid_size,
    read_space,
    to_param_space,
)

SCHEDULERS = ("asha", "fifo")
SEARCHES = ("random", "grid", "hyperopt", "optuna")
# --search NAME -> (package to import, Ray module, searcher class)
OPTIONAL_SEARCHERS = {
    "hyperopt": ("hyperopt", "ray.tune.search.hyperopt", "HyperOptSearch"),
    "optuna": ("optuna", "ray.tune.search.optuna", "OptunaSearch"),
}
METRIC = "valid_score"  # what trials report and Ray optimises (the configured valid_metric)
SETTINGS_FILE = "search.json"
TRIALS_CSV = "trials.csv"
TRIALS_MD = "trials.md"
BEST_YAML = "best.yaml"
BEST_TEST = "best_test.json"
TRIAL_ENDS = "trial_ends.jsonl"
DEFAULTS = {"num_samples": 10, "scheduler": "asha", "search": "random", "cpus_per_trial": 1.0,
            "gpus_per_trial": 0.0, "max_failures": 1, "grace_period": None,
            "reduction_factor": 2.0}


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(
        prog="run_recbole_kgin.py tune",
        description="Ray Tune hyperparameter search. Trials report validation results every "
        "validation; the test split is evaluated once, for the best configuration. Extra "
        "--key=value arguments are RecBole configuration overrides for every trial.",
    )
    parser.add_argument("--model", "-m", help="model name (KGIN or a RecBole model)")
    parser.add_argument("--dataset", "-d", help="dataset name")
    parser.add_argument("--space", help="search-space YAML file (see properties/tune/*.yaml)")
    parser.add_argument("--num-samples", type=int, help="trials to sample (default 10; with grid "
                        "values: samples per grid point, like Ray)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, help="asha (default) or fifo")
    parser.add_argument("--search", choices=SEARCHES, help="random (default), grid, hyperopt, "
                        "optuna (the last two need their package installed)")
    parser.add_argument("--cpus-per-trial", type=float, help="CPUs per trial (default 1)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per trial (default 0)")
    parser.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial can be "
                        "stopped (default: eval_step)")
    parser.add_argument("--reduction-factor", type=float, help="ASHA reduction factor (default 2)")
    parser.add_argument("--max-failures", type=int, help="retries of a failing trial (default 1)")
    parser.add_argument("--address", default=None, help="address of a running Ray cluster "
                        "(e.g. auto or HOST:PORT); default: start Ray locally")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted search "
                        "<out>/<name>")
    parser.add_argument("--out", default="ray_results", help="Ray storage path (default ray_results)")
    parser.add_argument("--name", default=None, help="experiment name (default MODEL-DATASET)")
    parser.add_argument("--config_files", default=None,
                        help="space-separated YAML config files, applied in order")
    parser.add_argument("--verbose", type=int, default=1, help="Ray progress output 0-2 (default 1)")
    return parser


def parse_args(argv):
    """Parse ``argv`` (after the sub-command) into an :class:`argparse.Namespace`."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
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
    args.out = str(Path(args.out).expanduser().resolve())
    if args.address and args.address.startswith("ray://"):
        raise UsageError("ray:// client addresses are not supported: run the command on a cluster "
                         "node with --address=auto or --address=HOST:PORT")
    return args


# --------------------------------------------------------------------------------------------
# settings (everything a resume needs), validated before Ray starts
# --------------------------------------------------------------------------------------------

def _plain(value):
    """JSON/YAML-safe copy of a configuration value (numpy scalars, tuples)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _user_layer(config):
    """The user's config files and overrides, merged and typed by RecBole (no model / dataset)."""
    layer = {k: _plain(v) for k, v in config.external_config_dict.items()
             if k not in ("model", "dataset")}
    if "data_path" in layer:
        layer["data_path"] = str(Path(layer["data_path"]).expanduser().resolve())
    return layer


def prepare_settings(args):
    """Merge the configuration, check the space and options; return the settings dict."""
    from recbole_kgin.quick_start import create_config

    missing = [f"--{k}" for k in ("model", "dataset", "space") if not getattr(args, k)]
    if missing:
        raise UsageError(f"{', '.join(missing)} required")
    settings = {k: (getattr(args, k) if getattr(args, k) is not None else d)
                for k, d in DEFAULTS.items()}
    if settings["num_samples"] < 1:
        raise UsageError("--num-samples must be >= 1")
    if settings["cpus_per_trial"] <= 0 or settings["gpus_per_trial"] < 0:
        raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if settings["max_failures"] < -1:
        raise UsageError("--max-failures must be >= 0 (or -1: retry forever)")
    if settings["reduction_factor"] <= 1:
        raise UsageError("--reduction-factor must be > 1")
    for file in args.config_files:
        if not Path(file).is_file():
            raise UsageError(f"config file not found: {file}")
    space_file = str(Path(args.space).expanduser().resolve())
    space = read_space(args.space)

    config = create_config(args.model, args.dataset, config_file_list=args.config_files,
                           config_dict=dict(args.overrides))
    check_space(space, args.space, config)
    check_search_compatible(space, args.space, settings["search"])
    if settings["search"] in OPTIONAL_SEARCHERS:
        _searcher_class(settings["search"])  # fails now if the package is missing
    epochs, eval_step = config["epochs"], config["eval_step"]
    if "epochs" in space:  # the scheduler's time budget is the largest epoch count searched
        dist, values = space["epochs"]
        if dist not in ("choice", "grid", "randint") or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise UsageError(f"{args.space}: key 'epochs': use choice, grid or randint of "
                             f"positive integers")
        epochs = max(values)
    if "epochs" not in space and "eval_step" not in space and (eval_step or 0) > epochs:
        raise UsageError(f"epochs ({epochs}) < eval_step ({eval_step}): trials would never "
                         f"validate; pass e.g. --eval_step=1")
    if settings["grace_period"] is None:
        settings["grace_period"] = max(1, min(int(eval_step or 1), int(epochs)))
    if settings["scheduler"] == "asha" and not 1 <= settings["grace_period"] <= epochs:
        raise UsageError(f"--grace-period must be between 1 and epochs ({epochs})")

    settings.update(
        model=config["model"],
        dataset=config["dataset"],
        space_file=space_file,
        space={k: [d, a] for k, (d, a) in space.items()},
        user_layer=_user_layer(config),
        config_files=[str(Path(f).resolve()) for f in args.config_files],
        valid_metric=config["valid_metric"],
        mode="max" if config["valid_metric_bigger"] else "min",
        max_t=int(epochs),
        expected_trials=settings["num_samples"] * grid_size(space, settings["search"]),
    )
    return settings


def _searcher_class(search):
    package, module, name = OPTIONAL_SEARCHERS[search]
    try:
        __import__(package)
    except ImportError:
        raise UsageError(f"--search {search} needs the {package} package: pip install {package}") \
            from None
    import importlib

    return getattr(importlib.import_module(module), name)


def _load_settings(exp_dir, args):
    file = Path(exp_dir) / SETTINGS_FILE
    if not file.is_file():
        raise UsageError(f"nothing to resume: {file} not found")
    settings = json.loads(file.read_text())
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


# --------------------------------------------------------------------------------------------
# the dataset, built once
# --------------------------------------------------------------------------------------------

def build_dataset_once(settings, exp_dir):
    """Create the dataset once with RecBole's dataset saving; return the saved pickle's bytes.

    A resumed search reloads ``<experiment>/dataset/*.pth`` (RecBole checks that its dataset
    arguments are unchanged) instead of parsing the data files again.
    """
    from recbole_kgin.quick_start import build_dataset, create_config

    folder = Path(exp_dir) / "dataset"
    saved = sorted(folder.glob("*.pth"))
    extra = {"save_dataset": True, "checkpoint_dir": str(folder)}
    if saved:
        extra["dataset_save_path"] = str(saved[0])
    config = create_config(settings["model"], settings["dataset"],
                           config_dict={**settings["user_layer"], **extra})
    dataset = build_dataset(config)
    file = folder / f"{config['dataset']}-{type(dataset).__name__}.pth"
    if not file.is_file():
        raise RuntimeError(f"RecBole did not save the dataset to {file}")
    return file.read_bytes()


def split_dataset(config, dataset_blob):
    """The shared pipeline's :func:`~recbole_kgin.quick_start.load_data` on the pickled dataset,
    so every trial gets the split a single run gets."""
    from recbole_kgin.quick_start import load_data

    return load_data(config, pickle.loads(dataset_blob))


# --------------------------------------------------------------------------------------------
# the trial
# --------------------------------------------------------------------------------------------

class _ValidationReporter:
    """``trainer.epoch_callback``: report every validation to Ray, keep the running best."""

    def __init__(self, bigger, epochs, report):
        self.bigger = bigger
        self.epochs = epochs
        self.report = report
        self.best = None
        self.last = None

    def __call__(self, epoch_idx, valid_score, valid_result):
        score = float(valid_score)
        if self.best is None or (score > self.best[0] if self.bigger else score < self.best[0]):
            self.best = (score, epoch_idx)
        self.last = {
            METRIC: score,
            "best_valid_score": self.best[0],
            "best_epoch": self.best[1],
            "epoch": epoch_idx,
            "epochs_run": epoch_idx + 1,
            # the last epoch of the budget; a trial that RecBole stops early says so in one
            # more report after fit (a scheduler may stop the trial on this very result)
            "finished": epoch_idx + 1 >= self.epochs,
            **{f"valid_{k}": float(v) for k, v in valid_result.items()},
        }
        self.report(dict(self.last))


def _set_threads(cpus):
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cpus)))
    return previous


def run_trial(config, *, setup, dataset_blob):
    """Ray Tune function trainable: one configuration, trained and validated, never tested."""
    import ray

    from recbole_kgin.quick_start import build_model, build_trainer, create_config, fit_and_test

    params = {k: _plain(v) for k, v in config.items()}
    trial_dir = Path(ray_api.trial_dir()).resolve()
    gpu_ids = ray.get_gpu_ids() if setup["gpus_per_trial"] > 0 else []
    forced = {
        "checkpoint_dir": str(trial_dir / "checkpoints"),
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        # RecBole sets CUDA_VISIBLE_DEVICES from gpu_id: give it the GPUs Ray assigned ("" = CPU)
        "gpu_id": ",".join(str(g) for g in gpu_ids),
    }
    run_config = create_config(setup["model"], setup["dataset"],
                               config_dict={**setup["user_layer"], **params, **forced})
    _set_threads(setup["cpus_per_trial"])
    _, train_data, valid_data, _ = split_dataset(run_config, dataset_blob)
    model = build_model(run_config, train_data)
    trainer = build_trainer(run_config, model)
    reporter = _ValidationReporter(bool(run_config["valid_metric_bigger"]),
                                   int(run_config["epochs"]), ray_api.report)
    trainer.epoch_callback = reporter
    result = fit_and_test(run_config, model, trainer, train_data, valid_data, None, saved=False,
                          show_progress=False, evaluate_test=False)
    if reporter.last is None:
        raise RuntimeError("the trial finished without a validation (check epochs and eval_step)")
    ray_api.report({**reporter.last, "finished": True,
                    "seconds_per_epoch": result["seconds_per_epoch"],
                    "n_params": result["n_params"]})


# --------------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------------

def _end_log_callback(exp_dir):
    """A Ray Tune callback appending every trial that ends (completes, is stopped by the scheduler,
    or errors for good) to ``<experiment>/trial_ends.jsonl``. Ray marks the trials it was running
    when a search is interrupted as terminated in memory (they are resumed from the saved state),
    so this log is how the driver tells an interrupted search from a finished one."""
    from ray.tune import Callback

    class TrialEndLog(Callback):
        def __init__(self, path):
            self.path = str(path)

        def _write(self, trial, how):
            with open(self.path, "a") as f:
                f.write(json.dumps({"trial_id": trial.trial_id, "end": how}) + "\n")

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._write(trial, "complete")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._write(trial, "error")

    return TrialEndLog(Path(exp_dir) / TRIAL_ENDS)


def _ended_trials(exp_dir):
    path = Path(exp_dir) / TRIAL_ENDS
    if not path.is_file():
        return set()
    return {json.loads(line)["trial_id"] for line in path.read_text().splitlines() if line.strip()}


def _make_trainable(settings, dataset_blob):
    from ray import tune

    setup = {k: settings[k] for k in ("model", "dataset", "user_layer", "cpus_per_trial",
                                      "gpus_per_trial")}
    trainable = tune.with_parameters(run_trial, setup=setup, dataset_blob=dataset_blob)
    resources = {"cpu": settings["cpus_per_trial"], "gpu": settings["gpus_per_trial"]}
    return tune.with_resources(trainable, resources)


def _make_tuner(settings, exp_dir, trainable, callbacks):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if settings["scheduler"] == "asha":
        scheduler = ASHAScheduler(time_attr="epochs_run", max_t=settings["max_t"],
                                  grace_period=settings["grace_period"],
                                  reduction_factor=settings["reduction_factor"])
    else:
        scheduler = FIFOScheduler()
    search_alg = None
    if settings["search"] in OPTIONAL_SEARCHERS:
        search_alg = _searcher_class(settings["search"])()
    space = {k: tuple(v) for k, v in settings["space"].items()}
    tune_config = tune.TuneConfig(
        metric=METRIC, mode=settings["mode"], num_samples=settings["num_samples"],
        scheduler=scheduler, search_alg=search_alg,
        reuse_actors=settings["gpus_per_trial"] == 0,
    )
    run_config = ray_api.run_config(
        name=Path(exp_dir).name, storage_path=str(Path(exp_dir).parent),
        max_failures=settings["max_failures"],
        callbacks=[_end_log_callback(exp_dir), *(callbacks or [])], verbose=settings.get("verbose", 1),
    )
    return tune.Tuner(trainable, param_space=to_param_space(space, settings["search"]),
                      tune_config=tune_config, run_config=run_config)


def run_search(args, callbacks=None, log=print):
    """Run (or resume) the search described by parsed ``args``; return a summary dict.

    ``callbacks`` are extra Ray Tune callbacks (used by the tests to interrupt a search).
    """
    exp_dir = Path(args.out) / args.name
    if args.resume:
        settings = _load_settings(exp_dir, args)
        from ray.tune import Tuner

        if not Tuner.can_restore(str(exp_dir)):
            raise UsageError(f"--resume: {exp_dir} holds no Ray Tune state to restore")
    else:
        settings = prepare_settings(args)
        if exp_dir.exists() and any(exp_dir.iterdir()):
            raise UsageError(f"{exp_dir} already exists: pass --resume to continue that search, "
                             f"or another --name / --out")
    settings["verbose"] = args.verbose

    start = time.perf_counter()
    exp_dir.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        (exp_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    log(f"building the dataset once ({settings['dataset']}) ...")
    dataset_blob = build_dataset_once(settings, exp_dir)

    import ray

    started_ray = False
    if not ray.is_initialized():
        ray.init(address=args.address, include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning"}})
        started_ray = True
    try:
        trainable = _make_trainable(settings, dataset_blob)
        if args.resume:
            from ray import tune

            tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable,
                                       resume_unfinished=True, resume_errored=False)
        else:
            tuner = _make_tuner(settings, exp_dir, trainable, callbacks)
        grid = tuner.fit()
        rows, complete = collect_trials(grid, settings, _ended_trials(exp_dir))
        write_tables(rows, settings, exp_dir)
        summary = {"experiment": str(exp_dir), "rows": rows, "complete": complete,
                   "settings": settings, "best": None}
        if not complete:
            summary["search_seconds"] = time.perf_counter() - start
            return summary
        best = next((r for r in rows if r["status"] != "error" and r["best_valid"] is not None),
                    None)
        if best is None:
            summary["search_seconds"] = time.perf_counter() - start
            return summary
        best_yaml = write_best_yaml(best, settings, exp_dir)
        summary["search_seconds"] = time.perf_counter() - start
        log(f"retraining the best configuration ({best['trial_id']}) and testing it once ...")
        summary["best"] = retrain_best(best, best_yaml, settings, exp_dir, dataset_blob)
        summary["best"]["search_seconds"] = summary["search_seconds"]
        (exp_dir / BEST_TEST).write_text(json.dumps(summary["best"], indent=2) + "\n")
        summary["total_seconds"] = time.perf_counter() - start
        return summary
    finally:
        if started_ray:
            ray.shutdown()


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------

def _short_error(error):
    if error is None:
        return ""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    picked = [ln for ln in lines if ("Error" in ln or "Exception" in ln) and ":" in ln]
    text = (picked or lines or [type(error).__name__])[-1]
    return text[:300]


def collect_trials(grid, settings, ended):
    """One row per trial, sorted by best validation score (errors last); and whether every
    expected trial has ended (False after an interruption). ``ended``: ids of the trials that
    ended (see :func:`_end_log_callback`)."""
    bigger = settings["mode"] == "max"
    keys = list(settings["space"])
    trials = list(getattr(grid, "_experiment_analysis").trials)
    rows = []
    for trial, result in zip(trials, grid):
        df = result.metrics_dataframe
        last = result.metrics or {}
        best_valid = best_epoch = epochs_run = None
        if df is not None and METRIC in df.columns and df[METRIC].notna().any():
            scores = df[METRIC].astype(float)
            idx = scores.idxmax() if bigger else scores.idxmin()
            best_valid = float(scores[idx])
            best_epoch = int(df.loc[idx, "epoch"])
            epochs_run = int(df["epochs_run"].max())
        status = str(trial.status)
        if trial.trial_id not in ended:
            state = "incomplete"
        elif result.error is not None or status == "ERROR":
            state = "error"
        elif status == "TERMINATED":
            finished = bool(last.get("finished"))
            if df is not None and "finished" in df.columns:
                finished = finished or bool(df["finished"].fillna(False).astype(bool).any())
            state = "finished" if finished else "stopped"
        else:
            state = "incomplete"
        rows.append({
            "trial_id": trial.trial_id,
            "params": {k: _plain((trial.config or {}).get(k)) for k in keys},
            "best_valid": best_valid,
            "best_epoch": best_epoch,
            "epochs_run": epochs_run,
            "status": state,
            "error": _short_error(result.error) if state == "error" else "",
            "path": str(result.path) if getattr(result, "path", None) else "",
        })

    def order(row):  # best score first; on a tie, a trial that ran its budget, then by id
        if row["best_valid"] is None or row["status"] == "error":
            return (1, 0.0, True, row["trial_id"])
        score = -row["best_valid"] if bigger else row["best_valid"]
        return (0, score, row["status"] != "finished", row["trial_id"])

    rows.sort(key=order)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    complete = (len(rows) >= settings["expected_trials"]
                and all(r["status"] != "incomplete" for r in rows))
    return rows, complete


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def write_tables(rows, settings, exp_dir):
    """``trials.csv`` and ``trials.md``: config columns, best validation score, epochs, status."""
    keys = list(settings["space"])
    metric = f"valid {settings['valid_metric']}"
    header = ["rank", "trial_id", *keys, metric, "best_epoch", "epochs_run", "status", "error"]
    with open(Path(exp_dir) / TRIALS_CSV, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for r in rows:
            writer.writerow([r["rank"], r["trial_id"],
                             *[json.dumps(r["params"][k]) if isinstance(r["params"][k], (list, dict))
                               else r["params"][k] for k in keys],
                             "" if r["best_valid"] is None else repr(r["best_valid"]),
                             "" if r["best_epoch"] is None else r["best_epoch"],
                             "" if r["epochs_run"] is None else r["epochs_run"],
                             r["status"], r["error"]])
    lines = [
        f"# {settings['model']} on {settings['dataset']}: {len(rows)} trials",
        "",
        f"Sorted by the best validation {settings['valid_metric']} of each trial "
        f"({'higher' if settings['mode'] == 'max' else 'lower'} is better). Epoch indices are "
        f"0-based; status: finished (epoch budget or early stopping), stopped (by the "
        f"{settings['scheduler'].upper()} scheduler), error.",
        "",
        "| " + " | ".join(header[:-1]) + " |",
        "|" + "|".join(["---:"] + ["---"] * (len(header) - 2)) + "|",
    ]
    for r in rows:
        cells = [str(r["rank"]), r["trial_id"], *[_fmt(r["params"][k]) for k in keys],
                 "" if r["best_valid"] is None else f"{r['best_valid']:.4f}",
                 _fmt(r["best_epoch"]), _fmt(r["epochs_run"]),
                 r["status"] + (f": {r['error']}" if r["error"] else "")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    (Path(exp_dir) / TRIALS_MD).write_text("\n".join(lines) + "\n")


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
    parts += ["# searched (" + Path(settings["space_file"]).name + ")", dump(best["params"])]
    path = Path(exp_dir) / BEST_YAML
    path.write_text("\n".join(parts) + "\n")
    return path


def retrain_best(best, best_yaml, settings, exp_dir, dataset_blob):
    """Train ``best.yaml`` through the shared pipeline and evaluate the test split once."""
    from recbole_kgin.quick_start import build_model, build_trainer, create_config, fit_and_test

    forced = {"checkpoint_dir": str(Path(exp_dir) / "best_model"), "show_progress": False}
    config = create_config(config_file_list=[str(best_yaml)], config_dict=forced)
    previous = _set_threads(settings["cpus_per_trial"])  # same arithmetic as in the trial
    try:
        _, train_data, valid_data, test_data = split_dataset(config, dataset_blob)
        model = build_model(config, train_data)
        trainer = build_trainer(config, model)
        result = fit_and_test(config, model, trainer, train_data, valid_data, test_data,
                              saved=True, show_progress=False, evaluate_test=True)
    finally:
        _set_threads(previous)
    return {
        "model": settings["model"],
        "dataset": settings["dataset"],
        "trial_id": best["trial_id"],
        "params": best["params"],
        "valid_metric": settings["valid_metric"],
        "search_best_valid": best["best_valid"],
        "search_best_epoch": best["best_epoch"],
        "search_epochs_run": best["epochs_run"],
        "best_valid_score": result["best_valid_score"],
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "best_valid_result": result["best_valid_result"],
        "test_result": result["test_result"],
        "seconds_per_epoch": result["seconds_per_epoch"],
        "train_seconds": result["train_seconds"],
        "checkpoint": result["saved_model_file"],
        "best_yaml": str(best_yaml),
    }


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
          f"{best['search_best_valid']:.4f} (retrained: {best['best_valid_score']:.4f})")
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
