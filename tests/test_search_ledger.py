"""The search ledger (``models/<Model>/search_trials.jsonl``) and the progress note of a model not
finished yet; ``tests/test_compare.py`` runs a copied run folder that continues from the ledger."""

import pytest

from recbole_kgin import compare
from recbole_kgin.experiment import ledger

SETTINGS = {"model": "BPR", "dataset": "tiny", "space": {"learning_rate": ["choice", [0.1, 0.2]]},
            "valid_metric": "recall@20", "mode": "max", "max_t": 5, "scheduler": "fifo",
            "grace_period": 1, "reduction_factor": 2,
            "user_layer": {"data_path": "/a/data", "embedding_size": 8}}


def _row(trial_id, lr, score=0.5):
    return {"trial_id": trial_id, "params": {"learning_rate": lr}, "best_valid": score,
            "best_epoch": 2, "epochs_run": 3, "status": "finished", "error": "", "path": "",
            "node_id": "n", "failures": 0, "seconds": 1.0}


def test_settings_key_ignores_where_the_data_lie_but_not_what_they_are():
    moved = {**SETTINGS, "user_layer": {"data_path": "/b/elsewhere", "embedding_size": 8}}
    other = {**SETTINGS, "user_layer": {"data_path": "/a/data", "embedding_size": 16}}
    assert ledger.settings_key(moved) == ledger.settings_key(SETTINGS)
    assert ledger.settings_key(other) != ledger.settings_key(SETTINGS)
    assert ledger.settings_key({**SETTINGS, "max_t": 6}) != ledger.settings_key(SETTINGS)


def test_ledger_keeps_ended_trials_once_and_skips_other_settings_and_cut_lines(tmp_path):
    path = tmp_path / "search_trials.jsonl"
    ledger.append(path, SETTINGS, _row("t0", 0.1))
    ledger.append(path, SETTINGS, _row("t0", 0.1))  # the same trial again: one line
    ledger.append(path, SETTINGS, {**_row("t1", 0.2), "status": "error", "best_valid": None})
    ledger.append(path, {**SETTINGS, "max_t": 9}, _row("t2", 0.2))  # another budget
    with open(path, "a") as f:
        f.write('{"settings_key": "')  # a write cut short
    assert len(path.read_text().splitlines()) == 3
    rows = ledger.read(path, SETTINGS)
    assert list(rows) == [ledger.point_key({"learning_rate": 0.1})]
    assert rows[ledger.point_key({"learning_rate": 0.1})]["trial_id"] == "t0"
    assert ledger.read(tmp_path / "missing.jsonl", SETTINGS) == {}


def test_row_from_the_last_result_counts_epochs_from_one():
    last = {"best_valid_score": 0.3, "best_epoch": 4, "epochs_run": 9, "finished": True,
            "time_total_s": 2.5, "node_id": "abc"}
    row = ledger.row_from_result("t", {"learning_rate": 0.1}, last)
    assert (row["best_valid"], row["best_epoch"], row["epochs_run"], row["status"]) == \
        (0.3, 5, 9, "finished")
    assert ledger.row_from_result("t", {}, {**last, "finished": False})["status"] == "stopped"
    assert ledger.row_from_result("t", {}, None) is None


def test_progress_note_names_the_ended_trials_their_best_score_and_the_seed_runs(tmp_path):
    model_dir = tmp_path / "KGIN"
    config = {"valid_metric": "recall@20", "valid_metric_bigger": True}
    assert compare.progress_note(model_dir, [1, 2, 3], config) == ""
    ledger.append(model_dir / compare.SEARCH_LEDGER, SETTINGS, _row("t0", 0.1, 0.41))
    ledger.append(model_dir / compare.SEARCH_LEDGER, SETTINGS, _row("t1", 0.2, 0.5388))
    ledger.append(model_dir / compare.SEARCH_LEDGER, SETTINGS, _row("t1", 0.2, 0.5388))
    assert compare.progress_note(model_dir, [1, 2, 3], config) == \
        "; so far: 2 search trials ended, best validation recall@20 0.5388"
    (model_dir / "final").mkdir()
    (model_dir / "final" / "seed-2.json").write_text("{}")
    assert compare.progress_note(model_dir, [1, 2, 3], config).endswith(
        "best validation recall@20 0.5388, 1 of 3 seed runs done")
    assert ledger.progress(model_dir / compare.SEARCH_LEDGER, bigger=False) == (2, 0.41)


class _Trial:
    def __init__(self, trial_id, last_result, config=None):
        self.trial_id, self.last_result = trial_id, last_result
        self.config = config or {"learning_rate": 0.1}


LAST = {"best_valid_score": 0.4, "best_epoch": 1, "epochs_run": 3, "finished": True,
        "time_total_s": 2.0, "node_id": "n"}


def test_the_ledger_callback_survives_pickling_and_never_fails_a_trial(tmp_path, capsys):
    """Ray Tune pickles the callback into the experiment's state and calls the unpickled one on a
    restore; an exception in it would mark a finished trial as failed, so it must not raise."""
    import cloudpickle

    path = tmp_path / "search_trials.jsonl"
    restored = cloudpickle.loads(cloudpickle.dumps(
        ledger.callback(path, SETTINGS, lambda trial: dict(trial.config))))
    restored.on_trial_complete(0, [], _Trial("t0", LAST))
    assert list(ledger.read(path, SETTINGS).values())[0]["best_valid"] == 0.4
    restored.on_trial_complete(0, [], _Trial("t1", {"best_valid_score": 0.3}))  # no best_epoch
    err = capsys.readouterr().err
    assert "trial t1 not recorded (KeyError" in err and len(err.strip().splitlines()) == 1
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    ledger.callback(blocked / "ledger.jsonl", SETTINGS, lambda t: {}).on_trial_complete(
        0, [], _Trial("t2", LAST))  # an unwritable ledger: one line, no exception
    assert "trial t2 not recorded" in capsys.readouterr().err


def test_row_from_result_takes_the_argument_of_the_first_ledger_callback():
    """Experiments started by the first version pass (trial id, params, last result, bigger)."""
    row = ledger.row_from_result("t0", {"learning_rate": 0.1}, LAST, True)
    assert row == ledger.row_from_result("t0", {"learning_rate": 0.1}, LAST)
    assert row["best_epoch"] == 2 and row["status"] == "finished"
