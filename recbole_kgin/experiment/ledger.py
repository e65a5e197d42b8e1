# -*- coding: utf-8 -*-
"""The ledger of a search: one JSON line per trial that ended, kept beside Ray Tune's experiment
folder (``compare`` writes ``models/<Model>/search_trials.jsonl``).

Ray Tune's own state continues a search on the machine that ran it (``Tuner.restore``). The ledger
continues it anywhere else: a run folder copied to another machine without ``search/`` (or whose
Ray state is lost) keeps the trials that ended, and only the configurations not in the ledger run
again. It holds a search whose configurations are drawn up front (``compare``'s and ``tune``'s
random search over any space without a ``grid`` key, continuous keys included:
:func:`recbole_kgin.tune_space.distinct_samples`); other searches (grid, hyperopt, optuna) are
continued by Ray's own state only. Each line names the configuration, the settings it ran under (:func:`settings_key`) and the trial's
row as :func:`recbole_kgin.experiment.search.collect_trials` builds it.

A trial is written when it ends (a Ray Tune callback, so a killed driver loses only the trials
still running) and again from the collected rows after the search (the same row; lines are
deduplicated by trial id). Trials that failed for good are not written: on another machine they
run again. A trial that was running when the search stopped continues from its own checkpoint
(``models/<Model>/partial/``, see :func:`recbole_kgin.experiment.runner.run_configuration`) where
that folder was kept, and from its first epoch elsewhere.
"""

import hashlib
import json
import sys
from pathlib import Path

FILE_NAME = "search_trials.jsonl"  # compare: models/<Model>/; tune: <experiment>/

# what a trial's result depends on besides its configuration; machine-specific paths excluded
_KEY_FIELDS = ("model", "dataset", "space", "valid_metric", "mode", "max_t", "scheduler",
               "grace_period", "reduction_factor")
_MACHINE_KEYS = ("data_path", "checkpoint_dir", "trial_checkpoint_s")  # not what a trial computes


def settings_key(settings):
    """A short digest of the settings a trial's result depends on (not where the data lie)."""
    layer = {k: v for k, v in (settings.get("user_layer") or {}).items() if k not in _MACHINE_KEYS}
    blob = json.dumps({**{k: settings.get(k) for k in _KEY_FIELDS}, "user_layer": layer},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def point_key(params):
    return json.dumps(params, sort_keys=True, default=str)


def row_from_result(trial_id, params, last, _unused=None):
    """A trial's row from its last Ray result (the runner reports its running best with every
    validation, so the last result is enough): the fields of ``collect_trials``' rows.
    ``_unused``: accepted and ignored. The first version of the ledger passed a fourth argument
    from its callback, and Ray Tune keeps that callback's code in the state of every experiment
    it started; a restored experiment calls this function of the installed version with it."""
    if last is None or last.get("best_valid_score") is None:
        return None
    finished = bool(last.get("finished"))
    return {
        "trial_id": trial_id, "params": params,
        "best_valid": float(last["best_valid_score"]),
        "best_epoch": int(last["best_epoch"]) + 1,  # counted from 1, like collect_trials
        "epochs_run": int(last["epochs_run"]),
        "status": "finished" if finished else "stopped", "error": "", "path": "",
        "node_id": str(last.get("node_id") or ""), "failures": 0,
        "seconds": float(last["time_total_s"]) if last.get("time_total_s") is not None else None,
    }


def _entries(path):
    """The ledger's lines as dicts with a ``row``; a missing file has none, and a line that is not
    such JSON (a write cut short) is skipped."""
    path = Path(path)
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("row"), dict):
            yield entry


def read(path, settings):
    """``{configuration key: row}`` of the ledger's trials run under ``settings`` (other lines,
    e.g. from an earlier space, are ignored). A missing file is an empty ledger; a line that is
    not JSON (a write cut short) is skipped."""
    key = settings_key(settings)
    return {point_key(e["row"]["params"]): e["row"] for e in _entries(path)
            if e.get("settings_key") == key}


def progress(path, bigger=True):
    """``(trials ended, best validation score or None)`` over every line of the ledger at
    ``path``, whatever settings they ran under (for a progress note: ``compare`` keeps one setting
    per model folder)."""
    ids, best = set(), None
    for entry in _entries(path):
        row = entry["row"]
        ids.add(row["trial_id"])
        score = row.get("best_valid")
        if score is not None and (best is None or (score > best if bigger else score < best)):
            best = score
    return len(ids), best


def append(path, settings, row):
    """One line for ``row`` (a trial that ended) unless its trial id is in the ledger already."""
    path = Path(path)
    if row is None or row.get("status") not in ("finished", "stopped") \
            or row.get("best_valid") is None:
        return
    if path.is_file() and any(r["trial_id"] == row["trial_id"]
                              for r in read(path, settings).values()):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"settings_key": settings_key(settings), "row": row}, default=str)
    with open(path, "a") as f:  # one short write per line: a cut leaves at most one bad line
        f.write(line + "\n")
        f.flush()


def record_trial(path, settings, params_of, trial):
    """What the callback does when a trial ends: append its row. Never raises (the ledger is a
    copy of what Ray keeps, and an exception in a callback would mark the trial as failed); a
    failure is one line on stderr. Ray Tune pickles the callback into the experiment's state and a
    restored experiment runs that pickled code against the installed version of this module, so
    the callback only calls this function, whose signature stays as it is."""
    try:
        append(path, settings, row_from_result(trial.trial_id, params_of(trial),
                                               trial.last_result))
    except Exception as err:  # noqa: BLE001
        print(f"search ledger {path}: trial {getattr(trial, 'trial_id', '?')} not recorded "
              f"({type(err).__name__}: {err})", file=sys.stderr, flush=True)


def callback(path, settings, params_of):
    """A Ray Tune callback that appends every trial that completes (or that a scheduler stops) to
    the ledger at ``path`` (:func:`record_trial`). ``params_of(trial)``: the trial's parameters
    over the space's keys."""
    from ray.tune import Callback

    class TrialLedger(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            record_trial(path, settings, params_of, trial)

    return TrialLedger()
