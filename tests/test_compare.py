"""``run_recbole_kgin.py compare`` on tiny synthetic data: tables, failures, skipping, same split."""

import csv
import json
import math
import os

import pytest
import yaml

from recbole.model.general_recommender.lightgcn import LightGCN
from recbole.model.knowledge_aware_recommender.cke import CKE

from recbole_kgin import cli, compare, quick_start
from synthetic import tiny_config, write_kg_dataset

MODELS = ["KGIN", "BPR", "CKE"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    data = root / "data"
    write_kg_dataset(data)
    config = tiny_config(data)
    config.pop("epochs")  # given on the command line
    config_file = root / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return root, config_file


def _argv(workspace, models=MODELS, run="r", *extra):
    root, config_file = workspace
    return ["--dataset", "tiny", "--models", ",".join(models), "--out", str(root / "out"),
            "--run", run, "--config_files", str(config_file), "--epochs=1", *extra]


class _Recorder:
    """Wraps the shared pipeline's ``fit_and_test`` to keep what RecBole returned per model."""

    def __init__(self, monkeypatch):
        self.results = {}
        self.calls = []
        original = quick_start.fit_and_test

        def wrapped(config, *args, **kwargs):
            self.calls.append(config["model"])
            result = original(config, *args, **kwargs)
            self.results[config["model"]] = result
            return result

        monkeypatch.setattr(quick_start, "fit_and_test", wrapped)


def _raise_boom(self, interaction):
    raise RuntimeError("boom: deliberate failure\nsecond line")


@pytest.fixture(scope="module")
def first_run(workspace, tmp_path_factory):
    """KGIN, BPR and a failing CKE, 1 epoch each."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cwd"))
        mp.setattr(CKE, "calculate_loss", _raise_boom)
        recorder = _Recorder(mp)
        code = compare.main(_argv(workspace))
    run_dir = workspace[0] / "out" / "r"
    return code, recorder, run_dir


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole's trainer writes ./log_tensorboard


METRIC_KEYS = [f"{m}@{k}" for k in (10, 20, 50) for m in ("recall", "ndcg", "hit", "precision")]


def _md_rows(text):
    """Rows of the first markdown table of table.md, as dicts keyed by the header."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        if set(line) <= set("|-: "):
            break  # the second table's separator
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if cells[0] == "model":
            break
        rows.append(dict(zip(header, cells)))
    return rows


def test_table_files_hold_the_numbers_recbole_returned(first_run):
    code, recorder, run_dir = first_run
    assert code == 1  # one model failed
    for name in ("table.md", "table.csv", "results.json", "curves.png"):
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in run_dir.rglob("*.tmp")]
    assert set(recorder.results) == {"KGIN", "BPR"}

    with open(run_dir / "table.csv", newline="") as handle:
        csv_rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert list(csv_rows) == MODELS
    summary = json.loads((run_dir / "results.json").read_text())
    json_records = {r["model"]: r for r in summary["models"]}
    md_rows = {row["model"]: row for row in _md_rows((run_dir / "table.md").read_text())}
    assert list(md_rows) == MODELS

    for name in ("KGIN", "BPR"):
        returned = recorder.results[name]
        test = returned["test_result"]
        assert set(METRIC_KEYS) <= set(test)
        for key in METRIC_KEYS:
            assert float(csv_rows[name][key]) == test[key]
            assert json_records[name]["test_result"][key] == test[key]
        for metric, label in (("recall", "Recall"), ("ndcg", "NDCG"), ("hit", "Hit"),
                              ("precision", "Precision")):
            assert float(md_rows[name][f"{label}@20"]) == test[f"{metric}@20"]
        assert csv_rows[name]["status"] == "ok" and md_rows[name]["status"] == "ok"
        assert int(csv_rows[name]["best_epoch"]) == returned["best_epoch"] + 1
        assert int(csv_rows[name]["n_params"]) == json_records[name]["n_params"] > 0
        assert float(csv_rows[name]["seconds_per_epoch"]) == pytest.approx(
            returned["seconds_per_epoch"], abs=1e-3)
        assert json_records[name]["valid_history"] == returned["valid_history"]


def test_failing_model_is_reported_and_the_others_run(first_run):
    _, _, run_dir = first_run
    summary = json.loads((run_dir / "results.json").read_text())
    records = {r["model"]: r for r in summary["models"]}
    assert records["CKE"]["status"] == "failed"
    assert records["CKE"]["error"] == "RuntimeError: boom: deliberate failure"
    assert "Traceback" in records["CKE"]["traceback"]
    assert records["KGIN"]["status"] == records["BPR"]["status"] == "ok"
    md = (run_dir / "table.md").read_text()
    assert "failed: RuntimeError: boom: deliberate failure" in md
    with open(run_dir / "table.csv", newline="") as handle:
        cke = [row for row in csv.DictReader(handle) if row["model"] == "CKE"][0]
    assert cke["status"] == "failed" and cke["recall@20"] == ""
    # each model's record was written on its own
    for name in MODELS:
        assert json.loads((run_dir / "models" / f"{name}.json").read_text())["model"] == name


