"""``compare`` with KG-content baselines and KG controls on tiny data: variant rows with their
deltas, the group table, top-K lists from which the reported Recall@20 is recomputed, and the
statistics outputs (corrected p-values, CIs, effect sizes, split seeds, ledger, LaTeX, manifest)."""

import csv
import json
import math

import numpy as np
import pytest
import yaml

from recbole_kgin import cli
from recbole_kgin.experiment import groups
from synthetic import tiny_config, write_kg_dataset

ray = pytest.importorskip("ray")

MODELS = ["KGIN", "KGItemKNN", "Pop"]
ROWS = MODELS + ["KGIN@shuffle-relations", "KGItemKNN@shuffle-relations"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("comparekg")
    write_kg_dataset(root / "data")
    config = tiny_config(root / "data")
    for key in ("epochs", "eval_step", "train_batch_size"):
        config.pop(key)
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = cli.main(["compare", "--dataset", "tiny", "--models", ",".join(MODELS),
                         "--kg-variants", "full,shuffle-relations", "--trials", "2", "--seeds", "2",
                         "--split-seeds", "2",
                         "--epochs=1", "--out", str(root / "out"), "--run", "r",
                         "--config_files", str(root / "tiny.yaml")])
    finally:
        ray.shutdown()
    assert code == 0
    return root / "out" / "r"


def _csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_variant_rows_have_deltas_against_their_full_kg_row(run_dir):
    rows = {r["model"]: r for r in _csv(run_dir / "table.csv")}
    assert list(rows) == ROWS
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["KGIN"]["kg_variant"] == "full" and rows["Pop"]["kg_variant"] == ""
    for name in ("KGIN", "KGItemKNN"):
        variant = rows[f"{name}@shuffle-relations"]
        assert variant["kg_variant"] == "shuffle-relations"
        delta = float(variant["delta_recall@20"])  # per-user mean; the table's means are rounded
        assert math.isclose(delta, float(variant["recall@20"]) - float(rows[name]["recall@20"]),
                            abs_tol=2e-4)
        assert variant["delta_reference"] == name
        assert float(variant["ci_low_recall@20"]) <= delta <= float(variant["ci_high_recall@20"])
        assert 0.0 <= float(variant["p_value_vs_full"]) <= float(variant["p_value_vs_full_adj"]) <= 1
        assert variant["kg_triplets"] == rows[name]["kg_triplets"]
    # KGItemKNN follows every relation alike: permuting them changes nothing
    assert float(rows["KGItemKNN@shuffle-relations"]["delta_recall@20"]) == 0.0
    assert float(rows["KGItemKNN@shuffle-relations"]["p_value_vs_full"]) == 1.0
    table = (run_dir / "table.md").read_text()
    assert "KG controls" in table and "Groups, Recall@20" in table
    assert (run_dir / "kg_controls.png").read_bytes()[:4] == b"\x89PNG"


def test_groups_csv_has_every_group_for_every_model(run_dir):
    table = _csv(run_dir / "groups.csv")
    names = set(groups.PAIR_GROUPS) | set(groups.QUARTILES)
    for model in ROWS:
        mine = {g["group"]: g for g in table if g["model"] == model}
        assert set(mine) == names
        with np.load(run_dir / "per_user" / f"{model}.npz") as data:
            users = len(data["users"])
        assert sum(int(mine[q]["users"]) for q in groups.QUARTILES) == users
        assert int(mine["cold"]["pairs"]) + int(mine["warm"]["pairs"]) == \
            int(mine["head"]["pairs"]) + int(mine["tail"]["pairs"])
        for group in ("warm", "activity-q1"):
            assert mine[group]["recall@20"] != ""
            assert (mine[group]["p_value"] == "") == (model == "KGIN")


def test_per_user_groups_recombine_to_the_users_recall(run_dir):
    with np.load(run_dir / "per_user" / "KGIN.npz") as data:
        hits = data["hits_cold@20_mean"] + data["hits_warm@20_mean"]
        np.testing.assert_allclose(hits / data["test_count_mean"], data["recall@20_mean"],
                                   atol=1e-12)


@pytest.mark.parametrize("model", ROWS)
def test_recall_recomputed_from_saved_top_k_lists_equals_the_table(run_dir, model):
    row = next(r for r in _csv(run_dir / "table.csv") if r["model"] == model)
    with np.load(run_dir / "topk" / f"{model}.npz") as data:
        lists = {k: data[k] for k in data.files}
    offsets = lists["test_offsets"]
    positives = [lists["test_items"][offsets[u]:offsets[u + 1]] for u in range(len(lists["users"]))]
    seeds = [k for k in lists if k.startswith("seed_")]
    assert seeds and all(lists[k].shape == (len(lists["users"]), 50) for k in seeds)
    recalls = [groups.recall_from_topk(lists[k], positives, 20).mean() for k in seeds]
    # RecBole rounds each run's result to 4 decimals
    assert abs(np.mean(recalls) - float(row["recall@20"])) < 1e-4


def test_statistics_columns_and_files(run_dir):
    rows = {r["model"]: r for r in _csv(run_dir / "table.csv")}
    for name in ("KGItemKNN", "Pop"):
        row = rows[name]
        assert float(row["p_value"]) <= float(row["p_value_adj"]) <= 1.0
        assert row["delta_reference"] == "KGIN"
        assert float(row["ci_low_recall@20"]) <= float(row["delta_recall@20"]) <= \
            float(row["ci_high_recall@20"])
        assert -1.0 <= float(row["effect_recall@20"]) <= 1.0
        assert float(row["ci_low_ndcg@20"]) <= float(row["ci_high_ndcg@20"])
    for name in MODELS:  # two split seeds: the first split's row and one more
        assert rows[name]["splits_done"] == "2"
        assert float(rows[name]["recall@20_splits_std"]) >= 0.0
        assert int(rows[name]["epochs_total"]) >= 1 and float(rows[name]["wall_s"]) > 0
    tex = (run_dir / "table.tex").read_text()
    assert "\\toprule" in tex and "\\caption{" in tex and "KGItemKNN" in tex
    assert (run_dir / "tuning.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["files"]["search_spaces"] and manifest["files"]["dataset"]
    assert "Range edges" in (run_dir / "models" / "KGIN" / "trials.md").read_text()
    table = (run_dir / "table.md").read_text()
    assert "Holm-Bonferroni" in table and "Split seeds" in table and "ledger" in table
    results = json.loads((run_dir / "results.json").read_text())
    kgin = next(m for m in results["models"] if m["model"] == "KGIN")
    assert set(kgin["variance_recall@20"]) == {"seed", "split", "splits"}
    first, second = kgin["split"]["test"]["sha256"], kgin["splits"]["2021"]["split"]["test"]["sha256"]
    assert first != second  # the second split seed really split the data otherwise
