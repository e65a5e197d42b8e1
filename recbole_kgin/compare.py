# -*- coding: utf-8 -*-
"""``run_recbole_kgin.py compare``: KGIN against RecBole's baselines under one protocol.

    run_recbole_kgin.py compare --dataset ml-100k [--models KGIN,KGAT,CKE,BPR,LightGCN,Pop,ItemKNN,EASE]
        [--trials N] [--seeds K] [--patience P] [--epochs=E] [--out results] [--run NAME]
        [--cpus-per-trial C] [--gpus-per-trial G] [--address ADDR] [--resume] [--force]
        [--config_files "a.yaml b.yaml"] [--key=value ...]

For every model, the experiment layer (:mod:`recbole_kgin.experiment`) runs: a Ray Tune search of
``--trials`` trials over ``properties/tune/<Model>.yaml`` selecting on validation (every trial trains
to early stopping within the epoch cap), then ``--seeds`` final runs of the selected configuration
with different model seeds on one fixed split, each tested once; the table reports mean ± std over
seeds, epochs run, best epoch, convergence and a paired Wilcoxon test over test users against KGIN.
Every model gets the same epoch cap, patience, batch size, number of trials and seeds.

Output in ``<out>/<run>/``: ``table.md``, ``table.csv``, ``results.json``, ``curves.png``,
``bars.png``, ``per_user/<Model>.npz`` and ``models/<Model>/`` (the search and the seed runs).
Re-running the command (or ``--resume``) continues: finished models, a complete search and finished
seed runs are kept. A search whose Ray Tune state is gone (the run folder copied to another machine
without ``models/<Model>/search/``) keeps the trials of its ledger, ``models/<Model>/search_trials.jsonl``
(:mod:`recbole_kgin.experiment.ledger`; spaces of ``choice`` keys only), and runs only the
configurations missing there. A model finished or started with other settings is refused (``--force``
replaces it). One command at a time writes into a run folder: it holds ``<run>/.run.lock``
(:mod:`recbole_kgin.experiment.run_lock`) and a second command on the same folder is refused with
the holder's PID before it writes anything. Exit status: 0 when every model ran, 1 when one
failed, 2 on a usage error, 130 when interrupted.
"""

import difflib
import hashlib
import json
import os
import shlex
import sys
import time
from pathlib import Path

from recbole_kgin.arguments import parse_compare, search_options
from recbole_kgin.data import kg_variant_hook
from recbole_kgin.errors import UsageError
from recbole_kgin.experiment import (files, ledger, per_user, protocol, report, run_lock,
                                     search, stats)
from recbole_kgin.experiment.files import read_json, write_atomic, write_json
from recbole_kgin.experiment.runner import build_dataset_blob

# Model types whose models rank the full item set through RecBole's full-sort evaluator.
_RANKING_TYPES = ("GENERAL", "KNOWLEDGE", "TRADITIONAL")
BUDGET_DEFAULTS = {"epochs": 300, "eval_step": 1, "train_batch_size": 1024}


# ---------------------------------------------------------------------------------------------
# checks made before anything is written


def ranking_model_names():
    """Names ``compare`` accepts: this package's models and RecBole's general and knowledge-aware
    models."""
    import recbole.model.general_recommender as general
    import recbole.model.knowledge_aware_recommender as knowledge

    from recbole_kgin.utils import MODELS

    names = set(MODELS)
    for module in (general, knowledge):
        names.update(n for n in dir(module) if isinstance(getattr(module, n), type))
    return sorted(names)


