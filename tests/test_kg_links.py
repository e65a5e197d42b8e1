"""Interactions of items without a KG entity: dropped with a warning (RecBole), or kept on request."""

import logging

import numpy as np

from recbole_kgin import quick_start
from recbole_kgin.model.kgin_explain import kg_edges
from synthetic import tiny_config, write_kg_dataset


def _load(root, caplog, **extra):
    config = quick_start.create_config("KGIN", "tiny", config_dict=tiny_config(root, **extra))
    with caplog.at_level(logging.WARNING):
        dataset, train_data, valid_data, test_data = quick_start.load_data(config)
    return config, dataset, train_data, valid_data, test_data


def test_unlinked_items_are_dropped_with_a_warning_or_kept(tmp_path, caplog):
    folder = write_kg_dataset(tmp_path, unlinked_items=6)
    lines = (folder / "tiny.inter").read_text().splitlines()[1:]
    unlinked = {f"i{i}" for i in range(80 - 6, 80)}
    n_unlinked = sum(line.split("\t")[1] in unlinked for line in lines)
    assert n_unlinked > 0

    _, dropped, *_ = _load(tmp_path, caplog)
    assert len(dropped.inter_feat) == len(lines) - n_unlinked
    assert f"dropped {n_unlinked} interactions of 6 items" in caplog.text
    caplog.clear()

    config, kept, train_data, valid_data, test_data = _load(
        tmp_path, caplog, kg_keep_unlinked_items=True)
    assert len(kept.inter_feat) == len(lines)
    assert f"kept {n_unlinked} interactions of 6 items" in caplog.text
    tokens = set(kept.field2id_token[kept.iid_field])
    assert unlinked <= tokens
    # the kept items train and rank like any other item; they have no KG edge
    model = quick_start.build_model(config, train_data)
    ids = [kept.field2token_id[kept.iid_field][t] for t in unlinked]
    heads, _, tails = kg_edges(model, train_data._dataset)
    assert not np.isin(ids, heads).any() and not np.isin(ids, tails).any()
    trainer = quick_start.build_trainer(config, model)
    result = quick_start.fit_and_test(config, model, trainer, train_data, valid_data, test_data)
    assert np.isfinite(result["test_result"]["recall@20"])
