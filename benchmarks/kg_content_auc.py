# -*- coding: utf-8 -*-
"""How well item-content cosine similarity alone ranks a user's held-out items on RecBole's bundled
ml-100k, computed from the raw atomic files without RecBole's pipeline: an independent check of
KGItemKNN's chance-level score there (BENCHMARKS.md §14).

For 300 users (in file order), a seeded 20 % of their items are held out; every other item the user
has not kept is a candidate, scored by the summed cosine similarity to the kept items; the AUC of
the held-out items among the candidates is averaged over the users. Features: the Freebase KG
neighbourhood of each item (``ml-100k.kg`` via ``ml-100k.link``, all relations or one), or
MovieLens's own genre labels (``ml-100k.item``).

    python benchmarks/kg_content_auc.py [--users 300] [--seed 0]
"""

import argparse
import json
import os

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def _folder():
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")


def kg_features(folder, relation=None):
    kg = pd.read_csv(os.path.join(folder, "ml-100k.kg"), sep="\t")
    kg.columns = ["h", "r", "t"]
    link = pd.read_csv(os.path.join(folder, "ml-100k.link"), sep="\t")
    link.columns = ["i", "e"]
    item_of = dict(zip(link.e, link.i))
    if relation is not None:
        kg = kg[kg.r == relation]
    features = {}
    for h, t in zip(kg.h, kg.t):
        if h in item_of:
            features.setdefault(item_of[h], set()).add(t)
        if t in item_of:
            features.setdefault(item_of[t], set()).add(h)
    return features


def genre_features(folder):
    items = pd.read_csv(os.path.join(folder, "ml-100k.item"), sep="\t")
    return {i: set(g.split(" ")) for i, g in zip(items.iloc[:, 0], items.iloc[:, -1])}


def mean_auc(features, inter, users, seed):
    entities = sorted({x for s in features.values() for x in s})
    index = {x: k for k, x in enumerate(entities)}
    n = max(features) + 1
    matrix = np.zeros((n, len(entities)))
    for item, values in features.items():
        for x in values:
            matrix[item, index[x]] = 1.0
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, 0.0)
    catalogue = np.array(sorted(features))
    rng = np.random.default_rng(seed)
    aucs = []
    for _, group in list(inter.groupby(inter.columns[0]))[:users]:
        items = np.intersect1d(group.iloc[:, 1].to_numpy(), catalogue)
        rng.shuffle(items)
        held = max(1, len(items) // 5)
        test, train = items[:held], items[held:]
        candidates = np.setdiff1d(catalogue, train)
        ranks = rankdata(similarity[train].sum(axis=0)[candidates])
        positive = np.isin(candidates, test)
        n1, n0 = positive.sum(), len(candidates) - positive.sum()
        aucs.append((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    return float(np.mean(aucs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = _folder()
    inter = pd.read_csv(os.path.join(folder, "ml-100k.inter"), sep="\t")
    out = {
        "kg_all_relations": mean_auc(kg_features(folder), inter, args.users, args.seed),
        "kg_film.film.genre": mean_auc(kg_features(folder, "film.film.genre"), inter, args.users,
                                       args.seed),
        "movielens_genres": mean_auc(genre_features(folder), inter, args.users, args.seed),
    }
    print(json.dumps({"users": args.users, "seed": args.seed, "mean_auc": out}, indent=2))


if __name__ == "__main__":
    main()
