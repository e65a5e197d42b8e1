# -*- coding: utf-8 -*-
"""The Ray Tune driver shared by ``tune`` and ``compare``: a search (trials select on validation,
never see test) and the final runs (the selected configuration, one Ray trial per seed, test once).

Faults: a trial that raises is retried ``max_failures`` times (Ray's ``FailureConfig``), then
recorded as ``error`` and the experiment goes on. An interrupted search (Ctrl-C, SIGUSR1) keeps Ray's
state and continues with ``Tuner.restore``; final runs are kept per seed (``seed-<s>.json``) and only
the missing seeds run again.
"""

import contextlib
import json
import logging
import re
import shutil
import signal
import threading
import time
from pathlib import Path

from recbole_kgin.errors import UsageError
from recbole_kgin.experiment import ledger
from recbole_kgin.experiment.runner import METRIC, POINT_KEY, plain, run_trial, trial_params
from recbole_kgin.tune_space import (
    check_search_compatible,
    check_space,
    distinct_samples,
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
TRIAL_ENDS = "trial_ends.jsonl"


# --------------------------------------------------------------------------------------------
# settings (everything a resume needs), validated before Ray starts


def user_layer(config):
    """The user's config files and overrides, merged and typed by RecBole (no model / dataset)."""
    layer = {k: plain(v) for k, v in config.external_config_dict.items()
             if k not in ("model", "dataset")}
    if "data_path" in layer:
        layer["data_path"] = str(Path(layer["data_path"]).expanduser().resolve())
    return layer


def searcher_class(search):
    package, module, name = OPTIONAL_SEARCHERS[search]
    try:
        __import__(package)
    except ImportError:
        raise UsageError(f"--search {search} needs the {package} package: pip install {package}") \
            from None
    import importlib

    return getattr(importlib.import_module(module), name)


def search_settings(config, space_path, options):
    """Check ``space_path`` against the merged ``config`` and the search ``options`` (num_samples,
    scheduler, search, cpus_per_trial, gpus_per_trial, max_failures, grace_period,
    reduction_factor); return the settings dict of the search. ``space_path`` None: no search
    space (a model without hyperparameters), one trial of the configuration as it is."""
    settings = dict(options)  # the options were checked where they were parsed (arguments.py)
    space = {}
    if space_path is not None:
        space = read_space(space_path)
        check_space(space, space_path, config)
        check_search_compatible(space, space_path, settings["search"])
    if settings["search"] in OPTIONAL_SEARCHERS:
        searcher_class(settings["search"])  # fails now if the package is missing
    epochs, eval_step = config["epochs"], config["eval_step"]
    if "epochs" in space:  # the scheduler's time budget is the largest epoch count searched
        dist, values = space["epochs"]
        if dist not in ("choice", "grid", "randint") or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise UsageError(f"{space_path}: key 'epochs': use choice, grid or randint of "
                             f"positive integers")
        epochs = max(values)
    if "epochs" not in space and "eval_step" not in space and (eval_step or 0) > epochs:
        raise UsageError(f"epochs ({epochs}) < eval_step ({eval_step}): trials would never "
                         f"validate; pass e.g. --eval_step=1")
    if settings["grace_period"] is None:
        settings["grace_period"] = max(1, min(int(eval_step or 1), int(epochs)))
    if settings["scheduler"] == "asha" and not 1 <= settings["grace_period"] <= epochs:
        raise UsageError(f"--grace-period must be between 1 and epochs ({epochs})")
    samples = settings["num_samples"] if space else 1
    points = distinct_samples(space, samples, config["seed"]) if settings["search"] == "random" \
        else None
    if points is not None:
        samples = len(points)  # a space with fewer configurations than trials is tried whole
    settings.update(
        model=config["model"],
        dataset=config["dataset"],
        space_file=str(Path(space_path).resolve()) if space_path else None,
        space={k: [d, a] for k, (d, a) in space.items()},
        user_layer=user_layer(config),
        valid_metric=config["valid_metric"],
        mode="max" if config["valid_metric_bigger"] else "min",
        max_t=int(epochs),
        num_samples=samples,
        expected_trials=samples * grid_size(space, settings["search"]),
        distinct_points=points,
    )
    return settings


# --------------------------------------------------------------------------------------------
# Ray


def start_ray(address=None):
    """Start (or connect to) Ray unless it runs already; True when this call started it."""
    import ray

    from recbole_kgin import quiet

    if ray.is_initialized():
        return False
    quiet.install()
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": quiet.worker_env()})
    return True


def check_shared_folder(folder, timeout=60.0):
    """Every live Ray node must see ``folder`` at the same path: trials write their results there.
    Writes a token file, reads it back on each node (a zero-CPU task pinned to it) and removes it;
    one line naming the first node that cannot see it."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    token = folder / f".node-check-{uuid.uuid4().hex}"
    token.write_text(token.name)

    @ray.remote(num_cpus=0)
    def sees(path, text):
        try:
            return Path(path).read_text() == text
        except OSError:
            return False

    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        checks = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(str(token), token.name) for n in nodes]
        try:
            seen = ray.get(checks, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise UsageError(f"{folder}: the Ray nodes did not answer within {timeout:.0f} s "
                             "whether they can see the run folder") from None
    finally:
        token.unlink(missing_ok=True)
    for node, ok in zip(nodes, seen):
        if not ok:
            raise UsageError(
                f"{folder}: not visible from Ray node {node.get('NodeManagerAddress')} "
                f"({node['NodeID'][:8]}); trials write their results there, so put --out on a "
                "directory every node mounts at the same path (see README, On a Ray cluster)")
    return len(nodes)


def stop_ray(started):
    if started:
        import ray

        ray.shutdown()


def _end_log_callback(exp_dir):
    """A Ray Tune callback appending every trial that ends (completes, is stopped by the scheduler,
    or errors for good) to ``<experiment>/trial_ends.jsonl``. Ray marks the trials it was running
    when an experiment is interrupted as terminated in memory (they are resumed from the saved
    state), so this log is how the driver tells an interrupted experiment from a finished one."""
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


def _trainable(settings, dataset_blob, **setup_extra):
    from ray import tune

    setup = {k: settings[k] for k in ("model", "dataset", "user_layer", "cpus_per_trial",
                                      "gpus_per_trial")}
    setup.update(setup_extra)
    trainable = tune.with_parameters(run_trial, setup=setup, dataset_blob=dataset_blob)
    resources = {"cpu": settings["cpus_per_trial"], "gpu": settings["gpus_per_trial"]}
    if settings.get("memory_per_trial"):
        resources["memory"] = int(settings["memory_per_trial"])
    return tune.with_resources(trainable, resources)


def check_memory(settings):
    """Refuse a trial whose request no node of the Ray cluster can meet (Ray would wait for it
    forever): CPUs and GPUs per trial (:func:`recbole_kgin.experiment.preflight.unmet_resources`),
    and a model's memory estimate."""
    import ray

    from recbole_kgin.experiment.preflight import unmet_resources

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    why = unmet_resources({"cpu": settings["cpus_per_trial"], "gpu": settings["gpus_per_trial"]},
                          nodes)
    if why:
        raise UsageError(f"--cpus-per-trial {settings['cpus_per_trial']:g} --gpus-per-trial "
                         f"{settings['gpus_per_trial']:g}: {why}")
    need = settings.get("memory_per_trial")
    if not need:
        return

    offered = max((n.get("Resources", {}).get("memory", 0) for n in ray.nodes() if n.get("Alive")),
                  default=0)
    if need > offered:
        raise RuntimeError(
            f"{settings['model']} needs about {need / 2**30:.1f} GiB per run "
            f"({settings.get('memory_reason', 'its estimate')}); the largest Ray node offers "
            f"{offered / 2**30:.1f} GiB")


def _tuner(settings, exp_dir, trainable, param_space, scheduler, search_alg, num_samples,
           callbacks):
    import logging
    import os

    from ray import tune

    from recbole_kgin import ray_api

    if not settings.get("verbose"):  # Ray's console tables and INFO lines off; its files stay
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
    tune_config = tune.TuneConfig(
        metric=METRIC, mode=settings["mode"], num_samples=num_samples, scheduler=scheduler,
        search_alg=search_alg, reuse_actors=settings["gpus_per_trial"] == 0,
    )
    run_config = ray_api.run_config(
        name=Path(exp_dir).name, storage_path=str(Path(exp_dir).parent),
        max_failures=settings["max_failures"],
        callbacks=[_end_log_callback(exp_dir), *(callbacks or [])],
        verbose=settings.get("verbose", 0),
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config,
                      run_config=run_config)


def _with_progress(callbacks, label, total, settings, unit):
    from recbole_kgin.experiment import progress

    callbacks = list(callbacks or [])
    if label:
        callbacks.append(progress.callback(label, total, settings["valid_metric"],
                                           settings["mode"] == "max", unit=unit,
                                           epochs=settings.get("max_t")))
    return callbacks


PARTIAL_DIR = "partial"  # checkpoints of runs still training: models/<Model>/partial, final/partial


def run_search(settings, exp_dir, dataset_blob, resume=False, callbacks=None, label=None,
               ledger_path=None):
    """Run (or, with ``resume``, continue) the search; returns ``(rows, complete)`` (see
    :func:`collect_trials`). With ``label``, progress lines on the console
    (:mod:`recbole_kgin.experiment.progress`). With ``ledger_path`` and distinct configurations
    (:mod:`recbole_kgin.experiment.ledger`), every trial that ends is written there, and the
    ledger's trials count as run: a search started afresh runs only the configurations it lacks."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    points = settings.get("distinct_points") or []
    keys = list(settings["space"])
    point_keys = [ledger.point_key(_params_over(p, keys)) for p in points]
    use_ledger = bool(ledger_path and points)
    # trials keep their checkpoint beside the ledger while they train (runner.partial_name)
    partial_dir = Path(ledger_path).parent / PARTIAL_DIR if ledger_path else None
    kept = {}
    if use_ledger:
        kept = {k: r for k, r in ledger.read(ledger_path, settings).items() if k in point_keys}
        callbacks = [*(callbacks or []), ledger.callback(
            ledger_path, settings, lambda trial: _params_over(trial.config, keys))]
    left = [p for p, k in zip(points, point_keys) if k not in kept]
    new_rows, stopped = [], False
    if resume or left or not points:
        check_memory(settings)
        trainable = _trainable(settings, dataset_blob, mode="search",
                               partial_dir=str(partial_dir) if partial_dir else None)
        total = settings["expected_trials"] - (0 if resume else len(kept))
        if kept and label:
            label = f"{label} ({len(kept)} more kept in {Path(ledger_path).name})"
        callbacks = _with_progress(callbacks, label, total, settings, "trials")
        if resume:
            # the restored experiment keeps the callbacks it was started with (progress included)
            tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True,
                                       resume_errored=False)
        else:
            if settings["scheduler"] == "asha":
                scheduler = ASHAScheduler(time_attr="epochs_run", max_t=settings["max_t"],
                                          grace_period=settings["grace_period"],
                                          reduction_factor=settings["reduction_factor"])
            else:
                scheduler = FIFOScheduler()
            search_alg = None
            if settings["search"] in OPTIONAL_SEARCHERS:
                search_alg = searcher_class(settings["search"])()
            space = {k: tuple(v) for k, v in settings["space"].items()}
            param_space = to_param_space(space, settings["search"])
            num_samples = settings["num_samples"]
            if points:  # one trial per drawn configuration not yet in the ledger
                param_space, num_samples = {POINT_KEY: tune.grid_search(left)}, 1
            tuner = _tuner(settings, exp_dir, trainable, param_space, scheduler, search_alg,
                           num_samples, callbacks)
        grid, stopped = fit(tuner)
        new_rows = trial_rows(grid, settings, _ended_trials(exp_dir))
    if use_ledger:
        for row in new_rows:  # trials of an experiment started without the ledger's callback
            ledger.append(ledger_path, settings, row)
    ran = {ledger.point_key(r["params"]) for r in new_rows}
    rows = new_rows + [r for k, r in kept.items() if k not in ran]
    draw = {k: i for i, k in enumerate(point_keys)}
    for row in rows:  # ties are broken in the order the configurations were drawn, on any machine
        row["draw"] = draw.get(ledger.point_key(row["params"]))
    rows, complete = rank_rows(rows, settings)
    complete = complete and not stopped  # a Ctrl-C after the last trial ended still stops
    if complete and partial_dir is not None:  # left by trials a scheduler stopped
        shutil.rmtree(partial_dir, ignore_errors=True)
    return rows, complete


def _params_over(config, keys):
    """A trial's (or a drawn configuration's) parameters over the space's ``keys``, plain values."""
    return {k: plain(trial_params(config).get(k)) for k in keys}


