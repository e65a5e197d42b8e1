"""recommend and explain on a checkpoint, checked against the model's own scores."""

import json

import numpy as np
import pytest
import torch

from recbole_kgin import inference
from recbole_kgin.cli import main
from recbole_kgin.model import kgin_explain as kx
from recbole_kgin.quick_start import load_checkpoint_run
from cli_checks import LOAD_COL
from synthetic import write_kg_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    write_kg_dataset(root, n_users=30, n_items=60, per_user=8)
    out = root / "result.json"
    code = main(["--model=KGIN", "--dataset=tiny", f"--data_path={root}",
                 f"--checkpoint_dir={root / 'saved'}", "--epochs=2", "--eval_step=1",
                 "--train_batch_size=64", "--use_gpu=False", "--show_progress=False",
                 "--state=WARNING", "--embedding_size=16", "--context_hops=3", LOAD_COL,
                 f"--result_file={out}"])
    assert code == 0
    checkpoint = json.loads(out.read_text())["checkpoint"]
    run = load_checkpoint_run(checkpoint)
    return root, checkpoint, run


def test_recommend_json_matches_model_scores_and_skips_training_items(trained, capsys):
    root, checkpoint, run = trained
    _, config, _, train_data, _, _, model = run
    assert main(["recommend", "--checkpoint", checkpoint, "--users", "u3,u7", "--topk", "5",
                 "--format", "json"]) == 0
    output = json.loads(capsys.readouterr().out)
    dataset = train_data._dataset
    seen = dataset.inter_matrix(form="csr")
    for entry in output["users"]:
        user = dataset.field2token_id[dataset.uid_field][entry["user"]]
        items = [dataset.field2token_id[dataset.iid_field][x["item"]] for x in entry["items"]]
        assert len(items) == 5 and not set(items) & set(seen[user].indices)
        scores = kx.model_scores(model, [user])[0]
        for item, listed in zip(items, entry["items"]):
            assert listed["score"] == pytest.approx(float(scores[item]), abs=1e-5)
        allowed = torch.ones_like(scores, dtype=torch.bool)
        allowed[0] = False
        allowed[torch.as_tensor(seen[user].indices, dtype=torch.int64)] = False
        best = torch.topk(scores[allowed], 5).values
        assert [x["score"] for x in entry["items"]] == pytest.approx(best.tolist(), abs=1e-5)


def test_recommend_table_and_unknown_users(trained, capsys):
    _, checkpoint, _ = trained
    assert main(["recommend", "--checkpoint", checkpoint, "--users", "u1", "--topk", "3"]) == 0
    out = capsys.readouterr().out
    assert "top 3 items" in out and out.count("\n u1") + out.count(" u1 ") >= 3
    assert main(["recommend", "--checkpoint", checkpoint, "--users", "u1,nobody"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown user 'nobody'" in err and "\n" not in err


def test_plain_propagation_equals_the_model(trained):
    _, _, run = trained
    _, _, _, train_data, _, _, model = run
    prop = kx.propagate(model, train_data._dataset)
    same, diff = kx.check_against_model(model, prop)
    assert same, diff


def test_explain_decompositions_sum_to_the_model_score(trained, capsys):
    _, checkpoint, run = trained
    _, _, _, train_data, _, _, model = run
    dataset = train_data._dataset
    user = dataset.field2token_id[dataset.uid_field]["u5"]
    item = dataset.field2token_id[dataset.iid_field]["i9"]
    result = inference.explain(model, dataset, user, item, n_paths=10_000)
    score = float(kx.model_scores(model, [user])[0, item])
    assert result["score"] == pytest.approx(score, abs=1e-6)
    parts = result["by_intent"]
    assert parts["base"] + parts["collaborative"] + sum(parts["intents"]) == pytest.approx(
        score, abs=1e-4)
    paths = result["by_path"]
    assert paths["item_self"] + sum(p["contribution"] for p in paths["paths"]) == pytest.approx(
        score, abs=1e-4)
    assert paths["other_paths"] == 0.0
    assert max(len(p["relations"]) for p in paths["paths"]) == model.context_hops
    weights = [i["weight"] for i in result["intents"]]
    assert sum(weights) == pytest.approx(1.0, abs=1e-6) and len(weights) == model.n_factors
    names = set(kx.relation_names(dataset))
    assert {"genre", "similar", "tag", "genre_r"} <= names
    for intent in result["intents"]:
        attention = [r["attention"] for r in intent["top_relations"]]
        assert attention == sorted(attention, reverse=True)
        assert all(r["relation"] in names for r in intent["top_relations"])

    assert main(["explain", "--checkpoint", checkpoint, "--user", "u5", "--item", "i9",
                 "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["score"] == pytest.approx(score, abs=1e-6)
    assert main(["explain", "--checkpoint", checkpoint, "--user", "u5"]) == 0
    out = capsys.readouterr().out
    assert "intent 0: beta" in out and "score by" not in out


def test_explain_refuses_unknown_item_and_other_models(trained, capsys, tmp_path):
    _, checkpoint, _ = trained
    assert main(["explain", "--checkpoint", checkpoint, "--user", "u5", "--item", "zz"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown item 'zz'" in err and "\n" not in err


def test_intent_weights_are_softmax_rows(trained):
    _, _, run = trained
    model = run[-1]
    weights = kx.intent_relation_weights(model).numpy()
    assert np.allclose(weights.sum(axis=1), 1.0)


def test_edge_contributions_sum_to_the_score(trained):
    from recbole_kgin.model import kgin_fidelity as kf

    _, _, run = trained
    _, _, _, train_data, _, _, model = run
    prop = kx.propagate(model, train_data._dataset)
    scores = kx.model_scores(model, [3, 7])
    for row, user in enumerate([3, 7]):
        for item in (1, 5, 20):
            idx, contributions, item_self = kf.edge_contributions(model, prop, user, item)
            assert idx.size > 0
            assert item_self + contributions.sum() == pytest.approx(float(scores[row, item]),
                                                                    abs=1e-4)


def test_deletion_fidelity_top_edges_matter_more_than_random(trained, capsys):
    from recbole_kgin.model import kgin_fidelity as kf

    _, checkpoint, run = trained
    _, _, _, train_data, _, _, model = run
    dataset = train_data._dataset
    result = kf.deletion_fidelity(model, dataset, n_users=12, k=2, n_random=4, seed=1)
    assert result["users"] + result["skipped"] == 12 and result["users"] >= 6
    assert result["mean_drop_top"] >= result["mean_drop_random"]
    assert result["ratio"] >= 1.0
    # each recorded score is the model's own score of the user's top item, and the removal was real
    for row in result["per_user"]:
        assert row["score"] == pytest.approx(
            float(kx.model_scores(model, [row["user"]])[0, row["item"]]), abs=1e-4)
        assert row["drop_top"] != 0.0
    # the plain propagation with no edge removed reproduces the score (the test measures removal)
    head, rel, tail = kx.kg_edges(model, dataset)
    row = result["per_user"][0]
    same = kf._score_without(model, dataset, (head, rel, tail), np.array([], dtype=np.int64),
                             row["user"], row["item"])
    assert same == pytest.approx(row["score"], abs=1e-5)
    # the command line prints the same figures
    assert main(["explain", "--checkpoint", checkpoint, "--fidelity", "--sample", "12", "--k",
                 "2", "--random-draws", "4", "--seed", "1", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mean_drop_top"] == pytest.approx(result["mean_drop_top"])
    assert main(["explain", "--checkpoint", checkpoint, "--fidelity", "--user", "u1"]) == 2
    assert "drop --user" in capsys.readouterr().err
