"""``run_recbole_kgin.py compare`` on tiny synthetic data: equal budgets, search, seeds, significance,
tables, failures, interruption and continuation, the same split for every model."""

import csv
import json
import math
import os
import signal

import numpy as np
import pytest
import yaml

from recbole_kgin import cli, compare, quick_start
from recbole_kgin.errors import UsageError
from recbole_kgin.experiment import files, protocol, report, stats
from recbole_kgin.experiment.runner import split_fingerprint, trial_params
from synthetic import tiny_config, write_kg_dataset

ray = pytest.importorskip("ray")

MODELS = ["KGIN", "BPR", "Pop", "ItemKNN", "EASE"]
METRIC_KEYS = [f"{m}@{k}" for k in (10, 20, 50) for m in ("recall", "ndcg", "hit", "precision")]


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    data = root / "data"
    write_kg_dataset(data)
    config = tiny_config(data)
    for key in ("epochs", "eval_step", "train_batch_size"):  # the comparison's budget sets them
        config.pop(key)
    config_file = root / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return root, config_file


def _argv(workspace, models=MODELS, run="r", *extra):
    root, config_file = workspace
    return ["--dataset", "tiny", "--models", ",".join(models), "--out", str(root / "out"),
            "--run", run, "--config_files", str(config_file), "--epochs=2", *extra]


@pytest.fixture(scope="module")
def first_run(ray_local, workspace, tmp_path_factory):
    """The acceptance command on tiny data: 5 models, 2 trials, 2 seeds, 2 epochs."""
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        code = cli.main(["compare", *_argv(workspace, MODELS, "r", "--trials", "2", "--seeds", "2")])
    assert list(cwd.iterdir()) == []  # no log/, log_tensorboard/ or saved/ in the working directory
    return code, workspace[0] / "out" / "r"


def _csv(path):
    with open(path, newline="") as handle:
        return {row["model"]: row for row in csv.DictReader(handle)}


def test_table_csv_has_every_column_and_numeric_rows(first_run):
    code, run_dir = first_run
    assert code == 0
    rows = _csv(run_dir / "table.csv")
    assert list(rows) == MODELS
    header = list(next(iter(rows.values())))
    for column in ("model", "status", "trials", "seeds", "epochs_run", "best_epoch", "converged",
                   "p_value"):
        assert column in header
    for key in METRIC_KEYS:
        assert key in header and f"{key}_std" in header
    for name, row in rows.items():
        assert row["status"] == "ok"
        # deterministic models run their selected configuration once
        assert row["seeds"] == ("1" if name in protocol.DETERMINISTIC else "2")
        for key in METRIC_KEYS:
            assert math.isfinite(float(row[key])) and float(row[f"{key}_std"]) >= 0
        assert 1 <= float(row["epochs_run"]) <= 2
    assert rows["KGIN"]["p_value"] == ""  # the reference
    assert 0.0 <= float(rows["BPR"]["p_value"]) <= 1.0
    for name in ("KGIN", "BPR"):
        assert rows[name]["trials"] == "2"  # the same search budget for every model with a space
    assert rows["Pop"]["trials"] == "1"  # Pop has no hyperparameter: its settings run once
    for name in ("png", "md", "json"):
        assert any(p.suffix == f".{name}" for p in run_dir.iterdir())
    assert not list(run_dir.rglob(".*.tmp*"))


def test_means_and_stds_are_those_of_the_seed_runs(first_run):
    _, run_dir = first_run
    rows = _csv(run_dir / "table.csv")
    for name in MODELS:
        if name in protocol.DETERMINISTIC:
            assert not (run_dir / "models" / name / "final" / "seed-2021.json").exists()
            continue
        seeds = [json.loads((run_dir / "models" / name / "final" / f"seed-{s}.json").read_text())
                 for s in (2020, 2021)]
        assert [r["seed"] for r in seeds] == [2020, 2021]
        for key in ("recall@20", "ndcg@20"):
            values = [r["test_result"][key] for r in seeds]
            assert float(rows[name][key]) == pytest.approx(np.mean(values), abs=1e-12)
            assert float(rows[name][f"{key}_std"]) == pytest.approx(np.std(values, ddof=1),
                                                                     abs=1e-12)
        # the split is fixed, the seed is not: both runs saw the same pairs
        assert seeds[0]["split"] == seeds[1]["split"]