_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGUSR1") if hasattr(signal, n))
# what Ray Tune 2.60 logs (logger ``ray.tune.tune``) when its handler catches SIGINT or SIGUSR1
_RAY_STOP_LOG = "Stop signal received"


class _StopLogged(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.stopped = False

    def emit(self, record):
        if _RAY_STOP_LOG in str(record.msg):
            self.stopped = True


@contextlib.contextmanager
def _stop_signals_watched():
    """Ray Tune puts its own SIGINT and SIGUSR1 handler in place for a run and leaves it there
    when the run ends: a Ctrl-C between two runs (a model finished, the next one starting) would
    only log "Stop signal received" and the driver would go on. The handlers in place before the
    run are put back afterwards, and a stop signal Ray caught after the run's last trial ended
    (when nothing is left to interrupt) is reported, so that the caller stops all the same."""
    main = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in _STOP_SIGNALS} if main else {}
    seen = _StopLogged()
    ray_log = logging.getLogger("ray.tune.tune")
    ray_log.addHandler(seen)
    try:
        yield seen
    finally:
        ray_log.removeHandler(seen)
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def fit(tuner):
    """``tuner.fit()`` and whether a stop signal (Ctrl-C, SIGUSR1) reached it
    (:func:`_stop_signals_watched`)."""
    with _stop_signals_watched() as seen:
        grid = tuner.fit()
    return grid, seen.stopped


