# -*- coding: utf-8 -*-
"""``recommend`` and ``explain`` on a saved checkpoint.

    run_recbole_kgin.py recommend --checkpoint PATH --users U1,U2 [--topk 20] [--format json|table]
    run_recbole_kgin.py explain --checkpoint PATH --user U [--item I] [--format json|table]
    run_recbole_kgin.py explain --checkpoint PATH --fidelity [--sample 50] [--k 3]

Users and items are the dataset's original ids. The checkpoint's run is rebuilt (same
configuration, same split) and checked against the checkpoint's dataset fingerprint; the weights
loaded are the ones selected on validation.
"""

import argparse
import json

import numpy as np
import torch

from recbole_kgin.errors import UsageError, split_overrides


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _parser(command):
    parser = _Parser(prog=f"run_recbole_kgin.py {command}", allow_abbrev=False)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by training")
    if command == "recommend":
        parser.add_argument("--users", required=True, help="comma-separated user ids")
        parser.add_argument("--topk", default="20", help="items per user (default 20)")
    else:
        parser.add_argument("--user", default=None, help="a user id")
        parser.add_argument("--item", default=None, help="an item id: explain this pair's score")
        parser.add_argument("--paths", default="10", help="KG relation sequences to list")
        parser.add_argument("--fidelity", action="store_true",
                            help="the deletion test: remove each sampled user's top item's k "
                                 "highest-contributing KG edges, against k random ones")
        parser.add_argument("--sample", default="50", help="--fidelity: users (default 50)")
        parser.add_argument("--k", default="3", help="--fidelity: edges removed (default 3)")
        parser.add_argument("--random-draws", default="5",
                            help="--fidelity: random removals per user (default 5)")
        parser.add_argument("--seed", default="2020", help="--fidelity: sampling seed")
    parser.add_argument("--format", default="table", choices=("table", "json"))
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="allow a pickled (RecBole) checkpoint; only for files you trust")
    return parser


def _parse(command, argv):
    parser = _parser(command)
    args, rest = parser.parse_known_args(argv)
    return args, split_overrides(rest)


def _positive_int(option, value):
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise UsageError(f"{option}={value!r}: expected an integer >= 1")
    return number