def test_p_value_is_scipys_over_seed_averaged_per_user_metrics(first_run):
    from scipy.stats import wilcoxon

    _, run_dir = first_run
    rows = _csv(run_dir / "table.csv")
    ref = np.load(run_dir / "per_user" / "KGIN.npz")
    bpr = np.load(run_dir / "per_user" / "BPR.npz")
    assert list(ref["users"]) == list(bpr["users"])
    # the arrays are the per-user metrics of the seed runs, averaged
    runs = [np.load(run_dir / "models" / "BPR" / "final" / f"seed-{s}.npz") for s in (2020, 2021)]
    by_user = [dict(zip(r["users"], r["recall@20"])) for r in runs]
    assert np.allclose(bpr["recall@20_mean"], [(by_user[0][u] + by_user[1][u]) / 2
                                                for u in bpr["users"]])
    # ... whose mean is the table's Recall@20 of each seed
    table = json.loads((run_dir / "models" / "BPR" / "final" / "seed-2020.json").read_text())
    assert np.mean(runs[0]["recall@20"]) == pytest.approx(table["test_result"]["recall@20"], abs=1e-4)
    expected = wilcoxon(ref["recall@20_mean"], bpr["recall@20_mean"]).pvalue
    assert float(rows["BPR"]["p_value"]) == pytest.approx(expected, rel=1e-9)


def test_every_trial_and_run_had_the_same_budget(first_run):
    _, run_dir = first_run
    summary = json.loads((run_dir / "results.json").read_text())
    assert summary["budget"] == {"epochs": 2, "patience_epochs": 10, "eval_step": 1,
                                 "train_batch_size": 1024, "trials": 2, "seeds": 2}
    for name in ("KGIN", "BPR", "ItemKNN", "EASE"):
        search = json.loads((run_dir / "models" / name / "search.json").read_text())
        assert search["trials"] == 2
        params = list((run_dir / "models" / name / "search").glob("*/params.json"))
        assert len(params) == 2
    # EASE's space is all choices: its two trials are two different configurations
    ease = [trial_params(json.loads(p.read_text()))["reg_weight"]
            for p in (run_dir / "models" / "EASE" / "search").glob("*/params.json")]
    assert len(set(ease)) == 2
    for name in ("KGIN", "BPR"):
        progress = list((run_dir / "models" / name / "final" / "ray").glob("*/params.json"))
        assert len(progress) == 2
    text = (run_dir / "table.md").read_text()
    assert "at most 2 epochs" in text and "2 trials per model" in text
    assert "Wilcoxon" in text and "seeds 2020, 2021" in text


def test_every_model_saw_the_same_split(first_run, workspace):
    _, run_dir = first_run
    summary = json.loads((run_dir / "results.json").read_text())
    assert summary["split_check"]["same_split"] is True
    assert summary["protocol"]["kg_linked_items_only"] is True  # KG and non-KG models mixed
    _, config_file = workspace
    config = quick_start.create_config("BPR", "tiny", [str(config_file)],
                                       {"kg_linked_items_only": True})
    _, *loaders = quick_start.load_data(config)
    assert split_fingerprint(*loaders) == summary["models"][1]["split"]


def test_second_invocation_keeps_finished_models(first_run, workspace, monkeypatch):
    _, run_dir = first_run
    before = (run_dir / "models" / "KGIN.json").read_text()
    calls = []
    monkeypatch.setattr(compare, "run_model", lambda name, *a, **k: calls.append(name))
    assert compare.main(_argv(workspace, MODELS, "r", "--trials", "2", "--seeds", "2")) == 0
    assert calls == []
    assert (run_dir / "models" / "KGIN.json").read_text() == before
    # other settings in the same run directory are refused, before anything runs
    with pytest.raises(UsageError, match="other settings"):
        compare.main(_argv(workspace, MODELS, "r", "--trials", "2", "--seeds", "2",
                           "--learning_rate=0.5"))
    assert calls == []