def test_every_model_saw_the_same_split(first_run, workspace):
    _, _, run_dir = first_run
    summary = json.loads((run_dir / "results.json").read_text())
    assert summary["split_check"]["same_split"] is True
    prints = {r["model"]: r["split"] for r in summary["models"]}
    assert set(prints) == set(MODELS)  # CKE failed in training, after its split was recorded
    assert prints["KGIN"] == prints["BPR"] == prints["CKE"]
    assert prints["KGIN"]["test"]["pairs"] > 0

    # independently: the (user, item) tokens of the test sets of a knowledge-aware model with
    # inverse KG relations (KGIN) and of a general one (BPR)
    _, config_file = workspace
    tokens, kg_sizes = {}, {}
    for name in ("KGIN", "BPR", "CKE"):
        config = quick_start.create_config(name, "tiny", [str(config_file)], {"epochs": 1})
        dataset, _, _, test_data = quick_start.load_data(config)
        inter = test_data._dataset.inter_feat
        users = dataset.id2token(dataset.uid_field, inter[dataset.uid_field].numpy())
        items = dataset.id2token(dataset.iid_field, inter[dataset.iid_field].numpy())
        tokens[name] = sorted(zip(users.tolist(), items.tolist()))
        if hasattr(dataset, "kg_feat"):
            kg_sizes[name] = (len(dataset.kg_feat), config["kg_reverse_r"])
    assert tokens["KGIN"] == tokens["BPR"] == tokens["CKE"]
    # ... although KGIN's KG holds every triplet twice (kg_reverse_r), BPR has no KG at all
    raw_triplets = len((workspace[0] / "data" / "tiny" / "tiny.kg").read_text().splitlines()) - 1
    assert kg_sizes["KGIN"] == (2 * raw_triplets, True)
    # the digest tells splits apart: another seed gives another test set
    config = quick_start.create_config("BPR", "tiny", [str(config_file)], {"seed": 7})
    _, train_data, valid_data, test_data = quick_start.load_data(config)
    other = compare.split_fingerprint(train_data, valid_data, test_data)
    assert other["test"] != prints["BPR"]["test"]


def test_second_invocation_skips_finished_models(first_run, workspace, monkeypatch):
    _, _, run_dir = first_run
    before = json.loads((run_dir / "models" / "KGIN.json").read_text())
    recorder = _Recorder(monkeypatch)
    code = compare.main(_argv(workspace))
    assert recorder.calls == ["CKE"]  # the failed one is tried again, the finished ones are not
    assert code == 0
    after = json.loads((run_dir / "models" / "KGIN.json").read_text())
    assert after == before
    summary = json.loads((run_dir / "results.json").read_text())
    assert [r["status"] for r in summary["models"]] == ["ok", "ok", "ok"]

    # --force re-runs every model
    recorder = _Recorder(monkeypatch)
    assert compare.main(_argv(workspace, MODELS, "r", "--force")) == 0
    assert recorder.calls == MODELS
    assert json.loads((run_dir / "models" / "KGIN.json").read_text())["finished_at"] >= \
        before["finished_at"]

    # other settings in the same run directory are refused, before anything runs
    recorder = _Recorder(monkeypatch)
    with pytest.raises(cli.UsageError, match="other settings"):
        compare.main(_argv(workspace, MODELS, "r", "--learning_rate=0.5"))
    assert recorder.calls == []


def test_nan_loss_is_recorded_and_the_comparison_goes_on(workspace, monkeypatch):
    def nan_loss(self, interaction):
        return self.user_embedding.weight.sum() * float("nan")

    monkeypatch.setattr(LightGCN, "calculate_loss", nan_loss)
    code = compare.main(_argv(workspace, ["LightGCN", "BPR"], "nan"))
    assert code == 1
    summary = json.loads((workspace[0] / "out" / "nan" / "results.json").read_text())
    records = {r["model"]: r for r in summary["models"]}
    assert records["LightGCN"]["status"] == "failed"
    assert records["LightGCN"]["error"].startswith(
        "TrainingDiverged: training loss is NaN at epoch 1, step 1")
    assert records["BPR"]["status"] == "ok"
    assert math.isfinite(records["BPR"]["test_result"]["recall@20"])