def _internal_ids(tokens, mapping, kind, dataset, checkpoint):
    index = {t: i for i, t in enumerate(mapping)}
    unknown = [t for t in tokens if t not in index or index[t] == 0]
    if unknown:
        example = mapping[1] if len(mapping) > 1 else "?"
        shown = ", ".join(repr(t) for t in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise UsageError(f"unknown {kind}{'s' if len(unknown) > 1 else ''} {shown} in dataset "
                         f"'{dataset}' of {checkpoint} (ids are the dataset's original ones, "
                         f"e.g. {example!r})")
    return [index[t] for t in tokens]


def _load(args, overrides, checkpoint):
    from recbole_kgin.quick_start import load_checkpoint_run

    return checkpoint, load_checkpoint_run(args.checkpoint, overrides=overrides,
                                           checkpoint=checkpoint)


def _mappings(checkpoint, train_dataset):
    from recbole_kgin import checkpoint as ckpt

    return checkpoint.get("id_mappings") or ckpt.id_mappings(train_dataset)


# ---------------------------------------------------------------------------------- recommend
def recommend(model, train_dataset, users, topk, item_tokens):
    """Top-``topk`` items (tokens, scores) for internal ``users``, the user's training items and
    the padding item excluded."""
    from recbole.data.interaction import Interaction

    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(
            Interaction({model.USER_ID: torch.as_tensor(users, dtype=torch.int64)}))
    scores = scores.reshape(len(users), -1).clone().float()
    seen = train_dataset.inter_matrix(form="csr")
    scores[:, 0] = -torch.inf
    for row, user in enumerate(users):
        items = seen.indices[seen.indptr[user]:seen.indptr[user + 1]]
        scores[row, torch.as_tensor(items, dtype=torch.int64)] = -torch.inf
    available = int(torch.isfinite(scores).sum(dim=1).min())
    k = min(topk, available)
    values, indices = torch.topk(scores, k, dim=1)
    return [[{"item": item_tokens[int(i)], "score": float(v)} for v, i in zip(vs, ix)]
            for vs, ix in zip(values, indices)]


def run_recommend(argv):
    args, overrides = _parse("recommend", argv)
    tokens = [t.strip() for t in args.users.split(",") if t.strip()]
    if not tokens:
        raise UsageError("--users is empty: give comma-separated user ids")
    topk = _positive_int("--topk", args.topk)
    from recbole_kgin import checkpoint as ckpt

    checkpoint = ckpt.load(args.checkpoint, trust=args.trust_checkpoint)
    if checkpoint.get("id_mappings"):  # fail before the dataset is built
        _internal_ids(tokens, checkpoint["id_mappings"]["user"], "user", checkpoint["dataset"],
                      args.checkpoint)
    checkpoint, run = _load(args, overrides, checkpoint)
    _, config, _, train_data, _, _, model = run
    mappings = _mappings(checkpoint, train_data._dataset)
    users = _internal_ids(tokens, mappings["user"], "user", config["dataset"], args.checkpoint)
    lists = recommend(model, train_data._dataset, users, topk, mappings["item"])
    output = {"checkpoint": str(args.checkpoint), "model": config["model"],
              "dataset": config["dataset"], "topk": topk, "excluded": "training items",
              "users": [{"user": t, "items": items} for t, items in zip(tokens, lists)]}
    if args.format == "json":
        print(json.dumps(output, indent=2))
    else:
        print(f"{config['model']} on {config['dataset']}: top {topk} items per user "
              "(training items excluded)")
        print(f"{'user':>10} {'rank':>4}  {'item':<20} {'score':>10}")
        for entry in output["users"]:
            for rank, item in enumerate(entry["items"], 1):
                print(f"{entry['user']:>10} {rank:>4}  {item['item']:<20} {item['score']:>10.4f}")
    return 0


# ---------------------------------------------------------------------------------- explain
def explain(model, train_dataset, user, item=None, n_paths=10, top_relations=3):
    """Plain-data explanation of a user (and of a user-item score when ``item`` is given)."""
    from recbole_kgin.model import kgin_explain as kx

    prop = kx.propagate(model, train_dataset)
    result = {"intents": kx.explain_user(model, train_dataset, prop, user, top_relations)}
    if item is None:
        return result
    score = float(kx.model_scores(model, [user])[0, item])
    parts = kx.intent_decomposition(model, prop, user, item)
    for entry, value in zip(result["intents"], parts["intents"]):
        entry["contribution"] = value
    item_self, sequences = kx.path_decomposition(model, prop, user, item)
    names = kx.relation_names(train_dataset)
    ranked = sorted(sequences.items(), key=lambda kv: -abs(kv[1]))
    result["score"] = score
    result["by_intent"] = {"base": parts["base"], "collaborative": parts["collaborative"],
                           "intents": parts["intents"]}
    result["by_path"] = {
        "item_self": item_self,
        "paths": [{"relations": [names[r] for r in seq], "contribution": value}
                  for seq, value in ranked[:n_paths]],
        "other_paths": float(sum(v for _, v in ranked[n_paths:])),
    }
    return result


def run_fidelity(args, overrides):
    from recbole_kgin import checkpoint as ckpt
    from recbole_kgin.model.kgin_fidelity import deletion_fidelity

    sample = _positive_int("--sample", args.sample)
    k = _positive_int("--k", args.k)
    draws = _positive_int("--random-draws", args.random_draws)
    try:
        seed = int(args.seed)
    except ValueError:
        raise UsageError(f"--seed={args.seed!r}: expected an integer") from None
    checkpoint = ckpt.load(args.checkpoint, trust=args.trust_checkpoint)
    if checkpoint["model"] != "KGIN":
        raise UsageError(f"explain needs a KGIN checkpoint; {args.checkpoint} holds "
                         f"{checkpoint['model']}")
    checkpoint, run = _load(args, overrides, checkpoint)
    _, config, _, train_data, _, _, model = run
    result = deletion_fidelity(model, train_data._dataset, n_users=sample, k=k, n_random=draws,
                               seed=seed)
    output = {"checkpoint": str(args.checkpoint), "dataset": config["dataset"], **result}
    if args.format == "json":
        print(json.dumps(output, indent=2))
        return 0
    print(f"KGIN on {config['dataset']}: deletion test over {result['users']} users "
          f"({result['skipped']} skipped: their top item has {k} or fewer KG edges)")
    if not result["users"]:
        return 0
    print(f"  removing the {k} edges explain ranks highest lowers the top item's score by "
          f"{result['mean_drop_top']:+.4f} on average; {k} random edges of the same item: "
          f"{result['mean_drop_random']:+.4f} (mean of {draws} draws)")
    ratio = result["ratio"]
    print(f"  ratio {ratio:.2f}" if ratio is not None else "  ratio undefined (random drop 0)",
          f"; top-ranked removal hurts at least as much as random for "
          f"{100 * result['share_top_at_least_random']:.0f} % of the users")
    return 0


def run_explain(argv):
    args, overrides = _parse("explain", argv)
    if args.fidelity:
        if args.user is not None or args.item is not None:
            raise UsageError("explain --fidelity samples its own users: drop --user / --item")
        return run_fidelity(args, overrides)
    if args.user is None:
        raise UsageError("explain needs --user U (or --fidelity)")
    n_paths = _positive_int("--paths", args.paths)
    from recbole_kgin import checkpoint as ckpt

    checkpoint = ckpt.load(args.checkpoint, trust=args.trust_checkpoint)
    if checkpoint["model"] != "KGIN":
        raise UsageError(f"explain needs a KGIN checkpoint; {args.checkpoint} holds "
                         f"{checkpoint['model']}")
    if checkpoint.get("id_mappings"):
        _internal_ids([args.user], checkpoint["id_mappings"]["user"], "user",
                      checkpoint["dataset"], args.checkpoint)
        if args.item is not None:
            _internal_ids([args.item], checkpoint["id_mappings"]["item"], "item",
                          checkpoint["dataset"], args.checkpoint)
    checkpoint, run = _load(args, overrides, checkpoint)
    _, config, _, train_data, _, _, model = run
    mappings = _mappings(checkpoint, train_data._dataset)
    user = _internal_ids([args.user], mappings["user"], "user", config["dataset"],
                         args.checkpoint)[0]
    item = None
    if args.item is not None:
        item = _internal_ids([args.item], mappings["item"], "item", config["dataset"],
                             args.checkpoint)[0]
    result = explain(model, train_data._dataset, user, item, n_paths=n_paths)
    output = {"checkpoint": str(args.checkpoint), "dataset": config["dataset"],
              "user": args.user, "item": args.item, **result}
    if args.format == "json":
        print(json.dumps(output, indent=2))
        return 0
    print(f"KGIN on {config['dataset']}: user {args.user}"
          + (f", item {args.item} (score {result['score']:.4f})" if item is not None else ""))
    print("intents (weight beta(u, p) at hop 1; top relations by attention)")
    for entry in result["intents"]:
        relations = ", ".join(f"{r['relation']} {r['attention']:.3f}"
                              for r in entry["top_relations"])
        extra = (f"  contribution {entry['contribution']:+.4f}" if "contribution" in entry else "")
        print(f"  intent {entry['intent']}: beta {entry['weight']:.3f}{extra}  [{relations}]")
    if item is not None:
        parts = result["by_intent"]
        print(f"score by intent: base {parts['base']:+.4f}, collaborative "
              f"{parts['collaborative']:+.4f}, intents {np.sum(parts['intents']):+.4f}")
        paths = result["by_path"]
        print(f"score by KG path (item's own embedding {paths['item_self']:+.4f}, "
              f"other paths {paths['other_paths']:+.4f}):")
        for entry in paths["paths"]:
            print(f"  {' -> '.join(entry['relations']):<60} {entry['contribution']:+.4f}")
    return 0


def main(command, argv):
    if command == "recommend":
        return run_recommend(argv)
    return run_explain(argv)