def check_model_names(names):
    """Reject unknown names, models that cannot be ranked with the full-sort evaluator and models
    whose trainer ignores the epoch budget."""
    from recbole_kgin.utils import get_model

    known = ranking_model_names()
    for name in names:
        if name in protocol.BUDGET_IGNORING:
            raise UsageError(f"model {name} is refused: {protocol.BUDGET_IGNORING[name]}")
        model_class = None
        try:
            model_class = get_model(name)
        except Exception:  # RecBole's lookup fails in several ways (ValueError, ImportError, ...)
            pass
        kind = getattr(getattr(model_class, "type", None), "name", None)
        if model_class is not None and kind not in _RANKING_TYPES:
            raise UsageError(
                f"model {name} is a {kind or 'non-recommender'} model; compare ranks all items "
                "and takes general (incl. traditional) or knowledge-aware models"
            )
        if model_class is None or name not in known:
            by_lower = {k.lower(): k for k in known}
            close = [by_lower[k] for k in
                     difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(
                f"unknown model {name!r}: not a general or knowledge-aware model of RecBole or "
                f"of this package{hint}"
            )


def _is_knowledge_aware(name):
    from recbole_kgin.utils import uses_kg

    return uses_kg(name)


def needs_kg_filter(names, overrides, config_files):
    """True when the models mix knowledge-aware and other models and the user has not chosen
    ``kg_linked_items_only`` on the command line or in a config file."""
    import yaml

    if "kg_linked_items_only" in overrides:
        return False
    for file in config_files or []:
        with open(file, encoding="utf-8") as handle:
            try:
                content = yaml.safe_load(handle)
            except yaml.YAMLError as err:
                raise UsageError(f"{file}: not valid YAML ({str(err).splitlines()[0]})") from None
        if isinstance(content, dict) and "kg_linked_items_only" in content:
            return False
    return {_is_knowledge_aware(name) for name in names} == {True, False}


def check_dataset_files(config):
    """The dataset's interaction file(s) must exist before anything is written."""
    folder = Path(config["data_path"])
    name = config["dataset"]
    parts = config["benchmark_filename"] or [None]
    files = [folder / (f"{name}.inter" if p is None else f"{name}.{p}.inter") for p in parts]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UsageError(f"dataset {name!r} not found: no {missing[0]} (convert it first, or "
                         "pass --data_path=DIR)")


def protocol_of(config):
    """The configuration every model must share, as JSON-friendly values."""
    from recbole_kgin.experiment.files import jsonable

    values = {}
    for key in protocol.PROTOCOL_KEYS:
        value = config[key] if key in config else None
        values[key] = json.loads(json.dumps(value, default=jsonable))
    load_col = config["load_col"] if "load_col" in config else None
    values["load_col.inter"] = (load_col or {}).get("inter") if isinstance(load_col, dict) else None
    return values


def check_protocols(protocols):
    """Raise :class:`UsageError` when models would not share one protocol."""
    names = list(protocols)
    first = names[0]
    for name in names[1:]:
        for key, value in protocols[name].items():
            if value != protocols[first][key]:
                raise UsageError(
                    f"{key} differs between {first} ({protocols[first][key]!r}) and {name} "
                    f"({value!r}): every model of a comparison needs the same protocol; set it "
                    "for all with --key=value or --config_files"
                )


BUDGET_KEYS = ("epochs", "eval_step", "stopping_step")


def check_spaces(configs):
    """Every shipped search space must fit its model, and none may search the budget."""
    from recbole_kgin.config import PROPERTIES_DIR
    from recbole_kgin.tune_space import check_space, read_space

    for name, config in configs.items():
        path = protocol.space_file(name, PROPERTIES_DIR)
        if path is None:
            continue
        space = read_space(path)
        check_space(space, path, config)
        for key in BUDGET_KEYS:
            if key in space:
                raise UsageError(f"{path}: key '{key}' is part of the equal budget of a "
                                 "comparison and cannot be searched")


def budget_from(args):
    """The equal budget: ``--epochs=`` / ``--eval_step=`` / ``--train_batch_size=`` overrides (or
    their defaults here, not each model's own), ``--patience``, ``--trials``, ``--seeds``."""
    values = {}
    for key, default in BUDGET_DEFAULTS.items():
        raw = args.overrides.pop(key, default)
        try:
            values[key] = int(str(raw))
        except ValueError:
            raise UsageError(f"--{key}={raw}: expected an integer") from None
    return protocol.Budget(values["epochs"], args.patience, values["eval_step"],
                           values["train_batch_size"], args.trials, args.seeds)


def _file_digests(config_files):
    out = []
    for file in config_files:
        digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()[:16]
        out.append({"path": str(file), "sha256": digest})
    return out


def _effective_settings(name, settings):
    """The settings that can change a model's result: ``kg_linked_items_only`` does nothing to a
    knowledge-aware model (its dataset always drops unlinked items), so it is left out for those."""
    overrides = dict(settings.get("overrides") or {})
    if "kg_linked_items_only" in overrides and _is_knowledge_aware(name):
        overrides.pop("kg_linked_items_only")
    return {**settings, "overrides": overrides}


STARTED = "settings.json"  # models/<name>/settings.json: the settings a model was started with
SEARCH_LEDGER = ledger.FILE_NAME  # models/<name>/search_trials.jsonl: the search's ended trials


def recorded_settings(run_dir, name):
    """``(settings, state)`` of what ``run_dir`` keeps of ``name`` for the next command: state
    ``"finished"`` (its row), ``"unfinished"`` (a search or seed runs to continue) or None when
    nothing would be kept (nothing there, or a failed model, which starts again from scratch)."""
    record = read_json(run_dir / "models" / f"{name}.json")
    if record and record.get("status") == "ok":
        return record.get("settings") or {}, "finished"
    if record and record.get("status") == "failed":
        return None, None
    model_dir = run_dir / "models" / name
    started = read_json(model_dir / STARTED)
    if started is not None:
        return started, "unfinished"
    if model_dir.is_dir() and any(model_dir.iterdir()):  # started by a version that kept no record
        summary = read_json(run_dir / "results.json")
        if summary and summary.get("settings"):
            return summary["settings"], "unfinished"
    return None, None


def check_previous(run_dir, names, settings, force):
    """Models of an earlier command with other settings, finished or not, are refused (unless
    ``--force``): a finished row would be kept, an unfinished search or seed runs continued."""
    if force:
        return
    for name in names:
        recorded, state = recorded_settings(run_dir, name)
        if state is None:
            continue
        base = name.split("@", 1)[0]  # a KG variant's row is its base model's
        before, now = _effective_settings(base, recorded), _effective_settings(base, settings)
        if before != now:
            changed = [k for k in now if before.get(k) != now[k]]
            detail = "; ".join(f"{k}: {before.get(k)!r} then, {now[k]!r} now" for k in changed)
            if state == "finished":
                raise UsageError(f"{run_dir} holds a finished {name} made with other settings "
                                 f"({detail}); use --force to replace it, or another --run")
            raise UsageError(f"{run_dir} holds an unfinished {name} started with other settings "
                             f"({detail}); give those settings to continue it, --force to start "
                             "it again, or another --run")


# ---------------------------------------------------------------------------------------------
# one model: search, seed runs, summary


def _environment():
    import platform

    import ray
    import recbole
    import torch

    return {"torch": torch.__version__, "recbole": recbole.__version__, "ray": ray.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count()}


def select_configuration(name, config, args, budget, model_dir, blob, memory=None):
    """The model's search (``budget.trials`` trials over its space file) or its shipped settings.
    Returns ``(params, trials_run, search_summary)``."""
    from recbole_kgin.config import PROPERTIES_DIR

    space = protocol.space_file(name, PROPERTIES_DIR)
    if budget.trials == 0:
        return {}, 0, None
    done = read_json(model_dir / "search.json")
    if done is not None:
        return done["params"], done["trials"], done
    settings = search.search_settings(config, space, search_options(args, budget.trials, args.scheduler))
    settings.update(memory or {})
    exp_dir = model_dir / "search"
    resume = search.can_restore(exp_dir)
    if exp_dir.exists() and not resume:
        import shutil

        shutil.rmtree(exp_dir)
    rows, complete = search.run_search(settings, exp_dir, blob, resume=resume,
                                       label=f"  {name} search",
                                       ledger_path=model_dir / SEARCH_LEDGER)
    if not complete:
        raise KeyboardInterrupt
    best = search.best_row(rows)
    if best is None:
        errors = [r["error"] for r in rows if r["error"]]
        raise RuntimeError(f"no trial produced a validation score"
                           + (f" ({errors[0]})" if errors else ""))
    edges = protocol.edge_flags(best["params"], settings["space"])
    write_atomic(model_dir / "trials.md", report.trials_markdown(
        rows, list(settings["space"]), settings, edges, best["params"]))
    summary = {"params": best["params"], "trials": len(rows), "best_trial": best["trial_id"],
               "search_best_valid": best["best_valid"], "space_file": settings["space_file"],
               "trials_errored": sum(r["status"] == "error" for r in rows),
               "distinct_configurations": len({json.dumps(r["params"], sort_keys=True)
                                               for r in rows}),
               "space_size": protocol.space_size(settings["space"]), "edges": edges,
               "trial_log": [{k: r.get(k) for k in ("trial_id", "best_valid", "epochs_run",
                                                    "seconds", "status", "node_id", "failures")}
                             for r in sorted(rows, key=lambda r: r["trial_id"])]}
    write_json(model_dir / "search.json", summary)
    return summary["params"], summary["trials"], summary


def progress_note(model_dir, seeds, config):
    """``"; so far: ..."`` for a model not finished: the search trials in its ledger, with the best
    validation score, and the seed runs done; empty when nothing of it ended yet."""
    bigger = bool(config["valid_metric_bigger"])
    ended, best = ledger.progress(model_dir / SEARCH_LEDGER, bigger)
    done = sum((model_dir / "final" / f"seed-{s}.json").is_file() for s in seeds)
    parts = []
    if ended:
        parts.append(f"{ended} search trial{'s' * (ended != 1)} ended, best validation "
                     f"{config['valid_metric']} {best:.4f}")
    if done:
        parts.append(f"{done} of {len(seeds)} seed runs done")
    return f"; so far: {', '.join(parts)}" if parts else ""


def summarise_seeds(name, seed_records, budget, bigger):
    """The model's row from its finished seed runs (means, stds, epochs, convergence)."""
    columns = report.metric_columns()
    row = {"model": name, "status": "ok", "error": None, "seeds": len(seed_records),
           **protocol.aggregate(seed_records, columns)}
    epochs = [r["epochs_run"] for r in seed_records]
    best = [r["best_epoch"] + 1 for r in seed_records if r["best_epoch"] is not None]
    row["epochs_run"] = sum(epochs) / len(epochs)
    row["best_epoch"] = sum(best) / len(best) if best else None
    flags = [protocol.converged(r["valid_history"], r["epochs_run"], budget.epochs,
                                budget.patience, bigger) for r in seed_records]
    row["converged"] = None if any(f is None for f in flags) else all(flags)
    spe = [r["seconds_per_epoch"] for r in seed_records if r.get("seconds_per_epoch")]
    row["seconds_per_epoch"] = sum(spe) / len(spe) if spe else None
    row["total_seconds"] = sum(r.get("total_seconds") or 0 for r in seed_records)
    row["n_params"] = seed_records[0].get("n_params")
    row["valid_history"] = seed_records[0].get("valid_history")
    row["split"] = seed_records[0].get("split")
    row["splits_agree"] = all(r.get("split") == row["split"] for r in seed_records)
    row["backend"] = seed_records[0].get("backend")
    row["seed_results"] = [{k: r.get(k) for k in ("seed", "test_result", "best_valid_score",
                                                  "best_epoch", "epochs_run", "total_seconds",
                                                  "node_id", "resumed_from_epoch")}
                           for r in seed_records]
    return row


def dataset_facts(name, blob):
    """``(items, KG triplets or None)`` of a pickled dataset (triplets as the models see them,
    inverse relations included), for a model that needs them (a memory request or a KG row);
    ``(None, None)`` without unpickling for any other model."""
    if name not in protocol.ITEM_ITEM_MEMORY and not _is_knowledge_aware(name):
        return None, None
    import pickle

    dataset = pickle.loads(blob)
    kg = getattr(dataset, "kg_feat", None)
    return dataset.item_num, (None if kg is None else len(kg))


def memory_request(name, items):
    """``{"memory_per_trial": bytes, "memory_reason": text}`` for a model with dense item x item
    matrices (see :func:`protocol.trial_memory`), else ``{}``."""
    if name not in protocol.ITEM_ITEM_MEMORY:
        return {}
    need, reason = protocol.trial_memory(name, items)
    return {"memory_per_trial": need, "memory_reason": reason}


def final_runs(name, config, args, budget, seeds, model_dir, blob, params, memory, extra=None):
    """The seed runs of ``params`` on ``blob``; returns the model's row (without its search)."""
    final_settings = search.search_settings(config, None, search_options(args, 1, "fifo"))
    final_settings.update(memory)
    final_settings["user_layer"].update(extra or {})
    seeds = protocol.model_seeds(name, seeds)
    variant = (extra or {}).get("kg_variant")
    row_name = variant_name(name, variant) if variant else name
    errors, attempted, failures = search.run_finals(
        final_settings, params, seeds, model_dir / "final", blob, per_user_ks=protocol.TABLE_KS,
        label=f"  {row_name}")
    if errors:
        seed, error = next(iter(errors.items()))
        if error.startswith("node lost"):
            raise RuntimeError(f"node lost (seed {seed}: the Ray node running it died)")
        raise RuntimeError(f"seed {seed}: {error}")
    if not attempted:
        raise KeyboardInterrupt
    records = [read_json(model_dir / "final" / f"seed-{s}.json") for s in seeds]
    if any(r is None for r in records):
        raise KeyboardInterrupt
    row = summarise_seeds(name, records, budget, bool(config["valid_metric_bigger"]))
    row["seed_failures"] = failures
    for stale in (model_dir / "dataset").glob("*.pth"):  # rebuilt on demand; can be large
        stale.unlink()
    return row


def run_model(name, config, args, budget, seeds, run_dir, settings):
    """Search, seed runs and the row of one model; raises on failure (the caller records it)."""
    from recbole_kgin.experiment.search import user_layer

    model_dir = run_dir / "models" / name
    start = time.perf_counter()
    blob = build_dataset_blob(name, config["dataset"], user_layer(config), model_dir / "dataset")
    items, triplets = dataset_facts(name, blob)
    memory = memory_request(name, items)
    params, trials, search_summary = select_configuration(name, config, args, budget, model_dir,
                                                           blob, memory)
    row = final_runs(name, config, args, budget, seeds, model_dir, blob, params, memory)
    reads_kg = _is_knowledge_aware(name)
    row.update(trials=trials, params=params, search=search_summary, settings=settings,
               kg_variant="full" if reads_kg else None, kg_triplets=triplets if reads_kg else None,
               wall_seconds=time.perf_counter() - start)
    row.update(protocol.ledger(row, search_summary, args.cpus_per_trial, args.gpus_per_trial))
    return row


def run_variant(name, variant, config, args, budget, seeds, run_dir, settings, base_row):
    """The configuration selected for ``name`` on the full KG, retrained with the same seeds,
    split and budget on KG variant ``variant``: the row ``name@variant``."""
    from recbole_kgin.experiment.search import user_layer

    model_dir = run_dir / "models" / variant_name(name, variant)
    start = time.perf_counter()
    extra = {"kg_variant": variant}
    blob = build_dataset_blob(name, config["dataset"], {**user_layer(config), **extra},
                              model_dir / "dataset")
    items, triplets = dataset_facts(name, blob)
    params = base_row.get("params") or {}
    row = final_runs(name, config, args, budget, seeds, model_dir, blob, params,
                     memory_request(name, items), extra)
    row.update(model=variant_name(name, variant), base_model=name, kg_variant=variant,
               kg_triplets=triplets, trials=0, params=params, settings=settings,
               wall_seconds=time.perf_counter() - start)
    row.update(protocol.ledger(row, None, args.cpus_per_trial, args.gpus_per_trial))
    return row


def run_split(name, split, config, args, budget, seeds, run_dir, row):
    """The selected configuration's seed runs on the split of ``split`` (another split seed, same
    dataset): ``{metric: mean, metric_std: std, "seeds", "split"}``. Failures are recorded in the
    result, not raised."""
    from recbole_kgin.experiment.search import short_error, user_layer

    model_dir = run_dir / "models" / name / f"split-{split}"
    blob = build_dataset_blob(name, config["dataset"], user_layer(config), model_dir / "dataset")
    items, _ = dataset_facts(name, blob)
    try:
        result = final_runs(name, config, args, budget, seeds, model_dir, blob,
                            row.get("params") or {}, memory_request(name, items),
                            {"split_seed": split})
    except (KeyboardInterrupt, UsageError):
        raise
    except Exception as err:
        return {"status": "failed", "error": short_error(err) or repr(err)}
    columns = report.metric_columns()
    cost = protocol.ledger(result, None, args.cpus_per_trial, args.gpus_per_trial)
    return {"status": "ok", "seeds": result["seeds"], "split": result["split"],
            **{k: cost[k] for k in LEDGER_SUMS},
            **{k: result[k] for c in columns for k in (c, f"{c}_std")}}


LEDGER_SUMS = ("epochs_total", "cpu_s", "gpu_s")  # a split's runs add to its model's ledger


def variant_name(name, variant):
    return f"{name}@{variant}"


# ---------------------------------------------------------------------------------------------
# the table


def split_check(rows):
    prints = {r["model"]: r.get("split") for r in rows if r.get("split")}
    if not prints:
        return {"same_split": None, "models": [], "differs": []}
    first = next(iter(prints))
    differs = [n for n, fp in prints.items() if fp != prints[first]]
    differs += [r["model"] for r in rows if r.get("splits_agree") is False]
    return {"same_split": not differs, "models": list(prints), "reference": first,
            "test_sha256": prints[first]["test"]["sha256"], "differs": differs}


def write_outputs(run_dir, summary, rows, seeds, decimals):
    means = per_user.write_tables(run_dir, rows, seeds)
    summary = dict(summary)
    summary["significance_reference"] = stats.add_significance(rows, means, summary["split_seed"])
    stats.add_split_statistics(rows, summary.get("split_seeds") or [])
    group_table = stats.group_rows(rows, means, summary["significance_reference"])
    correction = summary["statistics"]["correction"]
    summary["statistics"]["family_size"] = stats.correct_family(rows, group_table, correction)
    summary["cold_test_share"] = stats.cold_share(means)
    summary["split_check"] = split_check(rows)
    summary["models"] = rows
    summary["groups"] = group_table
    write_json(run_dir / "results.json", summary)
    write_atomic(run_dir / "table.md", report.render_markdown(summary, rows, decimals))
    write_atomic(run_dir / "table.csv", report.render_csv(rows))
    write_atomic(run_dir / "groups.csv", report.render_groups_csv(group_table))
    write_atomic(run_dir / "table.tex", report.render_latex(summary, rows, decimals))
    write_atomic(run_dir / "tuning.png", report.render_tuning(
        rows, summary["valid_metric"], f"{summary['dataset']}: best validation "
        f"{summary['valid_metric']} so far, per trial"))
    if any(r.get("base_model") for r in rows):
        write_atomic(run_dir / "kg_controls.png", report.render_deltas(
            rows, "recall@20", f"{summary['dataset']}: test Recall@20, KG variant minus full KG",
            summary["statistics"]["alpha"]))
    metric = summary["valid_metric"]
    write_atomic(run_dir / "curves.png", report.render_curves(
        rows, metric, f"{summary['dataset']}: validation {metric} per epoch (first seed)"))
    write_atomic(run_dir / "bars.png", report.render_bars(
        [r for r in rows if not r.get("base_model")], "recall@20", summary["significance_reference"],
        f"{summary['dataset']}: test Recall@20", summary["statistics"]["alpha"]))
    return summary


# ---------------------------------------------------------------------------------------------
# main


def prepare(args):
    """Everything checked and every configuration built before anything is written."""
    from recbole_kgin.quick_start import create_config

    check_model_names(args.models)
    budget = budget_from(args)
    overrides = dict(args.overrides)
    if needs_kg_filter(args.models, overrides, args.config_files):
        # knowledge-aware datasets drop interactions of items without an entity; give the other
        # models the same interactions so that every row of the table shares one split
        overrides["kg_linked_items_only"] = "True"
    run_dir = Path(args.out).expanduser().resolve() / args.run
    configs = {}
    for name in args.models:
        config = create_config(name, args.dataset, args.config_files,
                               {**overrides, **budget.overrides()})
        if config["split_seed"] is None:  # the split stays fixed while the model seed varies
            config = create_config(name, args.dataset, args.config_files,
                                   {**overrides, **budget.overrides(), "split_seed": config["seed"]})
        configs[name] = config
    first = configs[args.models[0]]
    check_dataset_files(first)
    if budget.trials:
        check_spaces(configs)
    protocols = {name: protocol_of(c) for name, c in configs.items()}
    check_protocols(protocols)
    settings = {"dataset": args.dataset, "config_files": _file_digests(args.config_files),
                "overrides": overrides, "budget": budget.as_dict()}
    if args.split_seeds > 1:
        why = protocol.can_resplit(first)
        if why:
            raise UsageError(f"--split-seeds {args.split_seeds}: {why}; convert one dataset per "
                             "split seed instead (convert --resplit --seed S --name NAME-S)")
    check_previous(run_dir, [name for name, _ in job_list(args)], settings, args.force)
    if args.resume and not (run_dir / "models").is_dir():
        raise UsageError(f"--resume: {run_dir} holds no comparison to continue")
    return budget, configs, protocols, settings, run_dir


def job_list(args):
    """``[(row name, None or (base model, KG variant))]``: the models, then their KG variants."""
    from recbole_kgin.utils import uses_kg

    variants = [v for v in args.kg_variants if v != "full"]
    jobs = [(name, None) for name in args.models]
    jobs += [(variant_name(n, v), (n, v)) for v in variants for n in args.models if uses_kg(n)]
    return jobs


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_compare(argv)
    budget, configs, protocols, settings, run_dir = prepare(args)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_lock.acquire(run_dir, "compare", option="--run")  # before anything is written
    try:
        # again under the lock: a command that ended meanwhile may have left other settings
        check_previous(run_dir, [name for name, _ in job_list(args)], settings, args.force)
        return _run(args, argv, budget, configs, protocols, settings, run_dir)
    finally:
        lock.release()


def _run(args, argv, budget, configs, protocols, settings, run_dir):
    names = args.models
    first = configs[names[0]]
    seeds = protocol.seed_list(first["seed"], budget.seeds)
    decimals = int(first["metric_decimal_place"] or 4)
    summary = {
        "dataset": args.dataset, "run": args.run,
        "command": " ".join(["run_recbole_kgin.py", "compare", *map(shlex.quote, argv)]),
        "settings": settings, "protocol": protocols[names[0]], "budget": budget.as_dict(),
        "seeds": seeds, "split_seed": int(first["split_seed"]),
        "valid_metric": first["valid_metric"],
        "search": search_options(args, budget.trials, args.scheduler),
        "test_selected": _test_selected(first), "environment": _environment(),
        "statistics": {"correction": args.correction, "alpha": args.alpha,
                       "bootstrap": {**stats.BOOTSTRAP, "seed": int(first["split_seed"])}},
    }
    from recbole_kgin.utils import uses_kg

    split_seeds = protocol.split_seed_list(first["split_seed"], args.split_seeds)
    summary["split_seeds"] = split_seeds
    variants = [v for v in args.kg_variants if v != "full"]
    jobs = job_list(args)
    if variants:
        summary["kg_variants"] = {"variants": ["full", *variants],
                                  "models": [n for n in names if uses_kg(n)],
                                  "seed": kg_variant_hook.variant_seed(first)}
    write_json(run_dir / "manifest.json", files.manifest(
        ["run_recbole_kgin.py", "compare", *argv], manifest_files(args, configs, budget)))
    rows, failed_before = {}, set()
    for name, _ in jobs:
        previous = read_json(run_dir / "models" / f"{name}.json")
        if not args.force and previous and previous.get("status") == "ok":
            rows[name] = previous
        elif previous and previous.get("status") == "failed":
            failed_before.add(name)

    def ordered(interrupted=False):
        """Every requested model has a row: one not finished yet is listed as not run, so a table
        left by a killed command says what is missing."""
        why = ("interrupted before it finished" if interrupted else
               "not finished (still to run, or the command was killed)")
        return [rows.get(n) or {"model": n, "status": "not run",
                                "error": f"{why}{progress_note(run_dir / 'models' / n, seeds, first)}"
                                         "; re-run the command to continue",
                                **({"base_model": v[0], "kg_variant": v[1]} if v else {})}
                for n, v in jobs]

    def run_job(name, variant):
        if variant is None:
            return run_model(name, configs[name], args, budget, seeds, run_dir, settings)
        base, kind = variant
        if (rows.get(base) or {}).get("status") != "ok":
            raise RuntimeError(f"{base} has no finished full-KG row to retrain on variant {kind}")
        return run_variant(base, kind, configs[base], args, budget, seeds, run_dir, settings,
                           rows[base])

    print(f"compare on {args.dataset}: {', '.join(n for n, _ in jobs)} -> {run_dir}", flush=True)
    write_outputs(run_dir, summary, ordered(), seeds, decimals)
    print(f"budget: {budget.as_dict()}", flush=True)
    start = time.perf_counter()
    started = search.start_ray(args.address)
    try:
        if args.address:  # trials on other nodes write their results into the run folder
            search.check_shared_folder(run_dir)
        for index, (name, variant) in enumerate(jobs, 1):
            prefix = f"[{index}/{len(jobs)}] {name}"
            if name in rows:
                print(f"{prefix}: finished before, kept (--force re-runs it)", flush=True)
                continue
            failed = name in failed_before
            if args.force or failed:  # a failed model starts again from scratch
                import shutil

                shutil.rmtree(run_dir / "models" / name, ignore_errors=True)
            write_json(run_dir / "models" / name / STARTED, settings)  # see check_previous
            print(f"{prefix}: {'failed before, ' if failed else ''}running ...", flush=True)
            try:
                row = run_job(name, variant)
            except (KeyboardInterrupt, UsageError):
                raise
            except Exception as err:  # recorded; the other models go on
                from recbole_kgin.experiment.search import short_error

                row = {"model": name, "status": "failed", "error": short_error(err) or repr(err),
                       "settings": settings,
                       **({"base_model": variant[0], "kg_variant": variant[1]} if variant else {})}
            write_json(run_dir / "models" / f"{name}.json", row)
            rows[name] = row
            if row["status"] == "ok":
                print(f"{prefix}: ok, test Recall@20 {row['recall@20']:.4f} "
                      f"(± {row['recall@20_std']:.4f} over {row['seeds']} seed(s)), "
                      f"{row['wall_seconds']:.0f} s", flush=True)
            else:
                print(f"{prefix}: FAILED: {row['error']}", flush=True)
            summary["wall_seconds"] = time.perf_counter() - start
            write_outputs(run_dir, summary, ordered(), seeds, decimals)
        for split in split_seeds[1:]:
            for name in names:
                row = rows.get(name)
                if not row or row["status"] != "ok" or str(split) in (row.get("splits") or {}):
                    continue
                print(f"[split {split}] {name}: running ...", flush=True)
                started_split = time.perf_counter()
                done = run_split(name, split, configs[name], args, budget, seeds, run_dir, row)
                done["wall_s"] = time.perf_counter() - started_split
                row.setdefault("splits", {})[str(split)] = done
                for key in (*LEDGER_SUMS, "wall_s"):
                    row[key] = (row.get(key) or 0) + (done.get(key) or 0)
                write_json(run_dir / "models" / f"{name}.json", row)
                summary["wall_seconds"] = time.perf_counter() - start
                write_outputs(run_dir, summary, ordered(), seeds, decimals)
    except KeyboardInterrupt:
        summary["wall_seconds"] = time.perf_counter() - start
        write_outputs(run_dir, summary, ordered(interrupted=True), seeds, decimals)
        print(f"interrupted: {len(rows)} finished model(s) kept in {run_dir}; re-run the same "
              "command to continue", file=sys.stderr)
        raise
    finally:
        search.stop_ray(started)

    final = write_outputs(run_dir, summary, ordered(), seeds, decimals)
    print()
    print(report.text_table(final["models"], decimals))
    if final["split_check"]["same_split"] is False:
        print(f"WARNING: models saw different splits: {', '.join(final['split_check']['differs'])}")
    print(f"\nwritten: {run_dir / 'table.md'}, table.csv, groups.csv, results.json, curves.png, "
          f"bars.png, per_user/, topk/{', kg_controls.png' if variants else ''}")
    return 0 if all(r["status"] == "ok" for r in final["models"]) else 1


def manifest_files(args, configs, budget):
    """The files a comparison reads, by kind, for :func:`files.manifest`."""
    from recbole_kgin.config import PROPERTIES_DIR

    first = next(iter(configs.values()))
    folder = Path(first["data_path"])
    dataset = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    spaces = [protocol.space_file(n, PROPERTIES_DIR) for n in configs] if budget.trials else []
    config_files = [*args.config_files, PROPERTIES_DIR / "overall.yaml",
                    *[PROPERTIES_DIR / "model" / f"{n}.yaml" for n in configs],
                    PROPERTIES_DIR / "dataset" / f"{args.dataset}.yaml"]
    return {"dataset": dataset, "search_spaces": [s for s in spaces if s is not None],
            "config_files": config_files}


def _test_selected(config):
    """True when the dataset was converted with ``--valid paper`` (validation = test)."""
    facts = read_json(Path(config["data_path"]) / config["dataset"] / "stats.json")
    return bool(facts and facts.get("test_selected"))
