"""Convert a dataset in the KGIN / KGAT text format into RecBole atomic files.

Input layout (one directory; every file may also be given ``.xz``-compressed):

* ``train.txt``, ``test.txt`` -- one line per user: ``user item item ...``
  (a user may repeat an item; duplicates are removed per user and counted);
* ``kg_final.txt`` -- one triplet per line: ``head relation tail``;
* optional id lists ``user_list.txt``, ``item_list.txt``, ``entity_list.txt``,
  ``relation_list.txt`` -- a header line, then ``org_id remap_id [freebase_id]``.

In this format item id ``k`` *is* KG entity id ``k``.  The output directory
``OUT/NAME/`` receives ``NAME.{train,valid,test}.inter``, ``NAME.kg``, ``NAME.link``
(item ``k`` <-> entity ``k``), ``stats.json`` and a RecBole config ``NAME.yaml``.
All ids are kept as the authors' remap ids (written as tokens).  Inverse
relations are not written: RecBole adds them itself (``kg_reverse_r``).

Split protocols
---------------
``paper``
    train = ``train.txt``, test = ``test.txt``, valid = a copy of the test file.  The
    reference implementation has no validation split and selects its model on the
    test set, so results obtained this way are *test-selected*.
``holdout`` (default)
    test = ``test.txt`` unchanged; valid = a seeded fraction ``valid_ratio`` of each
    user's de-duplicated training items, train = the remaining training items.
    Per user with ``n`` training items: ``n_valid = floor(n * valid_ratio)``, raised
    to 1 when it is 0 and ``n >= 2``; a user with a single training item keeps it in
    train.
``resplit`` (``resplit=(a, b, c)``)
    all given interaction files (``train.txt`` and/or ``test.txt``) are pooled,
    de-duplicated per user and re-split per user.  Per user with ``n`` items:
    ``n_valid = floor(n * b)``, ``n_test = floor(n * c)``, train gets the rest; then,
    while train keeps at least one item, an empty test part receives one item and
    after that an empty valid part receives one.  So a user with 1 item is train
    only, a user with 2 items is split 1 train / 1 test, a user with 3 or more items
    has at least one item in every part.

Which items of a user go where is decided by a per-pair hash of
``(seed, user, item)``, so the split of a user does not depend on the other users.

The catalogue
-------------
Every item of ``item_list.txt`` (without one: ids 0 .. the largest interacted id) is in the
catalogue, whether or not it occurs in an interaction, and is written to ``NAME.item``: RecBole
ranks every item of the catalogue. Held-out pairs therefore never decide which items exist.

Subsets, drawn before the split (``subset.py``)
-----------------------------------------------
``items=N`` (the way to make a CPU-sized benchmark)
    ``N`` item ids are drawn with the seed from the id list -- with ``item_groups=RELATION``
    whole groups of items that share an entity through that relation (e.g. all tracks of an
    artist), until at least ``N`` are drawn. Every interaction with a drawn item is kept, for the
    users with at least ``min_user_inter`` distinct drawn items; then the split runs. The KG is the
    ``kg_hops``-hop neighbourhood of the drawn catalogue (hop 1: every triplet touching a drawn
    item; each further hop: the triplets touching an id reached so far).
``users=N``
    ``N`` users (with at least ``min_user_inter`` items) are drawn with all their interactions;
    the catalogue and the KG stay the whole dataset's. Each kept user has exactly the split it
    has in the full dataset.

Neither depends on which pairs become valid or test pairs (tested: removing them from the source
files gives the same catalogue and KG). ``stats.json``'s ``density`` gives the subset's and the
parent's interactions per user and per catalogue item, and their cold valid/test shares (pairs
whose item never occurs in training).

The link file
-------------
``NAME.link`` pairs item ``k`` with entity ``k`` for every catalogue item that occurs in the
written KG. A catalogue item without any triplet gets no link row (RecBole then treats it as an
isolated entity); a KG id below the item count outside the catalogue stays a plain entity.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from recbole_kgin.data.common import (_SPLITS, PAPER_TABLE1, ConvertError,
                                      default_out_root)
from recbole_kgin.data.read import _Inter, _locate, _read_id_list, _read_id_names, _read_kg
from recbole_kgin.data.split import _dedup_triplets, _holdout, _resplit, _unique_pairs
from recbole_kgin.data.subset import (active_users, density, draw_items, kg_neighbourhood,
                                      relation_id)
from recbole_kgin.data.subset import item_groups as _item_groups
from recbole_kgin.data.stats import _detect_known, _paper_comparison, _summary
from recbole_kgin.data.validate import _parse_ratios, check_name
from recbole_kgin.data.write import (_install, _umask, _write_inter, _write_items, _write_kg,
                                     _write_link, _write_text, _yaml_text, clean_stale, make_temp_dir)

__all__ = [
    "ConvertError",
    "PAPER_TABLE1",
    "build_parser",
    "convert",
    "default_out_root",
    "main",
]


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


def _subset_words(subsample: dict) -> str:
    if subsample["mode"] == "users":
        return f"subsample of {subsample['users']} users (full catalogue and KG)"
    groups = subsample["item_groups"]
    how = (f" in whole groups by relation {groups['relation_name'] or groups['relation']}"
           if groups else "")
    return (f"subset of {subsample['items']} drawn items{how}, users with "
            f"{subsample['min_user_inter']}+ of them")


def _dedup_split(raw: dict, ratios, valid: str, valid_ratio: float, seed: int) -> dict:
    """De-duplicate the ``{base: (users, items, raw_pairs)}`` interaction files and split them by
    the protocol; return the split with its bookkeeping (duplicates, overlap, description)."""
    pairs, dups, raw_pairs = {}, {}, {}
    for base, (users, items, n_raw) in raw.items():
        u, i = _unique_pairs(users, items)
        pairs[base] = (u, i)
        raw_pairs[f"{base}.txt"] = int(n_raw)
        dups[f"{base}.txt"] = int(n_raw) - int(u.size)
    overlap = 0
    if "train" in pairs and "test" in pairs:
        tr = pairs["train"][0] << 32 | pairs["train"][1]
        te = pairs["test"][0] << 32 | pairs["test"][1]
        overlap = int(np.isin(te, tr, assume_unique=True).sum())
    if ratios is not None:
        pooled_u = np.concatenate([p[0] for p in pairs.values()])
        pooled_i = np.concatenate([p[1] for p in pairs.values()])
        n_before = pooled_u.size
        pooled_u, pooled_i = _unique_pairs(pooled_u, pooled_i)
        dups["pooled across files"] = int(n_before - pooled_u.size)
        pairs = {"pool": (pooled_u, pooled_i)}
    dups["total"] = int(sum(dups.values()))

    if ratios is not None:
        u, i = pairs["pool"]
        tr, va, te = _resplit(seed, u, i, ratios)
        split = {"train": (u[tr], i[tr]), "valid": (u[va], i[va]), "test": (u[te], i[te])}
        used = [f"{b}.txt" for b in ("train", "test") if b in raw]
        protocol = f"resplit {ratios[0]:g}/{ratios[1]:g}/{ratios[2]:g}"
        description = (f"the de-duplicated interactions of {' + '.join(used)} pooled and re-split "
                       f"per user {ratios[0]:g}/{ratios[1]:g}/{ratios[2]:g} (seed {seed}).\n"
                       "Per user: valid = floor(n*valid), test = floor(n*test), train = rest; an empty "
                       "test, then valid, part gets one item while train keeps one.")
    elif valid == "paper":
        split = {"train": pairs["train"], "valid": pairs["test"], "test": pairs["test"]}
        protocol = "paper"
        description = ("train = train.txt, test = test.txt, valid = a copy of test.txt: model "
                       "selection on it is test-selected,\nas in the reference code (which has no "
                       "validation split).")
    else:
        u, i = pairs["train"]
        tr, va = _holdout(seed, u, i, valid_ratio)
        split = {"train": (u[tr], i[tr]), "valid": (u[va], i[va]), "test": pairs["test"]}
        protocol = f"holdout {valid_ratio:g}"
        description = (f"test = test.txt unchanged; valid = a seeded {valid_ratio:g} of each user's "
                       f"de-duplicated train.txt items (seed {seed};\nat least one when the user has 2 "
                       "or more, none when 1); train = the remaining train.txt items.")
    return {"split": split, "protocol": protocol, "description": description, "dups": dups,
            "raw_pairs": raw_pairs, "overlap": overlap}


def convert(src, name, out_root=None, valid="holdout", valid_ratio=0.1, resplit=None,
            users=None, seed=2020, overwrite=False, no_kg=False, kg_hops=None,
            allow_empty_users=False, quiet=False, items=None, item_groups=None,
            min_user_inter=1) -> dict:
    """Convert the KGIN-format dataset in ``src`` into ``out_root/name``; return its stats.

    Raises :class:`ConvertError` (one-line message) for bad input or when the destination
    exists and ``overwrite`` is false.  Nothing is left in ``out_root`` unless the whole
    dataset was written.
    """
    t_start = time.perf_counter()
    src = Path(src)
    out_root = Path(out_root) if out_root is not None else default_out_root()
    check_name(name)
    if valid not in ("paper", "holdout"):
        raise ConvertError(f"--valid {valid!r}: expected 'paper' or 'holdout'")
    ratios = _parse_ratios(resplit) if resplit is not None else None
    if ratios is not None and valid == "paper":
        raise ConvertError("--valid paper and --resplit cannot be combined")
    if not (0 < valid_ratio < 1):
        raise ConvertError(f"--valid-ratio {valid_ratio}: expected a number in (0, 1)")
    if users is not None and users < 1:
        raise ConvertError(f"--users {users}: expected a positive number")
    if items is not None and items < 1:
        raise ConvertError(f"--items {items}: expected a positive number")
    if users is not None and items is not None:
        raise ConvertError("--users and --items cannot be combined: draw users or items")
    if item_groups is not None and items is None:
        raise ConvertError("--item-groups needs --items N (the number of items to draw)")
    if item_groups is not None and no_kg:
        raise ConvertError("--item-groups needs the KG (it cannot be combined with --no-kg)")
    if kg_hops is not None and items is None:
        raise ConvertError("--kg-hops applies to --items subsets only (a --users subsample keeps "
                           "the whole catalogue and KG)")
    kg_hops = 1 if kg_hops is None else kg_hops
    if kg_hops < 1:
        raise ConvertError(f"--kg-hops {kg_hops}: expected 1 or more")
    if min_user_inter < 1:
        raise ConvertError(f"--min-user-inter {min_user_inter}: expected 1 or more")
    if min_user_inter > 1 and users is None and items is None:
        raise ConvertError("--min-user-inter applies to a subset (--items or --users) only")
    if seed < 0:
        raise ConvertError(f"--seed {seed}: expected 0 or more")
    dest = out_root / name
    if dest.exists() and not overwrite:
        raise ConvertError(f"{dest} already exists (use --overwrite to replace it)")
    if not src.is_dir():
        raise ConvertError(f"{src}: source directory not found")

    # ---- locate and read the inputs
    files = {base: _locate(src, f"{base}.txt") for base in
             ("train", "test", "kg_final", "user_list", "item_list", "entity_list", "relation_list")}
    if no_kg:
        files["kg_final"] = None
    if ratios is None:
        for base in ("train", "test"):
            if files[base] is None:
                raise ConvertError(f"{src / (base + '.txt')}: missing file (also no .xz); "
                                   "--resplit works from whichever interaction files exist")
    elif files["train"] is None and files["test"] is None:
        raise ConvertError(f"{src / 'test.txt'}: missing file (neither train.txt nor test.txt found)")
    if not no_kg and files["kg_final"] is None:
        raise ConvertError(f"{src / 'kg_final.txt'}: missing file (use --no-kg to convert "
                           "the interactions only)")

    n_list = {base: (_read_id_list(files[base]) if files[base] is not None else None)
              for base in ("user_list", "item_list", "entity_list", "relation_list")}

    kg = None
    dup_triplets = 0
    if files["kg_final"] is not None:
        kg_path = files["kg_final"]
        kg, kg_lines = _read_kg(kg_path)
        if n_list["relation_list"] is not None:
            over = kg[:, 1] >= n_list["relation_list"]
            if over.any():
                k = int(np.argmax(over))
                raise ConvertError(f"{kg_path}:{kg_lines[k]}: relation id {kg[k, 1]} out of range "
                                   f"(relation_list.txt has {n_list['relation_list']} relations)")
        if n_list["entity_list"] is not None:
            over = np.maximum(kg[:, 0], kg[:, 2]) >= n_list["entity_list"]
            if over.any():
                k = int(np.argmax(over))
                raise ConvertError(f"{kg_path}:{kg_lines[k]}: entity id "
                                   f"{max(kg[k, 0], kg[k, 2])} out of range "
                                   f"(entity_list.txt has {n_list['entity_list']} entities)")
        n_kg_ids = (n_list["entity_list"] if n_list["entity_list"] is not None
                    else int(max(kg[:, 0].max(), kg[:, 2].max())) + 1)
        n_rel_ids = (n_list["relation_list"] if n_list["relation_list"] is not None
                     else int(kg[:, 1].max()) + 1)
        kg, dup_triplets = _dedup_triplets(kg)

    inters = {base: _Inter(files[base], allow_empty_users) for base in ("train", "test")
              if files[base] is not None}
    for base, inter in inters.items():
        if n_list["user_list"] is not None:
            inter.check_range("user", n_list["user_list"],
                              f"user_list.txt has {n_list['user_list']} users")
        if n_list["item_list"] is not None:
            inter.check_range("item", n_list["item_list"],
                              f"item_list.txt has {n_list['item_list']} items")
        if kg is not None:
            why = (f"entity_list.txt has {n_kg_ids} ids" if n_list["entity_list"] is not None
                   else f"kg_final.txt has ids 0..{n_kg_ids - 1}")
            inter.check_range("item", n_kg_ids, f"item k must be KG entity k; {why}")
    n_item_ids = (n_list["item_list"] if n_list["item_list"] is not None
                  else max(int(i.items.max()) for i in inters.values()) + 1)

    # ---- the catalogue, and an optional subset drawn before any split
    relation_names = (_read_id_names(files["relation_list"])
                      if files["relation_list"] is not None else None)
    catalogue = np.ones(n_item_ids, dtype=bool)
    subsample = None
    raw = {base: (inter.users, inter.items, inter.raw_pairs) for base, inter in inters.items()}
    all_users = np.unique(np.concatenate([inter.users for inter in inters.values()]))
    pooled_u = np.concatenate([inter.users for inter in inters.values()])
    pooled_i = np.concatenate([inter.items for inter in inters.values()])
    if items is not None:
        if items > n_item_ids:
            raise ConvertError(f"--items {items}: the id list has only {n_item_ids} items")
        groups = None
        if item_groups is not None:
            rid = relation_id(item_groups, relation_names, n_rel_ids)
            groups = _item_groups(kg, n_item_ids, rid)
        catalogue = draw_items(n_item_ids, items, seed, groups)
        in_cat = catalogue[pooled_i]
        kept_users = active_users(pooled_u[in_cat], pooled_i[in_cat], min_user_inter)
        subsample = {"mode": "items", "items_requested": int(items),
                     "items": int(catalogue.sum()), "item_ids_available": int(n_item_ids),
                     "item_groups": None, "min_user_inter": int(min_user_inter),
                     "kg_hops": int(kg_hops), "users_available": int(all_users.size)}
        if groups is not None:
            subsample["item_groups"] = {
                "relation": rid,
                "relation_name": relation_names[rid] if relation_names else None,
                "groups_drawn": int(np.unique(groups[catalogue]).size),
                "groups_available": int(np.unique(groups).size),
                "items_without_group": int((groups < 0).sum())}
    elif users is not None:
        eligible = active_users(pooled_u, pooled_i, min_user_inter)
        if users > eligible.size:
            raise ConvertError(f"--users {users}: only {eligible.size} users have "
                               f"{min_user_inter} or more items")
        rng = np.random.default_rng(seed)
        kept_users = np.sort(rng.choice(eligible, size=users, replace=False))
        subsample = {"mode": "users", "users": int(users), "min_user_inter": int(min_user_inter),
                     "users_available": int(all_users.size), "kg_hops": None}
    if subsample is not None:
        for inter in inters.values():
            keep = catalogue[inter.items] & np.isin(inter.users, kept_users)
            inter.users, inter.items, inter.lines = inter.users[keep], inter.items[keep], inter.lines[keep]
            inter.raw_pairs = int(keep.sum())
        if kg is not None:
            subsample["triplets_available"] = int(kg.shape[0])
            if items is not None:
                start = np.zeros(n_kg_ids, dtype=bool)
                start[:n_item_ids] = catalogue
                kg = kg[kg_neighbourhood(kg, start, kg_hops)]

    # ---- de-duplicate and split (the parent too, for its densities)
    parts = _dedup_split({base: (inter.users, inter.items, inter.raw_pairs)
                          for base, inter in inters.items()}, ratios, valid, valid_ratio, seed)
    split, protocol, description = parts["split"], parts["protocol"], parts["description"]
    dups, raw_pairs, overlap = parts["dups"], parts["raw_pairs"], parts["overlap"]
    densities = {"subset": None, "parent": None}
    if subsample is not None:
        densities["subset"] = density(split, int(catalogue.sum()))
        densities["parent"] = density(_dedup_split(raw, ratios, valid, valid_ratio, seed)["split"],
                                      int(n_item_ids))
    else:
        densities["parent"] = density(split, int(n_item_ids))
    test_selected = protocol == "paper"
    paper_split = protocol == "paper" and subsample is None

    # ---- counts
    written_u = np.concatenate([split[s][0] for s in _SPLITS])
    written_i = np.concatenate([split[s][1] for s in _SPLITS])
    inter_counts = {s: int(split[s][0].size) for s in _SPLITS}
    total_unique = inter_counts["train"] + inter_counts["test"] + (
        0 if protocol == "paper" else inter_counts["valid"])
    items_interacted = np.unique(written_i)
    catalogue_ids = np.flatnonzero(catalogue)
    if kg is not None:
        ids = np.unique(np.concatenate([kg[:, 0], kg[:, 2]]))
        link_items = np.intersect1d(ids, catalogue_ids, assume_unique=True)
        n_kg_written = int(ids.size)
        n_entities = int((ids >= n_item_ids).sum())
        n_relations = int(np.unique(kg[:, 1]).size)
        n_triplets = int(kg.shape[0])
    else:
        link_items = None
        n_kg_written = n_entities = n_relations = n_triplets = 0
    counts = {
        "users": int(np.unique(written_u).size),
        "items": int(catalogue_ids.size),
        "items_interacted": int(items_interacted.size),
        "item_ids": int(n_item_ids),
        "interactions": {**inter_counts, "total_unique": int(total_unique)},
        "entities": n_entities,
        "kg_ids": n_kg_written,
        "relations": n_relations,
        "triplets": n_triplets,
        "links": int(link_items.size) if link_items is not None else 0,
        "items_without_kg": (int(catalogue_ids.size - link_items.size)
                             if link_items is not None else None),
    }
    id_space = {
        "users": n_list["user_list"] if n_list["user_list"] is not None else int(all_users.max()) + 1,
        "items": int(n_item_ids),
        "kg_ids": int(n_kg_ids) if kg is not None else n_list["entity_list"],
        "relations": int(n_rel_ids) if kg is not None else n_list["relation_list"],
    }

    stats = {
        "name": name,
        "source": str(src.resolve()),
        "files": {k: (v.name if v is not None else None) for k, v in files.items()},
        "protocol": protocol,
        "protocol_description": description,
        "test_selected": test_selected,
        "paper_split": paper_split,
        "seed": int(seed),
        "valid_ratio": float(valid_ratio) if protocol.startswith("holdout") else None,
        "resplit": list(ratios) if ratios is not None else None,
        "subsample": subsample,
        "kg": kg is not None,
        "counts": counts,
        "density": densities,
        "id_space": id_space,
        "raw_pairs": raw_pairs,
        "user_lines_without_items": {f"{b}.txt": i.empty_users for b, i in inters.items()},
        "duplicates_removed": {**dups, "kg_final.txt": dup_triplets},
        "train_test_overlap": overlap if ratios is None else None,
        "paper_table1": None,
    }

    # ---- comparison with the paper, for the three published datasets
    known = _detect_known(src, name, id_space["items"],
                          id_space["relations"] if id_space["relations"] is not None else -1)
    if known is not None:
        missing = [f"{b}.txt" for b in ("train", "test") if files[b] is None]
        reasons = {}
        inter_why = []
        if missing:
            inter_why.append(f"{' and '.join(missing)} not available here")
        if ratios is not None:
            inter_why.append("interactions re-split")
        if dups["total"]:
            inter_why.append(f"{dups['total']:,} per-user duplicates removed "
                             f"(raw pairs {sum(raw_pairs.values()):,})")
        if subsample:
            inter_why.append(_subset_words(subsample))
        if not inter_why:
            inter_why.append(f"the available files hold {sum(raw_pairs.values()):,} pairs; the "
                             "paper's figure does not follow from them")
        reasons["interactions"] = "; ".join(inter_why)
        if subsample:
            reasons["users"] = _subset_words(subsample)
            if subsample["mode"] == "items":
                reasons["items"] = _subset_words(subsample)
        elif missing:
            reasons["users"] = f"users without interactions in the available files ({', '.join(missing)} missing)"
        kg_why = []
        if kg is None:
            kg_why.append("no KG written (" + ("kg_final.txt not available here"
                                                if _locate(src, "kg_final.txt") is None
                                                else "--no-kg") + ")")
        if subsample and kg is not None and subsample["mode"] == "items":
            kg_why.append(f"KG restricted to {kg_hops} hop(s) around the drawn items")
        if dup_triplets:
            kg_why.append(f"{dup_triplets:,} repeated triplets removed")
        if not kg_why and kg is not None:
            kg_why.append("ids listed but not occurring in any triplet")
        for c in ("entities", "relations", "triplets"):
            reasons[c] = "; ".join(kg_why) or None
        if kg is None:
            listed = {"entities": (n_list["entity_list"] - n_item_ids
                                   if n_list["entity_list"] is not None else None),
                      "relations": n_list["relation_list"]}
            for c, v in listed.items():
                if v is not None:
                    reasons[c] += f"; the id list has {v:,}"
        if n_list["item_list"] is None and not subsample:
            reasons["items"] = "no item_list.txt: counted as the largest interacted item id + 1"
        ours = {"users": counts["users"],
                "items": counts["items"],
                "interactions": total_unique,
                "entities": n_entities, "relations": n_relations, "triplets": n_triplets}
        stats["paper_table1"] = _paper_comparison(known, ours, reasons)

    # ---- write atomically
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        for note in clean_stale(out_root):
            _say(quiet, note)
        tmp = make_temp_dir(out_root, name)
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as exc:
        raise ConvertError(f"{out_root}: cannot create the output directory ({exc.strerror or exc})") from None
    try:
        for s in _SPLITS:
            _write_inter(tmp / f"{name}.{s}.inter", *split[s])
        if kg is not None:
            _write_kg(tmp / f"{name}.kg", kg)
            _write_link(tmp / f"{name}.link", link_items)
        _write_items(tmp / f"{name}.item", catalogue_ids)
        _write_text(tmp / "stats.json", json.dumps(stats, indent=2) + "\n")
        _write_text(tmp / f"{name}.yaml", _yaml_text(name, stats))
        _install(tmp, dest, overwrite)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConvertError(f"{dest}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    elapsed = time.perf_counter() - t_start
    _say(quiet, _summary(stats, dest, elapsed))
    return stats


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr instead of usage + exit
        raise _ArgumentError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="convert",
        description="Convert a KGIN/KGAT-format dataset (train.txt, test.txt, kg_final.txt, "
                    "id lists; plain or .xz) into RecBole atomic files.",
    )
    p.add_argument("--src", required=True, help="directory with the KGIN-format files")
    p.add_argument("--name", required=True, help="dataset name (output directory and file prefix)")
    p.add_argument("--out", default=None,
                   help="output root (default: the repository's atomic_data/)")
    p.add_argument("--valid", choices=("paper", "holdout"), default="holdout",
                   help="paper: valid = copy of test (test-selected); holdout (default): "
                        "a seeded fraction of each user's training items")
    p.add_argument("--valid-ratio", type=float, default=0.1,
                   help="holdout fraction of each user's training items (default 0.1)")
    p.add_argument("--resplit", default=None, metavar="TRAIN,VALID,TEST",
                   help="pool the given interaction files and re-split per user, e.g. 0.8,0.1,0.1")
    p.add_argument("--items", type=int, default=None, metavar="N",
                   help="leak-free subset: draw N items from the id list (before any split), keep "
                        "every interaction with them and the KG within --kg-hops of them")
    p.add_argument("--item-groups", default=None, metavar="RELATION",
                   help="with --items: draw whole groups of items that share an entity through "
                        "RELATION (an id, or a name such as 'music.recording.artist' or 'artist')")
    p.add_argument("--min-user-inter", type=int, default=1, metavar="M",
                   help="with --items or --users: keep users with at least M distinct items "
                        "(counted before the split; default 1)")
    p.add_argument("--users", type=int, default=None, metavar="N",
                   help="seeded subsample of N users with all their interactions; the catalogue "
                        "and the KG stay the whole dataset's")
    p.add_argument("--kg-hops", type=int, default=None,
                   help="with --items: KG hops kept around the drawn items (default 1)")
    p.add_argument("--no-kg", action="store_true",
                   help="interactions only (for general models); kg_final.txt is not read")
    p.add_argument("--allow-empty-users", action="store_true",
                   help="skip (and count) lines that hold a user id but no item; by default "
                        "such a line is an error")
    p.add_argument("--seed", type=int, default=2020, help="random seed (default 2020)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        print(f"convert: error: {exc} (see --help)", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        convert(args.src, args.name, out_root=args.out, valid=args.valid,
                valid_ratio=args.valid_ratio, resplit=args.resplit, users=args.users,
                seed=args.seed, overwrite=args.overwrite, no_kg=args.no_kg,
                kg_hops=args.kg_hops, allow_empty_users=args.allow_empty_users,
                quiet=args.quiet, items=args.items, item_groups=args.item_groups,
                min_user_inter=args.min_user_inter)
    except ConvertError as exc:
        print(f"convert: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("convert: interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