def can_restore(exp_dir):
    from ray.tune import Tuner

    return Path(exp_dir).is_dir() and Tuner.can_restore(str(exp_dir))


def run_finals(settings, params, seeds, final_dir, dataset_blob, callbacks=None,
               per_user_ks=(20,), label=None):
    """Train ``params`` once per seed (one Ray trial each, the split fixed by the settings'
    ``split_seed``) and test once; each run writes ``final_dir/seed-<s>.json`` and ``.npz``.
    Seeds whose JSON exists are skipped. Returns ``{seed: one-line error}`` of the runs that
    failed, whether every seed was attempted (False after an interruption) and how many attempts
    failed and were retried (``--max-failures``, e.g. a node lost)."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    final_dir = Path(final_dir)
    check_memory(settings)
    missing = [s for s in seeds if not (final_dir / f"seed-{s}.json").is_file()]
    if not missing:
        return {}, True, 0
    exp_dir = final_dir / "ray"
    if exp_dir.exists():  # a run interrupted before: its finished seeds are kept as files
        shutil.rmtree(exp_dir)
    trainable = _trainable(settings, dataset_blob, mode="final", final_dir=str(final_dir),
                           per_user_ks=list(per_user_ks),
                           partial_dir=str(final_dir / PARTIAL_DIR))
    space = {**params, "seed": tune.grid_search(missing)}
    callbacks = _with_progress(callbacks, label, len(missing), settings, "seed runs")
    tuner = _tuner(settings, exp_dir, trainable, space, FIFOScheduler(), None, 1, callbacks)
    grid, stopped = fit(tuner)
    ended = _ended_trials(exp_dir)
    errors = {}
    trials = list(getattr(grid, "_experiment_analysis").trials)
    deaths = NodeDeaths()
    for trial, result in zip(trials, grid):
        seed = int((trial.config or {}).get("seed"))
        if result.error is not None and trial.trial_id in ended:
            errors[seed] = trial_error(result.error, (result.metrics or {}).get("node_id"), deaths)
    attempted = (all(t.trial_id in ended for t in trials) and len(trials) == len(missing)
                 and not stopped)
    if all((final_dir / f"seed-{s}.json").is_file() for s in seeds):
        shutil.rmtree(final_dir / PARTIAL_DIR, ignore_errors=True)
    failures = sum(int(getattr(t, "num_failures", 0) or 0) for t in trials)
    return errors, attempted, failures


# --------------------------------------------------------------------------------------------
# results


NODE_LOST = re.compile(r"node has died|node died|NodeDiedError|node has crashed|"
                       r"node .* (?:was|is) (?:dead|removed)|raylet .* (?:died|crashed)",
                       re.IGNORECASE)


def dead_nodes():
    """Ids of the Ray nodes the cluster has seen die (empty without Ray)."""
    try:
        import ray

        return {n["NodeID"] for n in ray.nodes() if not n.get("Alive")} if ray.is_initialized() \
            else set()
    except Exception:  # noqa: BLE001 -- a question about the cluster must not fail the table
        return set()


CONNECTION_LOST = re.compile(r"ActorDiedError|ActorUnavailableError|is unavailable|Socket closed|"
                             r"RpcError|died unexpectedly", re.IGNORECASE)
NODE_DEATH_WAIT_S = 30.0  # the cluster marks a node dead after its missed health checks


class NodeDeaths:
    """Which Ray nodes died, asked once per collection of trial results. When a trial's connection
    broke, the cluster may not have marked its node dead yet: wait for that, but at most
    ``NODE_DEATH_WAIT_S`` in all, however many trials broke."""

    def __init__(self):
        self.dead = dead_nodes()
        self.deadline = None

    def died(self, node_id, error):
        if node_id in self.dead:
            return True
        if not CONNECTION_LOST.search(str(error)):
            return False
        if self.deadline is None:
            self.deadline = time.monotonic() + NODE_DEATH_WAIT_S
        while time.monotonic() < self.deadline:  # the worker's connection broke: its node?
            self.dead = dead_nodes()
            if node_id in self.dead:
                return True
            time.sleep(1.0)
        return False


def trial_error(error, node_id=None, deaths=None):
    """:func:`short_error`, or ``node lost: ...`` when the trial's Ray node died (its last report
    came from a node the cluster marks dead, or Ray's error says so)."""
    if error is None:
        return ""
    if node_id and (deaths or NodeDeaths()).died(node_id, error):
        return f"node lost: the Ray node running it ({node_id[:8]}) died"
    if NODE_LOST.search(str(error)):
        return "node lost: the Ray node running it died"
    return short_error(error)


