"""Ray Tune search (``run_recbole_kgin.py tune``) on a tiny synthetic knowledge-graph dataset.

Ray is started once for the module (2 CPUs) and shut down at the end.
"""

import csv
import json
import math
import os
import shutil
import signal
from pathlib import Path

import pytest
import yaml

from synthetic import tiny_config, write_kg_dataset

ray = pytest.importorskip("ray")

from ray.tune import Callback  # noqa: E402

from recbole_kgin import tuning  # noqa: E402
from recbole_kgin.experiment.runner import build_dataset_blob, split_dataset  # noqa: E402
from recbole_kgin.experiment.search import user_layer  # noqa: E402
from recbole_kgin.errors import UsageError  # noqa: E402
from recbole_kgin.cli import main as cli_main  # noqa: E402
from recbole_kgin.quick_start import create_config, load_data  # noqa: E402
from recbole_kgin.tune_space import check_space, read_space  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune_data")
    write_kg_dataset(root, name="tiny")
    return root


def _config_file(folder, data_root, **extra):
    """Write the tiny dataset's settings as a YAML config file (passed with --config_files)."""
    settings = tiny_config(data_root, **extra)
    settings.pop("checkpoint_dir")
    path = Path(folder) / "tiny.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def _space(folder, text, name="space.yaml"):
    path = Path(folder) / name
    path.write_text(text)
    return path


def _argv(space, config_file, out, *extra, model="KGIN", dataset="tiny"):
    return ["--model", model, "--dataset", dataset, "--space", str(space),
            "--config_files", str(config_file), "--out", str(out), "--cpus-per-trial", "1",
            "--verbose", "0", *extra]


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _trial_scores(exp_dir):
    """Best reported validation score of every trial, read from Ray's own per-trial files."""
    scores = {}
    for progress in Path(exp_dir).glob("*/progress.csv"):
        rows = _read_csv(progress)
        values = [float(r["valid_score"]) for r in rows if r.get("valid_score")]
        if values:
            params = json.loads((progress.parent / "params.json").read_text())
            scores[rows[-1]["trial_id"]] = (max(values), params, len(rows))
    return scores


