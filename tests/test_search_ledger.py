"""The search ledger (``models/<Model>/search_trials.jsonl``): a compare run folder copied to another
machine without Ray Tune's state keeps the trials that ended, and runs only the missing ones."""

import json
import shutil

import pytest
import yaml

from recbole_kgin import compare
from recbole_kgin.experiment import ledger
from synthetic import tiny_config, write_kg_dataset

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
    row = ledger.row_from_result("t", {"learning_rate": 0.1}, last, True)
    assert (row["best_valid"], row["best_epoch"], row["epochs_run"], row["status"]) == \
        (0.3, 5, 9, "finished")
    assert ledger.row_from_result("t", {}, {**last, "finished": False}, True)["status"] == "stopped"
    assert ledger.row_from_result("t", {}, None, True) is None


ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ledger")
    data = root / "data"
    write_kg_dataset(data)
    config = tiny_config(data)
    for key in ("epochs", "eval_step", "train_batch_size"):
        config.pop(key)
    config_file = root / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return root, config_file


def _argv(workspace, run, out):
    _, config_file = workspace
    return ["--dataset", "tiny", "--models", "BPR", "--out", str(out), "--run", run,
            "--config_files", str(config_file), "--epochs=3", "--trials", "3", "--seeds", "1"]


def _trial_dirs(model_dir):
    return sorted(p.name for p in (model_dir / "search").glob("run_trial_*"))


def test_copied_run_without_ray_state_runs_only_the_trials_missing_from_the_ledger(
        ray_local, workspace):
    root, _ = workspace
    first = root / "first"
    assert compare.main(_argv(workspace, "r", first)) == 0
    model_dir = first / "r" / "models" / "BPR"
    search = json.loads((model_dir / "search.json").read_text())
    lines = [json.loads(x) for x in (model_dir / compare.SEARCH_LEDGER).read_text().splitlines()]
    # one line per trial, the same trial and score as the search's own record
    logged = {t["trial_id"]: t for t in search["trial_log"]}
    assert sorted(e["row"]["trial_id"] for e in lines) == sorted(logged)
    for entry in lines:
        row = entry["row"]
        assert row["best_valid"] == pytest.approx(logged[row["trial_id"]]["best_valid"])
        assert row["epochs_run"] == logged[row["trial_id"]]["epochs_run"]

    # the folder on another machine: no Ray state, no seed runs, no row; one trial lost
    copy = root / "copy" / "r"
    shutil.copytree(first / "r", copy, ignore=shutil.ignore_patterns(".run.lock"))
    for name in ("search", "final"):
        shutil.rmtree(copy / "models" / "BPR" / name)
    (copy / "models" / "BPR" / "search.json").unlink()
    (copy / "models" / "BPR.json").unlink()
    ledger_file = copy / "models" / "BPR" / compare.SEARCH_LEDGER
    kept = ledger_file.read_text().splitlines()
    dropped = json.loads(kept.pop())["row"]
    ledger_file.write_text("\n".join(kept) + "\n")

    assert compare.main([*_argv(workspace, "r", root / "copy"), "--resume"]) == 0
    again = json.loads((copy / "models" / "BPR" / "search.json").read_text())
    assert len(_trial_dirs(copy / "models" / "BPR")) == 1  # only the dropped configuration ran
    assert again["trials"] == 3 and again["distinct_configurations"] == 3
    kept_ids = {json.loads(x)["row"]["trial_id"] for x in kept}
    assert kept_ids < {t["trial_id"] for t in again["trial_log"]}
    rerun = [t for t in again["trial_log"] if t["trial_id"] not in kept_ids]
    assert len(rerun) == 1
    # the same configuration on the same split and seed scores the same
    assert rerun[0]["best_valid"] == pytest.approx(logged[dropped["trial_id"]]["best_valid"])
    assert again["params"] == search["params"]
    assert again["search_best_valid"] == pytest.approx(search["search_best_valid"])
    assert len(ledger_file.read_text().splitlines()) == 3

    # everything in the ledger: a second copy runs no trial at all
    second = root / "second" / "r"
    shutil.copytree(copy, second, ignore=shutil.ignore_patterns(".run.lock"))
    for name in ("search", "final"):
        shutil.rmtree(second / "models" / "BPR" / name)
    (second / "models" / "BPR" / "search.json").unlink()
    (second / "models" / "BPR.json").unlink()
    assert compare.main([*_argv(workspace, "r", root / "second"), "--resume"]) == 0
    assert not (second / "models" / "BPR" / "search").exists() or \
        _trial_dirs(second / "models" / "BPR") == []
    assert json.loads((second / "models" / "BPR" / "search.json").read_text())["params"] == \
        search["params"]


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
