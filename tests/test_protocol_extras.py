"""Tuning adequacy (range-edge flags, space sizes), split seeds and the manifest, on crafted data."""

import hashlib
import json

import pytest

from recbole_kgin.experiment import files, protocol, report
from recbole_kgin.experiment.runner import split_fingerprint
from recbole_kgin.quick_start import create_config, load_data
from synthetic import tiny_config, write_kg_dataset

SPACE = {
    "learning_rate": ["choice", [1e-4, 1e-3, 5e-3]],
    "ind": ["choice", ["distance", "cosine"]],
    "hops": ["randint", [1, 3]],
    "dropout": ["uniform", [0.0, 0.5]],
    "reg": ["loguniform", [1e-5, 1e-1]],
    "layers": ["choice", [[64], [64, 32]]],
}


def test_edge_flags_on_a_crafted_trials_table():
    rows = [  # the selected configuration first, as trials.md sorts them
        {"params": {"learning_rate": 5e-3, "ind": "cosine", "hops": 1, "dropout": 0.49,
                    "reg": 1.2e-5, "layers": [64]}},
        {"params": {"learning_rate": 1e-3, "ind": "distance", "hops": 2, "dropout": 0.25,
                    "reg": 1e-3, "layers": [64, 32]}},
    ]
    flags = protocol.edge_flags(rows[0]["params"], SPACE)
    assert flags == {"learning_rate": "max", "hops": "min", "dropout": "max", "reg": "min"}
    assert protocol.edge_flags(rows[1]["params"], SPACE) == {}
    text = report.edge_sentence(rows[0]["params"], flags, SPACE)
    assert "`learning_rate` = 0.005 (the max of [0.0001, 0.001, 0.005])" in text
    assert "ind" not in text  # names have no edges
    assert report.edge_sentence({}, {}, SPACE).startswith("Range edges: no selected value")


def test_space_size_counts_lists_and_says_continuous():
    assert protocol.space_size({"a": ["choice", [1, 2, 3]], "b": ["grid", ["x", "y"]],
                                "c": ["randint", [1, 4]]}) == 24
    assert protocol.space_size(SPACE) == "continuous"
    assert protocol.space_size({}) == 1


def test_variance_components():
    splits = [{"mean": 0.30, "std": 0.01}, {"mean": 0.34, "std": 0.03}]
    components = protocol.variance_components(splits, "recall@20")
    assert components["seed"] == pytest.approx((0.01 ** 2 + 0.03 ** 2) / 2)
    assert components["split"] == pytest.approx(0.0008)  # (0.02^2 * 2) / (2 - 1)
    assert components["splits"] == 2


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("splits")
    write_kg_dataset(root)
    return root


def _fingerprint(root, split_seed, seed=1):
    config = create_config("BPR", "tiny", config_dict=tiny_config(root, split_seed=split_seed,
                                                                   seed=seed))
    _, train, valid, test = load_data(config)
    return split_fingerprint(train, valid, test)


def test_split_seeds_give_different_splits_each_fixed_by_its_seed(data_root):
    first, second = _fingerprint(data_root, 11), _fingerprint(data_root, 12)
    assert first["test"]["sha256"] != second["test"]["sha256"]
    assert _fingerprint(data_root, 11, seed=99) == first  # the model seed does not move the split
    assert protocol.split_seed_list(11, 3) == [11, 12, 13]
    config = create_config("BPR", "tiny", config_dict=tiny_config(data_root))
    assert protocol.can_resplit(config) is None


def test_a_fixed_split_cannot_be_resplit(data_root):
    config = create_config("BPR", "tiny", config_dict=tiny_config(
        data_root, benchmark_filename=["train", "valid", "test"]))
    assert "fixed split files (train, valid, test)" in protocol.can_resplit(config)


def test_every_manifest_checksum_matches_its_file(tmp_path):
    a, b = tmp_path / "a.inter", tmp_path / "space.yaml"
    a.write_bytes(b"user\titem\n1\t2\n")
    b.write_text("k: {choice: [1, 2]}\n")
    manifest = files.manifest(["compare", "--dataset", "x"], {"dataset": [a], "search_spaces": [b],
                                                            "config_files": [tmp_path / "gone"]})
    json.dumps(manifest)  # plain data
    for kind in ("dataset", "search_spaces"):
        for entry in manifest["files"][kind]:
            with open(entry["path"], "rb") as handle:
                assert entry["sha256"] == hashlib.sha256(handle.read()).hexdigest()
    assert manifest["files"]["config_files"] == []  # a missing file is not listed
    assert manifest["versions"]["python"] and manifest["versions"]["recbole"] == "1.2.1"
    assert manifest["command"] == ["compare", "--dataset", "x"]
