"""KGIN model: equations, losses, evaluation behaviour, RecBole round trip."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbole_kgin.model.kgin import (
    KGIN,
    cosine_independence,
    distance_independence,
    mi_independence,
)
from recbole_kgin.quick_start import (
    build_trainer,
    create_config,
    load_data,
    load_data_and_model,
    run_recbole_kgin,
)
from synthetic import tiny_config, write_kg_dataset

# ---------------------------------------------------------------- a hand-made knowledge graph
HAND_INTER = [("u1", "i1"), ("u1", "i2"), ("u1", "i3"), ("u2", "i2"), ("u2", "i4"),
              ("u3", "i5"), ("u3", "i1"), ("u4", "i3"), ("u4", "i4"), ("u4", "i5"),
              ("u2", "i4")]  # the last pair repeats: the model must count it once
HAND_KG = [("e1", "genre", "a"), ("e2", "genre", "a"), ("e3", "genre", "b"),
           ("e4", "actor", "c"), ("e5", "actor", "c"), ("e1", "actor", "c"),
           ("a", "genre", "b"), ("e1", "genre", "a")]  # duplicate triplet
HAND_LINK = [(f"i{k}", f"e{k}") for k in range(1, 6)]


def write_hand_dataset(root):
    folder = root / "hand"
    folder.mkdir()
    (folder / "hand.inter").write_text(
        "user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in HAND_INTER))
    (folder / "hand.kg").write_text(
        "head_id:token\trelation_id:token\ttail_id:token\n"
        + "".join(f"{h}\t{r}\t{t}\n" for h, r, t in HAND_KG))
    (folder / "hand.link").write_text(
        "item_id:token\tentity_id:token\n" + "".join(f"{i}\t{e}\n" for i, e in HAND_LINK))


def hand_model(tmp_path, **overrides):
    write_hand_dataset(tmp_path)
    config = create_config("KGIN", "hand", config_dict=tiny_config(
        tmp_path, embedding_size=8, n_factors=3, **overrides))
    _, train_data, _, _ = load_data(config)
    dataset = train_data._dataset  # the training split, as RecBole hands it to a model
    torch.manual_seed(0)
    return KGIN(config, dataset), dataset


def plain_forward(model, dataset, hops):
    """Independent re-computation of KGIN's propagation with dense tensors and loops."""
    rel_field = model.RELATION_ID
    tokens = list(dataset.field2id_token[rel_field])
    kg_rel_ids = [i for i, tok in enumerate(tokens) if tok not in ("[PAD]", "[UI-Relation]")]
    heads = dataset.head_entities.tolist()
    tails = dataset.tail_entities.tolist()
    rels = dataset.relations.tolist()
    triples = sorted(set(zip(heads, rels, tails)))
    n_ent, n_users, n_items = model.n_entities, model.n_users, model.n_items

    user_ids = dataset.inter_feat[model.USER_ID].tolist()
    item_ids = dataset.inter_feat[model.ITEM_ID].tolist()
    adj = torch.zeros(n_users, n_items)
    for u, i in zip(user_ids, item_ids):
        adj[u, i] = 1.0
    deg = adj.sum(1, keepdim=True)
    adj_hat = torch.where(deg > 0, adj / deg.clamp(min=1), adj)

    rel_emb = model.relation_embedding  # row k <-> relation id kg_rel_ids[k]
    rel_row = {rid: k for k, rid in enumerate(kg_rel_ids)}
    intents = torch.softmax(model.intent_relation_logits, 1) @ rel_emb

    usr, ent = model.user_embedding, model.entity_embedding
    usr_sum, ent_sum = usr, ent
    for _ in range(hops):
        rows = []
        for e in range(n_ent):
            msgs = [rel_emb[rel_row[r]] * ent[t] for h, r, t in triples if h == e]
            rows.append(torch.stack(msgs).mean(0) if msgs else torch.zeros(ent.shape[1]))
        ent_new = torch.stack(rows)
        agg = adj_hat @ ent[:n_items]
        beta = torch.softmax(usr @ model.intent_keys.t(), dim=1)
        usr_new = agg * (beta @ intents) + agg
        ent = ent_new / ent_new.norm(dim=1, keepdim=True).clamp(min=1e-12)
        usr = usr_new / usr_new.norm(dim=1, keepdim=True).clamp(min=1e-12)
        ent_sum = ent_sum + ent
        usr_sum = usr_sum + usr
    return usr_sum, ent_sum


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_forward_matches_plain_equations(tmp_path, hops):
    model, dataset = hand_model(tmp_path, context_hops=hops)
    model.eval()
    # the graph as RecBole built it: 2 relations + 2 inverses, duplicates removed
    assert model.n_kg_relations == 4
    assert model.n_kg_edges == 2 * len(set(HAND_KG))
    weights_u = torch.randn(model.n_users, 8)
    weights_e = torch.randn(model.n_entities, 8)

    user_out, ent_out = model(sample_graph=False)
    ref_user, ref_ent = plain_forward(model, dataset, hops)
    assert torch.allclose(user_out, ref_user, atol=1e-5)
    assert torch.allclose(ent_out, ref_ent, atol=1e-5)

    # gradients agree too (the sparse kernels are differentiated correctly)
    params = list(model.parameters())
    got = torch.autograd.grad((user_out * weights_u).sum() + (ent_out * weights_e).sum(),
                              params, allow_unused=True)
    want = torch.autograd.grad((ref_user * weights_u).sum() + (ref_ent * weights_e).sum(),
                               params, allow_unused=True)
    for g, w in zip(got, want):
        if w is None:
            assert g is None or torch.count_nonzero(g) == 0
        else:
            assert torch.allclose(g, w, atol=1e-5)