def short_error(error):
    """The last line of an error that names an exception, cut to 300 characters."""
    if error is None:
        return ""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    named = [ln for ln in lines if re.match(r"[\w.]*(Error|Exception|Interrupt)\b:", ln)]
    picked = named or [ln for ln in lines if ("Error" in ln or "Exception" in ln) and ":" in ln]
    text = (picked or lines or [type(error).__name__])[-1]
    return text[:300]


def collect_trials(grid, settings, ended):
    """One row per trial, sorted by best validation score (errors last); and whether every
    expected trial has ended (False after an interruption). ``ended``: ids of the trials that
    ended (see :func:`_end_log_callback`)."""
    return rank_rows(trial_rows(grid, settings, ended), settings)


def trial_rows(grid, settings, ended):
    """One row per trial of the Ray Tune result ``grid``, in Ray's order."""
    bigger = settings["mode"] == "max"
    keys = list(settings["space"])
    trials = list(getattr(grid, "_experiment_analysis").trials)
    deaths = NodeDeaths()
    rows = []
    for trial, result in zip(trials, grid):
        df = result.metrics_dataframe
        last = result.metrics or {}
        best_valid = best_epoch = epochs_run = None
        if df is not None and METRIC in df.columns and df[METRIC].notna().any():
            scores = df[METRIC].astype(float)
            best_valid = float(scores.max() if bigger else scores.min())
            # on a tie the later epoch, as RecBole's early stopping keeps the later checkpoint
            idx = scores[scores == best_valid].index[-1]
            best_epoch = int(df.loc[idx, "epoch"]) + 1  # counted from 1, like every table here
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
            "params": _params_over(trial.config, keys),
            "best_valid": best_valid,
            "best_epoch": best_epoch,
            "epochs_run": epochs_run,
            "status": state,
            "error": trial_error(result.error, last.get("node_id"), deaths) if state == "error"
            else "",
            "path": str(result.path) if getattr(result, "path", None) else "",
            "node_id": str(last.get("node_id") or ""),
            "failures": int(getattr(trial, "num_failures", 0) or 0),
            "seconds": float(last["time_total_s"]) if last.get("time_total_s") is not None
            else None,
        })
    return rows


def rank_rows(rows, settings):
    """``rows`` sorted by best validation score (errors last), ranked; and whether every expected
    trial has ended."""
    bigger = settings["mode"] == "max"

    def order(row):  # best score first; on a tie, a trial that ran its budget, then the one drawn
        # first (the draw order of distinct configurations; Ray's trial order otherwise)
        draw = row.get("draw")
        first = (draw is None, draw or 0, row["trial_id"])
        if row["best_valid"] is None or row["status"] == "error":
            return (1, 0.0, True, *first)
        score = -row["best_valid"] if bigger else row["best_valid"]
        return (0, score, row["status"] != "finished", *first)

    rows.sort(key=order)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    complete = (len(rows) >= settings["expected_trials"]
                and all(r["status"] != "incomplete" for r in rows))
    return rows, complete


def best_row(rows):
    return next((r for r in rows if r["status"] != "error" and r["best_valid"] is not None), None)


def elapsed(start):
    return time.perf_counter() - start