def test_published_copy_without_seed_files_continues_with_the_same_tables(first_run, workspace,
                                                                          monkeypatch):
    """A run folder published without its seed runs' files (``models/<M>/final/``) is continued
    by ``--resume``: the finished rows keep their per-user tables and statistics."""
    import shutil

    _, run_dir = first_run
    copy = run_dir.parent / "published"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns(".run.lock"))
    for final in copy.glob("models/*/final"):
        shutil.rmtree(final)
    calls = []
    monkeypatch.setattr(compare, "run_model", lambda name, *a, **k: calls.append(name))
    assert compare.main(_argv(workspace, MODELS, "published", "--trials", "2", "--seeds", "2",
                              "--resume")) == 0
    assert calls == []
    for name in MODELS:
        with np.load(run_dir / "per_user" / f"{name}.npz") as a, \
                np.load(copy / "per_user" / f"{name}.npz") as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                assert np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f"), (name, key)
    first, again = _csv(run_dir / "table.csv"), _csv(copy / "table.csv")
    assert first == again


def _trial_dirs(model_dir):
    return sorted(p.name for p in (model_dir / "search").glob("run_trial_*"))


def _strip_to_ledger(run_dir, name):
    """What a copy on another machine holds of an unfinished model: settings and search ledger."""
    import shutil

    for sub in ("search", "final"):
        shutil.rmtree(run_dir / "models" / name / sub, ignore_errors=True)
    (run_dir / "models" / name / "search.json").unlink()
    (run_dir / "models" / f"{name}.json").unlink()


def test_copied_run_without_ray_state_runs_only_the_trials_missing_from_the_ledger(
        ray_local, workspace):
    import shutil

    argv = lambda run: _argv(workspace, ["BPR"], run, "--trials", "3", "--seeds", "1")  # noqa: E731
    out = workspace[0] / "out"
    assert compare.main(argv("ledger")) == 0
    model_dir = out / "ledger" / "models" / "BPR"
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
    copy = out / "ledger-copy"
    shutil.copytree(out / "ledger", copy, ignore=shutil.ignore_patterns(".run.lock"))
    _strip_to_ledger(copy, "BPR")
    ledger_file = copy / "models" / "BPR" / compare.SEARCH_LEDGER
    kept = ledger_file.read_text().splitlines()
    dropped = json.loads(kept.pop())["row"]
    ledger_file.write_text("\n".join(kept) + "\n")
    assert compare.main([*argv("ledger-copy"), "--resume"]) == 0
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
    second = out / "ledger-second"
    shutil.copytree(copy, second, ignore=shutil.ignore_patterns(".run.lock"))
    _strip_to_ledger(second, "BPR")
    assert compare.main([*argv("ledger-second"), "--resume"]) == 0
    assert _trial_dirs(second / "models" / "BPR") == []
    assert json.loads((second / "models" / "BPR" / "search.json").read_text())["params"] == \
        search["params"]


def test_failing_model_gets_a_failed_row_and_the_others_finish(ray_local, workspace):
    # a negative TransR size breaks CKE alone (the other model has no such key)
    code = compare.main(_argv(workspace, ["BPR", "CKE"], "fail", "--kg_embedding_size=-1"))
    assert code == 1
    run_dir = workspace[0] / "out" / "fail"
    rows = _csv(run_dir / "table.csv")
    assert rows["BPR"]["status"] == "ok" and math.isfinite(float(rows["BPR"]["recall@20"]))
    assert rows["CKE"]["status"] == "failed" and rows["CKE"]["recall@20"] == ""
    assert "negative dimension" in rows["CKE"]["error"] or "Error" in rows["CKE"]["error"]
    assert rows["CKE"]["p_value"] == ""
    assert "failed: " in (run_dir / "table.md").read_text()
    # running the command again keeps BPR and starts CKE from scratch (no stale search state)
    marker = run_dir / "models" / "CKE" / "stale"
    marker.write_text("")
    assert compare.main(_argv(workspace, ["BPR", "CKE"], "fail", "--kg_embedding_size=-1")) == 1
    assert not marker.exists()
    assert _csv(run_dir / "table.csv")["BPR"] == rows["BPR"]