def test_intents_attend_over_kg_relations_only(tmp_path):
    model, dataset = hand_model(tmp_path)
    tokens = list(dataset.field2id_token[model.RELATION_ID])
    assert "[PAD]" in tokens and "[UI-Relation]" in tokens
    assert model.intent_relation_logits.shape == (3, len(tokens) - 2)
    assert model.relation_embedding.shape[0] == len(tokens) - 2


def test_published_settings_are_the_defaults(tmp_path):
    write_kg_dataset(tmp_path)
    config = create_config("KGIN", "tiny", config_dict={"data_path": str(tmp_path)})
    expected = {"embedding_size": 64, "learning_rate": 1e-4, "train_batch_size": 1024,
                "reg_weight": 1e-5, "context_hops": 3, "n_factors": 4, "ind": "distance",
                "node_dropout_rate": 0.5, "mess_dropout_rate": 0.1, "sim_regularity": 1e-4,
                "kg_reverse_r": True, "seed": 2020, "valid_metric": "Recall@20"}
    for key, value in expected.items():
        assert config[key] == value, key


@pytest.mark.parametrize("key,value", [("ind", "pearson"), ("node_dropout_rate", 1.5),
                                       ("context_hops", 0), ("node_dropout_semantics", "x")])
def test_bad_config_value_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        hand_model(tmp_path, **{key: value})


# ---------------------------------------------------------------- independence losses
def plain_distance_correlation(x, y, eps=1e-8):
    n = x.shape[0]
    a = torch.stack([torch.stack([torch.sqrt((x[i] - x[j]) ** 2 + eps) for j in range(n)])
                     for i in range(n)])
    b = torch.stack([torch.stack([torch.sqrt((y[i] - y[j]) ** 2 + eps) for j in range(n)])
                     for i in range(n)])
    A = a - a.mean(0, keepdim=True) - a.mean(1, keepdim=True) + a.mean()
    B = b - b.mean(0, keepdim=True) - b.mean(1, keepdim=True) + b.mean()
    dcov = lambda P, Q: torch.sqrt(torch.clamp((P * Q).sum() / n ** 2, min=0) + eps)
    return dcov(A, B) / torch.sqrt(dcov(A, A) * dcov(B, B) + eps)


def test_independence_losses_match_formulas():
    torch.manual_seed(1)
    w = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    pairs = list(itertools.combinations(range(4), 2))

    want_cos = sum(F.cosine_similarity(w[p], w[q], dim=0) ** 2 for p, q in pairs)
    assert torch.allclose(cosine_independence(w), want_cos, atol=1e-10)

    want_dist = sum(plain_distance_correlation(w[p], w[q]) for p, q in pairs)
    assert torch.allclose(distance_independence(w), want_dist, atol=1e-8)

    tau = 0.2
    unit = [w[p] / w[p].norm() for p in range(4)]
    want_mi = 0.0
    for p in range(4):
        num = math.e ** (float(unit[p] @ unit[p]) / tau)
        den = sum(math.e ** (float(unit[p] @ unit[q]) / tau) for q in range(4))
        want_mi += -math.log(num / den)
    assert abs(float(mi_independence(w, tau)) - want_mi) < 1e-8

    for fn in (cosine_independence, distance_independence, lambda x: mi_independence(x, tau)):
        (grad,) = torch.autograd.grad(fn(w), w)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_distance_correlation_detects_dependence():
    x = torch.linspace(-1, 1, 20, dtype=torch.float64)
    independent = torch.stack([x, torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(3))])
    dependent = torch.stack([x, x ** 2 * 3 + 1])
    assert distance_independence(dependent) > 0.4
    assert distance_independence(torch.stack([x, 2 * x + 1])) > 0.99
    assert distance_independence(independent) < distance_independence(dependent)


