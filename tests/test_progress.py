"""Console: progress lines of searches and seed runs, and the silenced third-party notices."""

import io
import logging
import warnings
from types import SimpleNamespace

from recbole_kgin import quiet
from recbole_kgin.experiment import progress


def test_eta_and_lines():
    assert progress.eta(0, 8, 10.0) is None
    assert progress.eta(2, 8, 60.0) == 180.0
    assert progress.eta(8, 8, 60.0) == 0.0
    line = progress.progress_line("KGIN search", "trials", 2, 8, 125.0, 0.41234, "Recall@20")
    assert line == ("KGIN search: 2/8 trials, best Recall@20 0.4123, 2m05s elapsed, "
                    "about 6m15s left")
    bar = progress.progress_line("KGIN", "seed runs", 1, 4, 3700.0, None, "Recall@20", bar=True)
    assert bar.startswith("KGIN [#####...............] 1/4 seed runs, 1h01m elapsed")
    assert "about 3h05m left" in bar
    assert progress.trial_line("KGIN search", "trials", 3, 8, 0.2, 0.3, "Recall@20") == (
        "KGIN search: trial 3/8 finished, Recall@20 0.2000 (best so far 0.3000)")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_callback_prints_a_line_per_trial_and_a_progress_line_per_interval():
    out, clock = io.StringIO(), Clock()
    cb = progress.callback("BPR search", 3, "Recall@20", True, out=out, interval=60, clock=clock)
    trial = [SimpleNamespace(trial_id=f"t{k}") for k in range(3)]
    cb.on_trial_result(0, trial, trial[0], {"valid_score": 0.1, "best_valid_score": 0.1})
    cb.on_trial_result(1, trial, trial[0], {"valid_score": 0.05, "best_valid_score": 0.1})
    cb.on_trial_complete(2, trial, trial[0])
    clock.now = 30.0
    cb.on_step_end(3, trial)                       # within the interval: nothing
    cb.on_trial_result(4, trial, trial[1], {"valid_score": 0.3, "best_valid_score": 0.3})
    cb.on_trial_error(5, trial, trial[2])
    clock.now = 61.0
    cb.on_step_end(6, trial)
    cb.on_trial_complete(7, trial, trial[1])
    lines = out.getvalue().splitlines()
    assert lines == [
        "BPR search: trial 1/3 finished, Recall@20 0.1000 (best so far 0.1000)",
        "BPR search: trial 2/3 failed, no validation (best so far 0.1000)",
        "BPR search: 2/3 trials, best Recall@20 0.1000, 1m01s elapsed, about 30s left",
        "BPR search: trial 3/3 finished, Recall@20 0.3000 (best so far 0.3000)",
    ]


def test_smaller_is_better_keeps_the_lowest():
    out = io.StringIO()
    cb = progress.callback("x", 2, "MAE", False, out=out, clock=Clock())
    trial = [SimpleNamespace(trial_id="a"), SimpleNamespace(trial_id="b")]
    cb.on_trial_result(0, trial, trial[0], {"best_valid_score": 0.5})
    cb.on_trial_complete(0, trial, trial[0])
    cb.on_trial_result(0, trial, trial[1], {"best_valid_score": 0.7})
    cb.on_trial_complete(0, trial, trial[1])
    assert out.getvalue().splitlines()[-1].endswith("MAE 0.7000 (best so far 0.5000)")


def _warn_like_recbole():
    warnings.warn_explicit("A value is trying to be set on a copy of a DataFrame or Series "
                           "through chained assignment using an inplace method.", FutureWarning,
                           "dataset.py", 648, module="recbole.data.dataset.dataset")


def test_quiet_silences_recbole_and_ray_notices(monkeypatch):
    monkeypatch.delenv(quiet.SWITCH, raising=False)
    logger = logging.getLogger(quiet.RAY_LOGGERS[0])
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet.install()
        _warn_like_recbole()
        warnings.warn("our own warning", UserWarning)
    assert [str(w.message) for w in seen] == ["our own warning"]
    assert logger.level == logging.ERROR
    assert "ignore::FutureWarning" in quiet.worker_env()["PYTHONWARNINGS"]


def test_switch_shows_them_again(monkeypatch):
    monkeypatch.setenv(quiet.SWITCH, "1")
    logger = logging.getLogger(quiet.RAY_LOGGERS[0])
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet.install()
        _warn_like_recbole()
    assert len(seen) == 1 and seen[0].category is FutureWarning
    assert logger.level == logging.NOTSET
    assert quiet.worker_env() == {quiet.SWITCH: "1"}


def test_time_left_before_the_first_run_ends_counts_epochs():
    # 2 runs, cap 10 epochs, both 5 epochs along after 60 s: half done, at most 60 s left
    assert progress.eta(0, 2, 60.0, 1.0) == 60.0
    out, clock = io.StringIO(), Clock()
    cb = progress.callback("KGIN search", 2, "Recall@20", True, out=out, interval=60,
                           clock=clock, epochs=10)
    trial = [SimpleNamespace(trial_id="a"), SimpleNamespace(trial_id="b")]
    for t in trial:
        cb.on_trial_result(0, trial, t, {"best_valid_score": 0.2, "epochs_run": 5})
    clock.now = 60.0
    cb.on_step_end(1, trial)
    assert out.getvalue().splitlines() == [
        "KGIN search: 0/2 trials, 1m00s elapsed, about 1m00s left"]  # best: of finished runs


def test_a_restored_search_counts_the_runs_that_ended_before():
    """After ``--resume`` the callback comes back as it was pickled at the start: the trials that
    had ended count as done (their best score too), and the time left uses the rate since then."""
    out, clock = io.StringIO(), Clock()
    cb = progress.callback("KGIN search", 8, "Recall@20", True, out=out, interval=60, clock=clock)
    clock.now = 5000.0  # restored much later
    trials = [SimpleNamespace(trial_id=f"t{k}", status="TERMINATED",
                              last_result={"best_valid_score": s})
              for k, s in enumerate((0.0197, 0.0194, 0.0183, 0.0138))]
    trials += [SimpleNamespace(trial_id=f"t{k}", status="RUNNING", last_result={})
               for k in range(4, 8)]
    cb.on_step_end(0, trials)  # catches up: no line yet (the interval restarts)
    clock.now = 5060.0
    cb.on_step_end(1, trials)
    cb.on_trial_result(2, trials, trials[4], {"best_valid_score": 0.02})
    trials[4].status = "TERMINATED"
    cb.on_trial_complete(3, trials, trials[4])
    clock.now = 5120.0
    cb.on_step_end(4, trials)  # the completed trial is not counted twice
    assert out.getvalue().splitlines() == [
        "KGIN search: 4/8 trials (4 before the resume), best Recall@20 0.0197, 1m00s elapsed, "
        "time left unknown",
        "KGIN search: trial 5/8 finished, Recall@20 0.0200 (best so far 0.0200)",
        "KGIN search: 5/8 trials (4 before the resume), best Recall@20 0.0200, 2m00s elapsed, "
        "about 6m00s left",
    ]
