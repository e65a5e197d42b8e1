"""Tiny synthetic knowledge-aware datasets, written as RecBole atomic files inside a test's tmp dir.

Users belong to latent groups; every group prefers the items attached to a few "genre" entities in
the KG, so a model that uses the KG and the interactions can learn something in one epoch.
"""

from pathlib import Path

import numpy as np


def write_kg_dataset(root, name="tiny", n_users=60, n_items=80, n_genres=6, n_extra=20,
                     per_user=12, seed=0, unlinked_items=0):
    """Write ``root/name/name.{inter,kg,link}``; returns the dataset directory.

    Item tokens are ``i<k>``, entity tokens ``e<k>`` (item k <-> entity e<k>), relations
    ``genre``, ``similar`` and ``tag``. The last ``unlinked_items`` items have interactions but no
    link and no triplet (as in real data where some items are missing from the KG).
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)

    item_genre = rng.integers(0, n_genres, size=n_items)
    user_genre = rng.integers(0, n_genres, size=n_users)
    lines = ["user_id:token\titem_id:token"]
    for u in range(n_users):
        liked = np.flatnonzero(item_genre == user_genre[u])
        other = np.flatnonzero(item_genre != user_genre[u])
        n_liked = min(len(liked), int(per_user * 0.75))
        picks = list(rng.choice(liked, size=n_liked, replace=False))
        picks += list(rng.choice(other, size=per_user - n_liked, replace=False))
        lines += [f"u{u}\ti{i}" for i in picks]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")

    genre_entity = [f"g{g}" for g in range(n_genres)]
    kg = ["head_id:token\trelation_id:token\ttail_id:token"]
    linked = n_items - unlinked_items
    for i in range(linked):
        kg.append(f"e{i}\tgenre\t{genre_entity[item_genre[i]]}")
        j = int(rng.choice(np.flatnonzero(item_genre[:linked] == item_genre[i])))
        if j != i:
            kg.append(f"e{i}\tsimilar\te{j}")
        kg.append(f"e{i}\ttag\tx{int(rng.integers(0, n_extra))}")
    (folder / f"{name}.kg").write_text("\n".join(kg) + "\n")

    link = ["item_id:token\tentity_id:token"] + [f"i{i}\te{i}" for i in range(linked)]
    (folder / f"{name}.link").write_text("\n".join(link) + "\n")
    return folder


def tiny_config(data_root, **extra):
    """Config dict for a fast CPU run on a dataset written by :func:`write_kg_dataset`."""
    config = {
        "data_path": str(data_root),
        "checkpoint_dir": str(Path(data_root) / "saved"),
        "load_col": {
            "inter": ["user_id", "item_id"],
            "kg": ["head_id", "relation_id", "tail_id"],
            "link": ["item_id", "entity_id"],
        },
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO",
                      "mode": "full"},
        "epochs": 1,
        "eval_step": 1,
        "train_batch_size": 256,
        "eval_batch_size": 256,
        "use_gpu": False,
        "show_progress": False,
        "state": "WARNING",
        "seed": 2020,
    }
    config.update(extra)
    return config