# ---------------------------------------------------------------- train vs eval behaviour
def test_evaluation_is_deterministic_and_cached(tmp_path):
    model, _ = hand_model(tmp_path)
    model.eval()
    users = torch.arange(model.n_users)
    interaction = {model.USER_ID: users}
    first = model.full_sort_predict(interaction).clone()
    model._cache = None  # recompute from scratch
    second = model.full_sort_predict(interaction)
    assert torch.equal(first, second)
    # training mode invalidates the cache; a parameter update changes the scores
    model.train()
    assert model._cache is None
    with torch.no_grad():
        model.user_embedding.add_(0.1)
    model.eval()
    assert not torch.equal(first, model.full_sort_predict(interaction))


def test_train_mode_differs_from_eval_only_by_dropout(tmp_path):
    model, _ = hand_model(tmp_path, node_dropout_rate=0.0, mess_dropout_rate=0.0)
    model.train()
    train_u, train_e = model()
    model.eval()
    eval_u, eval_e = model()
    assert torch.allclose(train_u, eval_u, atol=1e-6) and torch.allclose(train_e, eval_e, atol=1e-6)

    model, _ = hand_model(tmp_path / "b", node_dropout_rate=0.5, mess_dropout_rate=0.1) \
        if (tmp_path / "b").mkdir() is None else None
    model.train()
    drop_u, _ = model()
    model.eval()
    full_u, _ = model()
    assert not torch.allclose(drop_u, full_u)


@pytest.mark.parametrize("semantics,rate,kept", [("drop", 0.3, 0.7), ("reference", 0.3, 0.3),
                                                 ("drop", 0.5, 0.5), ("reference", 0.5, 0.5)])
def test_node_dropout_keeps_the_documented_fraction(tmp_path, semantics, rate, kept):
    write_kg_dataset(tmp_path, n_users=80, n_items=120)
    config = create_config("KGIN", "tiny", config_dict=tiny_config(
        tmp_path, node_dropout_rate=rate, node_dropout_semantics=semantics))
    _, train_data, _, _ = load_data(config)
    model = KGIN(config, train_data._dataset)
    torch.manual_seed(0)
    kg_op, inter_op = model._sample_graph()
    assert kg_op._nnz() == int(model.n_kg_edges * kept)
    values = inter_op.values()
    nonzero = values[values > 0]
    base = model.inter_values[values > 0]
    assert torch.allclose(nonzero, base / (1 - rate))
    assert abs(nonzero.numel() / values.numel() - kept) < 0.05


# ---------------------------------------------------------------- through RecBole
def test_one_epoch_save_reload_same_metrics(tmp_path):
    write_kg_dataset(tmp_path)
    result = run_recbole_kgin("KGIN", "tiny", config_dict=tiny_config(
        tmp_path, epochs=2, learning_rate=0.01))
    assert result["saved_model_file"] and result["test_result"]["recall@20"] > 0
    config, model, _, _, _, test_data = load_data_and_model(result["saved_model_file"])
    again = build_trainer(config, model).evaluate(test_data, load_best_model=False)
    assert {k: float(v) for k, v in again.items()} == result["test_result"]


@pytest.mark.parametrize("training", [False, True])
def test_items_only_last_hop_equals_full_propagation(tmp_path, training):
    write_kg_dataset(tmp_path, n_users=50, n_items=70)
    # message dropout off: its masks are drawn per output row, so the row counts would differ
    config = create_config("KGIN", "tiny", config_dict=tiny_config(
        tmp_path, embedding_size=16, mess_dropout_rate=0.0))
    _, train_data, _, _ = load_data(config)
    model = KGIN(config, train_data._dataset)
    assert 0 < model.n_item_pairs < model.n_kg_pairs
    model.train(training)
    torch.manual_seed(5)
    full_u, full_e = model()
    torch.manual_seed(5)  # the same node-dropout draw
    part_u, part_e = model(items_only=True)
    assert part_e.shape[0] == model.n_items
    assert torch.allclose(part_u, full_u, atol=1e-6)
    assert torch.allclose(part_e, full_e[: model.n_items], atol=1e-6)
