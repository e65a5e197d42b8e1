"""The step benchmark's own pieces: synthetic Last-FM-shaped data, evaluation batches, floor."""

import importlib.util
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

_SPEC = importlib.util.spec_from_file_location(
    "kgin_step", Path(__file__).resolve().parents[1] / "benchmarks" / "kgin_step.py")
kgin_step = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(kgin_step)

SMALL = dict(users=40, items=60, entities=150, relations=9, triplets=500, interactions=700)


def read_rows(path):
    lines = path.read_text().splitlines()
    return lines[0], [tuple(line.split("\t")) for line in lines[1:]]


def test_synthetic_data_has_the_requested_sizes(tmp_path):
    name = kgin_step.write_lastfm_scale(tmp_path, sizes=SMALL)
    folder = tmp_path / name
    header, inter = read_rows(folder / f"{name}.inter")
    assert header == "user_id:token\titem_id:token"
    assert len(inter) == SMALL["interactions"] == len(set(inter))
    _, kg = read_rows(folder / f"{name}.kg")
    assert len(kg) == SMALL["triplets"] == len(set(kg))
    assert all(h != t for h, _, t in kg)
    assert {r for _, r, _ in kg} <= {f"r{k}" for k in range(SMALL["relations"])}
    _, link = read_rows(folder / f"{name}.link")
    assert link == [(f"i{k}", f"e{k}") for k in range(SMALL["items"])]


def test_history_batches_cover_every_user_and_training_item():
    rng = np.random.default_rng(0)
    dense = (rng.random((11, 7)) < 0.4).astype(np.float32)
    history = sp.csr_matrix(dense)
    batches = kgin_step.history_batches(history, n_users=11, batch_users=3)
    users = torch.cat([u for u, _, _ in batches])
    assert users.tolist() == list(range(1, 11))  # user 0 is padding
    mask = np.zeros_like(dense)
    for u, rows, cols in batches:
        mask[u[rows].numpy(), cols.numpy()] = 1
    assert np.array_equal(mask[1:], dense[1:])


def test_traffic_floor_counts_rows_and_adam():
    sizes = dict(n_kg_edges=100, training_pairs=300, n_users=10, n_entities=40)
    # 2 directions x 3 hops x (0.5 x 400 kept) rows of 64 floats + Adam 7 x 4 B x 50 x 64
    expected = (2 * 3 * 200 * 256 + 7 * 4 * 50 * 64) / 1e9
    assert abs(kgin_step.traffic_floor_gb(sizes) - expected) < 1e-15


def test_count_ops_leaves_views_out():
    import torch

    class Step:
        def step(self):
            x = torch.ones(4)
            y = x.view(2, 2).t()          # two views: no kernel
            return (y * 2 + 1).sum()      # mul, add, sum

    without_views, everything, phases, large = kgin_step.count_ops(Step(), steps=2)
    assert without_views == 4.0           # ones, mul, add, sum
    assert everything == 6.0
    assert phases == {"batch": 4.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    assert large == {"tensors": 0.0, "gb": 0.0}  # four floats: nothing of 1 MiB