def test_model_whose_matrices_fit_no_node_is_refused_with_the_numbers(ray_local, workspace,
                                                                       monkeypatch):
    monkeypatch.setitem(protocol.ITEM_ITEM_MEMORY, "EASE", (10**12, "a test's estimate"))
    assert compare.main(_argv(workspace, ["Pop", "EASE"], "memory", "--trials", "2")) == 1
    rows = _csv(workspace[0] / "out" / "memory" / "table.csv")
    assert rows["Pop"]["status"] == "ok" and rows["EASE"]["status"] == "failed"
    assert "needs about" in rows["EASE"]["error"] and "GiB" in rows["EASE"]["error"]
    assert "a test's estimate" in rows["EASE"]["error"]


def test_trial_memory():
    need, reason = protocol.trial_memory("EASE", 1000)
    assert need == 32 * 1000**2 + 2**30 and "1,000 items" in reason
    assert protocol.trial_memory("BPR", 1000) == (None, None)


def test_short_error_names_the_exception_line():
    from recbole_kgin.experiment.search import short_error

    text = ("Traceback (most recent call last):\nray.exceptions.OutOfMemoryError: Task was killed "
            "due to the node running low on memory.\nRefer to the documentation on how to address "
            "the out of memory issue: https://docs.ray.io/x. Set max_restarts: see Error docs")
    assert short_error(text).startswith("ray.exceptions.OutOfMemoryError: Task was killed")


def test_traditional_models_run_with_any_eval_step(tmp_path, workspace, monkeypatch):
    """RecBole's TraditionalTrainer forces one epoch; with eval_step > 1 it used to skip
    validation and the test then looked for a checkpoint that was never written."""
    monkeypatch.chdir(tmp_path)
    _, config_file = workspace
    for name in ("Pop", "ItemKNN", "EASE"):
        result = quick_start.run_recbole_kgin(
            name, "tiny", [str(config_file)],
            {"epochs": 5, "eval_step": 3, "checkpoint_dir": str(tmp_path / "saved")})
        assert result["epochs_run"] == 1 and result["best_epoch"] == 0
        assert math.isfinite(result["test_result"]["recall@20"])


def test_ctrl_c_keeps_finished_models_and_lists_the_missing(ray_local, workspace, monkeypatch):
    original = compare.run_model

    seen = {}

    def interrupt_second(name, *args, **kwargs):
        if name == "Pop":
            # what a SIGKILL now would leave: the table already lists Pop and EASE as not run
            seen.update(_csv(workspace[0] / "out" / "ctrlc" / "table.csv"))
            raise KeyboardInterrupt
        return original(name, *args, **kwargs)

    monkeypatch.setattr(compare, "run_model", interrupt_second)
    assert cli.main(["compare", *_argv(workspace, ["BPR", "Pop", "EASE"], "ctrlc")]) == 130
    run_dir = workspace[0] / "out" / "ctrlc"
    assert json.loads((run_dir / "models" / "BPR.json").read_text())["status"] == "ok"
    rows = _csv(run_dir / "table.csv")
    assert rows["BPR"]["status"] == "ok"
    assert rows["Pop"]["status"] == rows["EASE"]["status"] == "not run"
    assert "not run: interrupted" in (run_dir / "table.md").read_text()
    assert [seen[m]["status"] for m in ("BPR", "Pop", "EASE")] == ["ok", "not run", "not run"]