# ---------------------------------------------------------------------------------------------
# a complete search
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def search(ray_local, data_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune_search")
    space = _space(folder, "ind: {grid: [distance, cosine, mi, not_an_ind]}\n"
                           "learning_rate: {loguniform: [1e-3, 2e-2]}\n")
    config_file = _config_file(folder, data_root)
    out = folder / "out"
    rc = tuning.main(_argv(space, config_file, out, "--num-samples", "1", "--scheduler", "asha",
                           "--grace-period", "1", "--max-failures", "1", "--epochs=2",
                           "--eval_step=1", "--stopping_step=5"))
    return {"rc": rc, "exp": out / "KGIN-tiny", "config_file": config_file}


def test_space_of_choices_with_list_values_gets_distinct_trials(ray_local, data_root, tmp_path):
    """An all-choice space is searched with distinct configurations, list values included (CKE's
    reg_weights), and the table and best.yaml hold the values, not the wrapper."""
    space = _space(tmp_path, "reg_weights: {choice: [[1.0e-2, 1.0e-2], [1.0e-3, 1.0e-3]]}\n"
                             "learning_rate: {choice: [1.0e-3, 5.0e-3]}\n")
    config_file = _config_file(tmp_path, data_root)
    out = tmp_path / "out"
    rc = tuning.main(_argv(space, config_file, out, "--num-samples", "3", "--scheduler", "fifo",
                           "--epochs=1", "--eval_step=1", model="CKE"))
    assert rc == 0
    rows = _read_csv(out / "CKE-tiny" / "trials.csv")
    assert len(rows) == 3 and all(r["status"] != "error" for r in rows)
    assert len({(r["reg_weights"], r["learning_rate"]) for r in rows}) == 3
    best = yaml.safe_load((out / "CKE-tiny" / "best.yaml").read_text())
    assert best["reg_weights"] in ([1e-2, 1e-2], [1e-3, 1e-3]) and "configuration" not in best


def test_search_writes_table_best_yaml_and_test_metrics(search):
    assert search["rc"] == 0
    exp = search["exp"]
    rows = _read_csv(exp / "trials.csv")
    assert len(rows) == 4
    assert (exp / "trials.md").read_text().count("\n| ") == 4 + 1  # header + 4 trials

    scores = [float(r["valid Recall@20"]) for r in rows if r["status"] != "error"]
    assert len(scores) == 3
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert all(int(r["epochs_run"]) in (1, 2) for r in rows if r["status"] != "error")

    top = rows[0]
    best_yaml = yaml.safe_load((exp / "best.yaml").read_text())
    assert best_yaml["model"] == "KGIN" and best_yaml["dataset"] == "tiny"
    assert best_yaml["ind"] == top["ind"]
    assert best_yaml["learning_rate"] == float(top["learning_rate"])
    # the user's overrides and config file are kept
    assert best_yaml["epochs"] == 2 and best_yaml["eval_step"] == 1
    assert best_yaml["train_batch_size"] == 256

    best = json.loads((exp / "best_test.json").read_text())
    assert best["trial_id"] == top["trial_id"]
    assert best["params"] == {"ind": best_yaml["ind"], "learning_rate": best_yaml["learning_rate"]}
    assert best["search_best_valid"] == pytest.approx(float(top["valid Recall@20"]))
    assert set(best["test_result"]) >= {"recall@20", "ndcg@20"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in best["test_result"].values())
    # retraining best.yaml reproduces the selected trial's validation score
    assert best["best_valid_score"] == pytest.approx(best["search_best_valid"], abs=1e-6)


def test_best_trial_is_the_best_by_validation(search):
    exp = search["exp"]
    reported = _trial_scores(exp)
    assert len(reported) == 3  # the errored trial reported nothing
    best_id = max(reported, key=lambda t: reported[t][0])
    best_score, best_params, _ = reported[best_id]
    best_yaml = yaml.safe_load((exp / "best.yaml").read_text())
    chosen = json.loads((exp / "best_test.json").read_text())["trial_id"]
    # ties are possible on a tiny dataset: the chosen trial must have the best score
    assert reported[chosen][0] == pytest.approx(best_score)
    assert best_yaml["ind"] == reported[chosen][1]["ind"]
    assert best_yaml["learning_rate"] == reported[chosen][1]["learning_rate"]
    # the chosen trial ran its whole budget (ASHA never stops the best trial)
    assert _read_csv(exp / "trials.csv")[0]["status"] == "finished"


def test_failing_trial_is_recorded_and_search_completes(search):
    rows = _read_csv(search["exp"] / "trials.csv")
    errors = [r for r in rows if r["status"] == "error"]
    assert [r["ind"] for r in errors] == ["not_an_ind"]
    assert "ValueError" in errors[0]["error"] and "ind" in errors[0]["error"]
    assert errors[0]["valid Recall@20"] == ""
    assert rows[-1]["status"] == "error"  # errors sort last
    assert {r["status"] for r in rows if r["status"] != "error"} <= {"finished", "stopped"}
    assert (search["exp"] / "best_test.json").is_file()


def test_best_yaml_loads_through_create_config(search):
    best_yaml = search["exp"] / "best.yaml"
    chosen = yaml.safe_load(best_yaml.read_text())
    config = create_config(config_file_list=[str(best_yaml)])
    assert config["model"] == "KGIN"
    assert config["dataset"] == "tiny"
    assert config["ind"] == chosen["ind"]
    assert config["learning_rate"] == pytest.approx(chosen["learning_rate"])
    assert config["epochs"] == 2
    assert config["train_batch_size"] == 256


# ---------------------------------------------------------------------------------------------
# the dataset is built once; interruption and --resume
# ---------------------------------------------------------------------------------------------

def test_trial_split_equals_the_shared_pipeline_split(data_root, tmp_path):
    config_file = _config_file(tmp_path, data_root)
    config = create_config("KGIN", "tiny", config_file_list=[str(config_file)])
    _, *reference = load_data(config)
    settings = {"model": "KGIN", "dataset": "tiny",
                "user_layer": user_layer(config)}
    blob = build_dataset_blob(settings["model"], settings["dataset"], settings["user_layer"],
                              tmp_path / "exp" / "dataset")
    assert list((tmp_path / "exp" / "dataset").glob("*.pth"))
    _, *ours = split_dataset(config, blob)
    for ref, got in zip(reference, ours):
        for field in ("user_id", "item_id"):
            assert ref._dataset.inter_feat[field].tolist() == got._dataset.inter_feat[field].tolist()


def test_trials_of_a_general_model_get_the_kg_filtered_interactions(tmp_path):
    """kg_linked_items_only reaches the dataset a search builds, as in a single run."""
    data = tmp_path / "data"
    write_kg_dataset(data, name="holes", unlinked_items=10)
    config = create_config("BPR", "holes", config_dict=tiny_config(data, kg_linked_items_only=True))
    _, *reference = load_data(config)
    settings = {"model": "BPR", "dataset": "holes", "user_layer": user_layer(config)}
    blob = build_dataset_blob(settings["model"], settings["dataset"], settings["user_layer"],
                              tmp_path / "exp" / "dataset")
    dataset, *ours = split_dataset(config, blob)
    assert type(dataset).__name__ == "KnowledgeBasedDataset"
    for ref, got in zip(reference, ours):
        assert ref._dataset.inter_feat["item_id"].tolist() == got._dataset.inter_feat["item_id"].tolist()
    total = sum(len(part._dataset.inter_feat) for part in ours)
    inter_lines = (data / "holes" / "holes.inter").read_text().splitlines()[1:]
    assert total == sum(int(line.split("\t")[1][1:]) < 70 for line in inter_lines)


_INTERRUPTED = []


class _DeleteDataFiles(Callback):
    """Removes the dataset's text files once the driver has built the dataset."""

    def __init__(self, folder):
        self.folder = str(folder)

    def setup(self, **info):
        shutil.rmtree(self.folder, ignore_errors=True)


class _InterruptAfterFirstTrial(Callback):
    """Sends the signal Ray Tune treats like Ctrl-C, once, after the first finished trial."""

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not _INTERRUPTED:
            _INTERRUPTED.append(trial.trial_id)
            os.kill(os.getpid(), signal.SIGUSR1)


def test_interrupted_search_resumes_without_the_data_files(ray_local, tmp_path):
    data_root = tmp_path / "data"
    write_kg_dataset(data_root, name="tiny")
    space = _space(tmp_path, "learning_rate: {grid: [1e-3, 5e-3, 1e-2]}\n")
    config_file = _config_file(tmp_path, data_root)
    out = tmp_path / "out"
    argv = _argv(space, config_file, out, "--num-samples", "1", "--scheduler", "fifo",
                 "--name", "resumable", "--epochs=1", "--eval_step=1")

    first = tuning.run_search(
        tuning.parse_args(argv),
        callbacks=[_DeleteDataFiles(data_root / "tiny"), _InterruptAfterFirstTrial()],
        log=lambda *_: None,
    )
    assert _INTERRUPTED, "the search was not interrupted"
    assert not first["complete"]
    assert not (data_root / "tiny").exists()
    done_before = {r["trial_id"] for r in first["rows"] if r["status"] == "finished"}
    assert _INTERRUPTED[0] in done_before
    assert not (out / "resumable" / "best_test.json").exists()

    # a new search under the same name is refused; --resume continues it
    with pytest.raises(UsageError, match="--resume"):
        tuning.run_search(tuning.parse_args(argv), log=lambda *_: None)
    rc = tuning.main(["--resume", "--out", str(out), "--name", "resumable", "--verbose", "0"])
    assert rc == 0
    rows = _read_csv(out / "resumable" / "trials.csv")
    assert len(rows) == 3
    assert {r["status"] for r in rows} == {"finished"}  # all ran without the data files
    assert done_before <= {r["trial_id"] for r in rows}
    assert sorted(float(r["learning_rate"]) for r in rows) == [1e-3, 5e-3, 1e-2]
    # the trial finished before the interruption was not run again
    reported = _trial_scores(out / "resumable")
    assert reported[_INTERRUPTED[0]][2] == 2  # one validation + the final report
    assert (out / "resumable" / "best_test.json").is_file()


_MID_TRIAL = []


class _InterruptMidTrial(Callback):
    """Sends Ray Tune's Ctrl-C once, when a trial has reported its third epoch."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not _MID_TRIAL and result.get("epochs_run", 0) >= 3 and not result.get("finished"):
            _MID_TRIAL.append(trial.trial_id)
            os.kill(os.getpid(), signal.SIGUSR1)


def _reports(exp_dir, trial_id):
    """Every result a trial reported (Ray's result.json, one JSON line per report)."""
    lines = []
    for path in Path(exp_dir).glob(f"*{trial_id}*/result.json"):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


def test_a_trial_interrupted_mid_way_continues_from_its_checkpoint(ray_local, data_root,
                                                                  tmp_path):
    """Ctrl-C while a trial trains: ``--resume`` continues that trial from its last epoch's
    checkpoint (``trial_checkpoint_s: 0``) instead of its first epoch, and the search selects
    what an uninterrupted search selects, with the same validation scores."""
    space = _space(tmp_path, "learning_rate: {grid: [1e-3, 1e-2]}\n")
    config_file = _config_file(tmp_path, data_root)
    out = tmp_path / "out"
    common = ("--num-samples", "1", "--scheduler", "fifo", "--epochs=6", "--eval_step=1",
              "--stopping_step=50", "--trial_checkpoint_s=0")
    whole = tuning.run_search(tuning.parse_args(
        _argv(space, config_file, out, *common, "--name", "whole")), log=lambda *_: None)
    first = tuning.run_search(
        tuning.parse_args(_argv(space, config_file, out, *common, "--name", "cut")),
        callbacks=[_InterruptMidTrial()], log=lambda *_: None)
    assert _MID_TRIAL and not first["complete"]
    exp = out / "cut"
    assert list((exp / "partial").glob("search-*.pth")), "no checkpoint kept for the cut trial"
    assert tuning.main(["--resume", "--out", str(out), "--name", "cut", "--verbose", "0"]) == 0
    resumed = [r.get("resumed_from_epoch") for r in _reports(exp, _MID_TRIAL[0])]
    assert any(r is not None and r >= 3 for r in resumed), resumed
    best = {r["params"]["learning_rate"]: r["best_valid"] for r in whole["rows"]}
    rows = _read_csv(exp / "trials.csv")
    assert {float(r["learning_rate"]): float(r["valid Recall@20"]) for r in rows} == \
        pytest.approx(best)
    assert json.loads((exp / "best_test.json").read_text())["params"] == whole["best"]["params"]
    assert not (exp / "partial").exists()  # removed once the search is complete


def test_stale_search_without_ray_state_can_be_resumed(ray_local, data_root, tmp_path,
                                                       monkeypatch, capsys):
    """A search stopped before Ray Tune saved anything (e.g. killed while building the dataset)
    is neither new nor restorable by Ray; --resume starts it again with its recorded settings."""
    space = _space(tmp_path, "learning_rate: {choice: [1e-3, 1e-2]}\n")
    config_file = _config_file(tmp_path, data_root)
    out = tmp_path / "out"
    argv = _argv(space, config_file, out, "--num-samples", "2", "--scheduler", "fifo",
                 "--name", "stale", "--epochs=1", "--eval_step=1")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(tuning.search, "run_search", killed)
        with pytest.raises(KeyboardInterrupt):
            tuning.run_search(tuning.parse_args(argv), log=lambda *_: None)
    assert (out / "stale" / tuning.SETTINGS_FILE).is_file()
    assert not tuning.search.can_restore(out / "stale")
    with pytest.raises(UsageError, match="--resume"):   # not new: refused, pointing to --resume
        tuning.run_search(tuning.parse_args(argv), log=lambda *_: None)
    assert tuning.main(["--resume", "--out", str(out), "--name", "stale", "--verbose", "0"]) == 0
    assert "holds no Ray Tune state yet" in capsys.readouterr().out
    rows = _read_csv(out / "stale" / "trials.csv")
    assert len(rows) == 2 and {r["status"] for r in rows} == {"finished"}
    assert (out / "stale" / "best_test.json").is_file()



@pytest.mark.parametrize("line", ["learning_rate: {choice: [1e-3, 5e-3, 1e-2]}\n",
                                  "learning_rate: {loguniform: [1e-3, 1e-2]}\n"],
                         ids=["choice", "continuous"])
def test_search_without_its_ray_state_keeps_the_trials_of_its_ledger(ray_local, data_root,
                                                                     tmp_path, capsys, line):
    """A finished search folder copied without Ray Tune's files: ``--resume`` runs no trial again
    and selects what the search selected, for a space of choices and for a continuous one (whose
    configurations are drawn up front too)."""
    space = _space(tmp_path, line)
    config_file = _config_file(tmp_path, data_root)
    out = tmp_path / "out"
    argv = _argv(space, config_file, out, "--num-samples", "3", "--scheduler", "fifo",
                 "--name", "copied", "--epochs=1", "--eval_step=1")
    first = tuning.run_search(tuning.parse_args(argv), log=lambda *_: None)
    assert first["complete"] and len(first["rows"]) == 3
    exp = out / "copied"
    assert len((exp / tuning.LEDGER_FILE).read_text().splitlines()) == 3
    for path in exp.iterdir():  # what a copy of the results alone keeps
        if path.name not in (tuning.SETTINGS_FILE, tuning.LEDGER_FILE):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert not tuning.search.can_restore(exp)
    assert tuning.main(["--resume", "--out", str(out), "--name", "copied", "--verbose", "0"]) == 0
    assert "keeping the 3 trials of search_trials.jsonl" in capsys.readouterr().out
    assert not list(exp.glob("run_trial_*"))  # no trial ran again
    rows = _read_csv(exp / "trials.csv")
    assert sorted(float(r["learning_rate"]) for r in rows) == \
        sorted(r["params"]["learning_rate"] for r in first["rows"])
    if "choice" in line:
        assert sorted(float(r["learning_rate"]) for r in rows) == [1e-3, 5e-3, 1e-2]
    best = json.loads((exp / "best_test.json").read_text())
    assert best["params"] == first["best"]["params"]

# ---------------------------------------------------------------------------------------------
# rejected before Ray starts
# ---------------------------------------------------------------------------------------------

BAD_SPACES = {
    "unknown_key": ("not_a_config_key: {choice: [1, 2]}\n", "not_a_config_key"),
    "empty_choice": ("learning_rate: {choice: []}\n", "learning_rate"),
    "low_above_high": ("node_dropout_rate: {uniform: [0.5, 0.1]}\n", "node_dropout_rate"),
    "unknown_distribution": ("learning_rate: {normal: [0.0, 1.0]}\n", "learning_rate"),
    "not_yaml": ("learning_rate: {choice: [1e-3, 1e-2}\n", None),
    "not_a_distribution": ("learning_rate: 0.001\n", "learning_rate"),
    "two_distributions": ("learning_rate: {choice: [1], grid: [2]}\n", "learning_rate"),
    "loguniform_zero": ("sim_regularity: {loguniform: [0, 1e-3]}\n", "sim_regularity"),
    "randint_floats": ("context_hops: {randint: [1.5, 3]}\n", "context_hops"),
    "dataset_key": ("kg_reverse_r: {choice: [true, false]}\n", "kg_reverse_r"),
    "load_col": ("load_col: {choice: [null]}\n", "load_col"),
    "empty_file": ("", None),
    "a_list": ("- learning_rate\n", None),
}


@pytest.fixture
def no_search_started(monkeypatch):
    """Fails the test if the command gets as far as building the dataset or starting Ray."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the search started")

    monkeypatch.setattr(tuning, "build_dataset_blob", forbidden)
    monkeypatch.setattr(ray, "init", forbidden)


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_space_file_is_rejected_on_one_line(case, data_root, tmp_path, capsys,
                                                no_search_started):
    text, key = BAD_SPACES[case]
    space = _space(tmp_path, text, name=f"{case}.yaml")
    config_file = _config_file(tmp_path, data_root)
    rc = cli_main(["tune", *_argv(space, config_file, tmp_path / "out", "--epochs=1",
                                  "--eval_step=1")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert f"{case}.yaml" in err
    if key is not None:
        assert f"'{key}'" in err
    assert not (tmp_path / "out").exists()


def test_missing_optional_search_package_names_the_install(data_root, tmp_path, monkeypatch,
                                                           capsys, no_search_started):
    monkeypatch.setitem(__import__("sys").modules, "hyperopt", None)  # import fails
    space = _space(tmp_path, "learning_rate: {choice: [1e-3, 1e-2]}\n")
    config_file = _config_file(tmp_path, data_root)
    rc = cli_main(["tune", *_argv(space, config_file, tmp_path / "out", "--search", "hyperopt",
                                  "--epochs=1", "--eval_step=1")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "pip install hyperopt" in err and len(err.splitlines()) == 1


def test_grid_search_rejects_continuous_distributions(data_root, tmp_path, no_search_started):
    space = _space(tmp_path, "learning_rate: {uniform: [1e-3, 1e-2]}\n")
    config_file = _config_file(tmp_path, data_root)
    with pytest.raises(UsageError, match="learning_rate.*--search grid"):
        tuning.main(_argv(space, config_file, tmp_path / "out", "--search", "grid",
                          "--epochs=1", "--eval_step=1"))


def test_epoch_budget_without_validation_is_rejected(data_root, tmp_path, no_search_started):
    space = _space(tmp_path, "learning_rate: {choice: [1e-3, 1e-2]}\n")
    config_file = _config_file(tmp_path, data_root)
    with pytest.raises(UsageError, match="eval_step"):
        tuning.main(_argv(space, config_file, tmp_path / "out", "--epochs=2", "--eval_step=10"))


@pytest.mark.parametrize("model", ["KGIN", "KGAT", "CKE"])
def test_shipped_spaces_are_valid(model, data_root):
    path = PROJECT / "properties" / "tune" / f"{model}.yaml"
    space = read_space(path)
    config = create_config(model, "tiny", config_dict=tiny_config(data_root))
    check_space(space, path, config)
    assert len(space) >= 3
    if model == "KGIN":
        assert set(space) >= {"learning_rate", "node_dropout_rate", "mess_dropout_rate",
                              "context_hops", "n_factors", "ind", "sim_regularity"}
        assert set(space["ind"][1]) == {"cosine", "distance"}
