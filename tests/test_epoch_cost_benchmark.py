"""The epoch-cost benchmark's estimate of a comparison table, and one model measured end to end."""

import importlib.util
import json
from pathlib import Path

import pytest

from synthetic import write_kg_dataset

_SPEC = importlib.util.spec_from_file_location(
    "epoch_cost", Path(__file__).resolve().parents[1] / "benchmarks" / "epoch_cost.py")
epoch_cost = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(epoch_cost)


def test_estimate_counts_trials_seeds_build_and_epochs(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"models": [
        {"model": "A", "status": "ok", "trials": 4, "seeds": 3, "epochs_run": 10.0},
        {"model": "B", "status": "ok", "trials": 4, "seeds": 1, "epochs_run": 1.0},
        {"model": "C", "status": "not run"},
    ]}))
    records = [
        {"model": "A", "status": "ok", "build_s": 2.0, "train_epoch_s": 3.0, "validation_s": 1.0},
        {"model": "B", "status": "ok", "build_s": 10.0, "train_epoch_s": 0.5, "validation_s": 0.5},
        {"model": "C", "status": "ok", "build_s": 0.0, "train_epoch_s": 1.0, "validation_s": 1.0},
        {"model": "D", "status": "skipped: needs 71 GiB"},
    ]
    total = epoch_cost.estimate(records, results)
    assert records[0]["estimate"] == {"runs": 7, "epochs_per_run": 10.0, "seconds": 7 * (2 + 40)}
    assert records[1]["estimate"]["seconds"] == 5 * (10 + 1)
    assert records[2]["estimate"] is None and records[3]["estimate"] is None
    assert total == pytest.approx(7 * 42 + 5 * 11)


def test_one_model_is_measured_through_the_shared_pipeline(tmp_path, monkeypatch):
    write_kg_dataset(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(epoch_cost, "_sync", lambda device: None)
    overrides = {"data_path": str(tmp_path / "data"),
                 "load_col": {"inter": ["user_id", "item_id"],
                              "kg": ["head_id", "relation_id", "tail_id"],
                              "link": ["item_id", "entity_id"]}}
    import recbole_kgin.quick_start as quick_start

    create = quick_start.create_config
    monkeypatch.setattr(quick_start, "create_config", lambda model, dataset, config_dict: create(
        model, dataset, config_dict={**config_dict, **overrides}))
    datasets = {}
    record = epoch_cost.measure("BPR", "tiny", "cpu", datasets, str(tmp_path / "saved"))
    assert record["status"] == "ok" and record["n_users"] == 60
    assert record["train_epoch_s"] > 0 and record["validation_s"] > 0
    assert len(datasets) == 1  # the dataset is kept for the next model of its kind