@pytest.mark.parametrize("extra, message", [
    (["--models", "BPR,LightGcn"], "unknown model 'LightGcn'.*did you mean LightGCN"),
    (["--models", "BPR,SASRec"], "SEQUENTIAL"),
    (["--models", "BPR,BPR"], "listed twice"),
    (["--models", "BPR,RaCT"], "RaCT is refused"),
    (["--epochs=0"], "--epochs must be an integer >= 1"),
    (["--epochs=abc"], "--epochs=abc: expected an integer"),
    (["--seeds", "0"], "--seeds must be an integer >= 1"),
    (["--patience", "3", "--eval_step=2"], "multiple of eval_step"),
    (["--dataset", "no-such-data"], "dataset 'no-such-data' not found"),
    (["--model=KGIN"], "not an override of compare"),
])
def test_bad_compare_input_is_one_line_and_writes_nothing(workspace, capsys, extra, message):
    root, config_file = workspace
    argv = ["--dataset", "tiny", "--models", "BPR,Pop", "--out", str(root / "bad-out"),
            "--config_files", str(config_file), *extra]
    # later flags win in argparse: the case's --dataset / --models replace the defaults above
    with pytest.raises(UsageError, match=message):
        compare.main(argv)
    assert cli.main(["compare", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not (root / "bad-out").exists()


def test_spaces_may_not_search_the_budget(workspace, tmp_path, monkeypatch):
    space = tmp_path / "BPR.yaml"
    space.write_text("epochs: {choice: [1, 2]}\n")
    monkeypatch.setattr(protocol, "space_file", lambda model, properties: space)
    with pytest.raises(UsageError, match="'epochs' is part of the equal budget"):
        compare.main(_argv(workspace, ["BPR"], "space", "--trials", "2"))


# ---------------------------------------------------------------------------------------------
# protocol and report units


def test_paired_test_equals_scipy_on_a_crafted_case():
    from scipy.stats import wilcoxon

    ref = {f"u{i}": v for i, v in enumerate([0.5, 0.2, 0.9, 0.4, 0.7, 0.3, 0.8, 0.6])}
    other = {f"u{i}": v for i, v in enumerate([0.4, 0.25, 0.5, 0.1, 0.65, 0.05, 0.3, 0.55])}
    other["extra"] = 1.0  # users only one model has are left out
    p, n = stats.paired_test(ref, other)
    assert n == 8
    assert p == pytest.approx(wilcoxon(list(ref.values()), [other[u] for u in ref]).pvalue)
    assert stats.paired_test(ref, dict(ref)) == (1.0, 8)


def test_mean_std_aggregation():
    records = [{"test_result": {"recall@20": v}} for v in (0.1, 0.2, 0.4)]
    out = protocol.aggregate(records, ["recall@20"])
    assert out["recall@20"] == pytest.approx(0.7 / 3)
    assert out["recall@20_std"] == pytest.approx(np.std([0.1, 0.2, 0.4], ddof=1))
    assert protocol.mean_std([0.3]) == (0.3, 0.0)


def test_convergence_flag():
    history = [{"epoch": e, "score": s} for e, s in enumerate([0.1, 0.2, 0.3, 0.4])]
    assert protocol.converged(history, 4, 4, 2) is False  # at the cap, still improving
    flat = [{"epoch": e, "score": s} for e, s in enumerate([0.1, 0.4, 0.3, 0.3, 0.3])]
    assert protocol.converged(flat, 5, 5, 3) is True  # best 3 epochs before the cap
    assert protocol.converged(history, 3, 10, 2) is True  # stopped early
    tie = [{"epoch": e, "score": s} for e, s in enumerate([0.1, 0.4, 0.4])]
    assert protocol.converged(tie, 3, 3, 2) is False  # a tie counts as the later epoch


def test_split_seed_fixes_the_split_while_the_seed_varies(workspace):
    _, config_file = workspace
    prints = {}
    for seed, split_seed in ((1, 5), (2, 5), (2, None)):
        config = quick_start.create_config("BPR", "tiny", [str(config_file)],
                                           {"seed": seed, "split_seed": split_seed})
        prints[(seed, split_seed)] = split_fingerprint(*quick_start.load_data(config)[1:])
    assert prints[(1, 5)] == prints[(2, 5)]
    assert prints[(2, None)] != prints[(2, 5)]


def test_test_selected_split_is_labelled():
    summary = {"budget": protocol.Budget(5, 2).as_dict(), "search": {}, "valid_metric": "Recall@20",
               "seeds": [1], "split_seed": 1, "test_selected": True}
    assert any("test-selected" in line for line in report.budget_lines(summary))


def test_dataset_converted_with_the_papers_protocol_is_test_selected(tmp_path):
    folder = tmp_path / "paperlike"
    folder.mkdir()
    config = {"data_path": str(tmp_path), "dataset": "paperlike"}
    assert compare._test_selected(config) is False
    (folder / "stats.json").write_text(json.dumps({"protocol": "paper", "test_selected": True}))
    assert compare._test_selected(config) is True


class _FakeTrainer:
    """What fit_and_test reads from a trainer: a validation history with a tie."""

    def __init__(self, scores):
        self.valid_history = [(e, s, {"recall@20": s}) for e, s in enumerate(scores)]
        self.epoch_seconds = [1.0] * len(scores)
        self.saved_model_file = None

    def fit(self, *args, **kwargs):
        return max(s for _, s, _ in self.valid_history), {}

    def evaluate(self, *args, **kwargs):
        return {}


def test_best_epoch_on_a_tie_is_the_later_one_like_recboles_checkpoint():
    import torch

    from types import SimpleNamespace

    config = {"show_progress": False, "valid_metric_bigger": True, "model": "X", "dataset": "d",
              "valid_metric": "Recall@20", "topk": [10]}
    train_data = SimpleNamespace(_dataset=SimpleNamespace(item_num=100))
    result = quick_start.fit_and_test(config, torch.nn.Linear(1, 1), _FakeTrainer([0.1, 0.3, 0.3, 0.2]),
                                      train_data, None, None, saved=False, evaluate_test=False)
    assert result["best_epoch"] == 2


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "table.md"
    files.write_atomic(target, "old\n")
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    from recbole_kgin.errors import OutputError

    with pytest.raises(OutputError, match="cannot write .*table.md"):  # one line, path named
        files.write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_results_json_is_strict_json(tmp_path):
    files.write_json(tmp_path / "r.json", {"best": float("-inf"), "x": np.float32(0.5)})
    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: 1 / 0) == \
        {"best": None, "x": 0.5}


def test_kg_filter_on_a_dataset_without_kg_is_a_clear_error(tmp_path):
    data = tmp_path / "data"
    folder = write_kg_dataset(data, name="nokg")
    (folder / "nokg.kg").unlink()
    config = tiny_config(data, kg_linked_items_only=True)
    config["load_col"] = {"inter": ["user_id", "item_id"]}
    config = quick_start.create_config("BPR", "nokg", None, config)
    with pytest.raises(ValueError, match=r"kg_linked_items_only: dataset nokg has no \.kg file"):
        quick_start.load_data(config)


@pytest.mark.parametrize("model", sorted(protocol.DETERMINISTIC))
def test_deterministic_models_do_not_depend_on_the_seed(workspace, tmp_path, monkeypatch, model):
    """The reason a deterministic model's selected configuration runs once: two model seeds on
    the same split give identical validation and test results."""
    _, config_file = workspace
    monkeypatch.chdir(tmp_path)
    results = [quick_start.run_recbole_kgin(
        model, "tiny", [str(config_file)],
        {"seed": seed, "split_seed": 7, "epochs": 2, "state": "WARNING"},
        saved=False) for seed in (1, 2)]
    assert results[0]["test_result"] == results[1]["test_result"]
    assert results[0]["best_valid_result"] == results[1]["best_valid_result"]
    # ...whereas a trained model does depend on it (the check can fail)
    if model == "EASE":
        bpr = [quick_start.run_recbole_kgin(
            "BPR", "tiny", [str(config_file)],
            {"seed": seed, "split_seed": 7, "epochs": 2, "state": "WARNING"},
            saved=False)["test_result"] for seed in (1, 2)]
        assert bpr[0] != bpr[1]


from ray.tune import Callback  # noqa: E402  (the tests of this file need Ray anyway)


class _CutSeedRun(Callback):
    """Ray Tune's Ctrl-C once, when a seed run has reported its third epoch."""

    cut = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self.cut and result.get("epochs_run", 0) >= 3 and not result.get("finished"):
            self.cut.append(trial.trial_id)
            os.kill(os.getpid(), signal.SIGUSR1)


def test_a_seed_run_cut_mid_way_continues_from_its_checkpoint(ray_local, workspace, monkeypatch):
    """Ctrl-C during a seed run: the next command continues it from its checkpoint in
    final/partial/ and tests the model the uninterrupted run tests."""
    from recbole_kgin.experiment import search

    def argv(run):
        root, config_file = workspace
        return ["--dataset", "tiny", "--models", "KGIN", "--out", str(root / "out"), "--run", run,
                "--config_files", str(config_file), "--epochs=6", "--trials", "0", "--seeds", "1",
                "--patience", "50", "--trial_checkpoint_s=0"]

    assert compare.main(argv("whole")) == 0
    with_progress = search._with_progress

    def cutting(callbacks, *args, **kwargs):
        return [*with_progress(callbacks, *args, **kwargs), _CutSeedRun()]

    with monkeypatch.context() as m:
        m.setattr(search, "_with_progress", cutting)
        with pytest.raises(KeyboardInterrupt):  # the command line turns it into exit 130
            compare.main(argv("cut"))
    assert _CutSeedRun.cut, "the seed run was not cut"
    final = workspace[0] / "out" / "cut" / "models" / "KGIN" / "final"
    assert list((final / "partial").glob("final-*.pth"))
    assert compare.main([*argv("cut"), "--resume"]) == 0
    record = json.loads((final / "seed-2020.json").read_text())
    assert record["resumed_from_epoch"] >= 3
    rows = {run: _csv(workspace[0] / "out" / run / "table.csv")["KGIN"] for run in ("whole", "cut")}
    for key in ("recall@20", "ndcg@20", "epochs_run", "best_epoch"):
        assert rows["cut"][key] == rows["whole"][key], key
    assert not (final / "partial").exists()


class _StopAfterLastSeed(Callback):
    """Ctrl-C (as SIGUSR1) once the last seed run has ended: nothing is left for Ray to stop."""

    sent = []

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not self.sent:
            self.sent.append(trial.trial_id)
            os.kill(os.getpid(), signal.SIGUSR1)


def test_a_stop_signal_after_the_last_seed_run_still_stops_and_handlers_are_put_back(
        ray_local, workspace, monkeypatch):
    """Ray Tune leaves its own SIGINT/SIGUSR1 handler in place after a run, so a Ctrl-C between two
    models only logged a warning and the comparison went on: the handlers are put back after
    every run, and a signal Ray caught after the run's last trial ended stops the command all
    the same (exit 130 at the command line); the next command keeps the finished seed run."""
    from recbole_kgin.experiment import search

    root, config_file = workspace
    argv = ["--dataset", "tiny", "--models", "Pop,ItemKNN", "--out", str(root / "out"),
            "--run", "late-stop", "--config_files", str(config_file), "--trials", "0",
            "--seeds", "1"]
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGUSR1)}
    with_progress = search._with_progress

    def stopping(callbacks, *args, **kwargs):
        return [*with_progress(callbacks, *args, **kwargs), _StopAfterLastSeed()]

    with monkeypatch.context() as m:
        m.setattr(search, "_with_progress", stopping)
        with pytest.raises(KeyboardInterrupt):
            compare.main(argv)
    assert _StopAfterLastSeed.sent, "no signal was sent"
    assert {s: signal.getsignal(s) for s in before} == before
    pop = root / "out" / "late-stop" / "models" / "Pop"
    record = pop / "final" / "seed-2020.json"
    assert record.is_file() and not (root / "out" / "late-stop" / "models" / "ItemKNN").exists()
    mtime = record.stat().st_mtime_ns
    assert compare.main([*argv, "--resume"]) == 0
    assert record.stat().st_mtime_ns == mtime  # kept, not run again
    assert {s: signal.getsignal(s) for s in before} == before
    assert set(_csv(root / "out" / "late-stop" / "table.csv")) == {"Pop", "ItemKNN"}