def test_bad_model_name_is_rejected_before_anything_runs(workspace, monkeypatch, capsys):
    recorder = _Recorder(monkeypatch)
    with pytest.raises(cli.UsageError, match="unknown model 'LightGcn'.*did you mean LightGCN"):
        compare.main(_argv(workspace, ["BPR", "LightGcn"], "bad"))
    assert cli.main(["compare", *_argv(workspace, ["BPR", "NoSuchModel"], "bad")]) == 2
    assert "unknown model 'NoSuchModel'" in capsys.readouterr().err
    with pytest.raises(cli.UsageError, match="SEQUENTIAL"):
        compare.main(_argv(workspace, ["BPR", "SASRec"], "bad"))
    with pytest.raises(cli.UsageError, match="listed twice"):
        compare.main(_argv(workspace, ["BPR", "BPR"], "bad"))
    assert recorder.calls == []
    assert not (workspace[0] / "out" / "bad").exists()


def test_ctrl_c_keeps_finished_models(workspace, monkeypatch):
    original = quick_start.fit_and_test

    def interrupt_second(config, *args, **kwargs):
        if config["model"] == "LightGCN":
            raise KeyboardInterrupt
        return original(config, *args, **kwargs)

    monkeypatch.setattr(quick_start, "fit_and_test", interrupt_second)
    assert cli.main(["compare", *_argv(workspace, ["BPR", "LightGCN"], "ctrlc")]) == 130
    run_dir = workspace[0] / "out" / "ctrlc"
    assert json.loads((run_dir / "models" / "BPR.json").read_text())["status"] == "ok"
    assert not (run_dir / "models" / "LightGCN.json").exists()
    assert "| BPR |" in (run_dir / "table.md").read_text()


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "table.md"
    compare.write_atomic(target, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        compare.write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_items_missing_from_the_kg_are_dropped_for_every_model(tmp_path):
    """RecBole's knowledge-aware dataset drops interactions of items without an entity; compare
    gives BPR the same interactions, so both rows share one split. Without that, they differ."""
    data = tmp_path / "data"
    write_kg_dataset(data, name="holes", unlinked_items=10)
    config = tiny_config(data)
    config.pop("epochs")
    config_file = tmp_path / "holes.yaml"
    config_file.write_text(yaml.safe_dump(config))
    argv = ["--dataset", "holes", "--models", "BPR,CKE", "--out", str(tmp_path / "out"),
            "--config_files", str(config_file), "--epochs=1"]

    assert compare.main([*argv, "--run", "auto"]) == 0
    summary = json.loads((tmp_path / "out" / "auto" / "results.json").read_text())
    assert summary["protocol"]["kg_linked_items_only"] is True
    assert summary["split_check"]["same_split"] is True
    prints = {r["model"]: r["split"] for r in summary["models"]}
    inter_lines = (data / "holes" / "holes.inter").read_text().splitlines()[1:]
    linked_pairs = [line for line in inter_lines if int(line.split("\t")[1][1:]) < 70]
    assert sum(prints["BPR"][part]["pairs"] for part in ("train", "valid", "test")) == \
        len(linked_pairs) < len(inter_lines)
    assert "interactions: only those whose item is linked" in \
        (tmp_path / "out" / "auto" / "table.md").read_text()

    assert compare.main([*argv, "--run", "off", "--kg_linked_items_only=False"]) == 0
    summary = json.loads((tmp_path / "out" / "off" / "results.json").read_text())
    assert summary["split_check"]["same_split"] is False
    bpr = {r["model"]: r["split"] for r in summary["models"]}["BPR"]
    assert sum(bpr[part]["pairs"] for part in ("train", "valid", "test")) == len(inter_lines)


def test_kg_filter_on_a_dataset_without_kg_is_a_clear_error(tmp_path):
    data = tmp_path / "data"
    folder = write_kg_dataset(data, name="nokg")
    (folder / "nokg.kg").unlink()
    config = tiny_config(data, kg_linked_items_only=True)
    config["load_col"] = {"inter": ["user_id", "item_id"]}
    config = quick_start.create_config("BPR", "nokg", None, config)
    with pytest.raises(ValueError, match=r"kg_linked_items_only: dataset nokg has no \.kg file"):
        quick_start.load_data(config)


def test_kg_filter_flag_does_not_invalidate_finished_knowledge_aware_models(workspace, monkeypatch):
    """A KG model run alone (no kg_linked_items_only) is reused by a later mixed comparison, which
    adds the flag; a general model is not, because the flag changes its data."""
    assert compare.main(_argv(workspace, ["CKE"], "reuse")) == 0
    recorder = _Recorder(monkeypatch)
    assert compare.main(_argv(workspace, ["CKE", "BPR"], "reuse")) == 0
    assert recorder.calls == ["BPR"]
    assert compare.main(_argv(workspace, ["BPR"], "reuse-bpr", "--kg_linked_items_only=False")) == 0
    with pytest.raises(cli.UsageError, match="kg_linked_items_only"):
        compare.main(_argv(workspace, ["CKE", "BPR"], "reuse-bpr"))
