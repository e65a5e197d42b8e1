# -*- coding: utf-8 -*-
"""The one training pipeline. Single runs, comparisons and hyperparameter searches all call these
functions, so a number in a comparison table or a search is produced exactly like a single run.

``run_recbole_kgin`` mirrors RecBole's ``run_recbole`` (same arguments, same result keys, plus
timings); the lower-level steps are public so that callers can keep a loaded dataset between runs.
"""

import logging
import time
from logging import getLogger

from recbole.data import create_dataset, data_preparation
from recbole.utils import init_logger, init_seed, set_color

from recbole_kgin import checkpoint as ckpt
from recbole_kgin.config import Config
from recbole_kgin.config_check import check_dataset_exists
from recbole_kgin.errors import UsageError
from recbole_kgin.model.cpu_memory import apply_setting
from recbole_kgin.trainer import load_checkpoint
from recbole_kgin.utils import get_model, get_trainer

HEADLINE_METRICS = ("recall", "ndcg", "hit", "precision")


def create_config(model=None, dataset=None, config_file_list=None, config_dict=None):
    """Build the layered :class:`~recbole_kgin.config.Config` (see that module for the order)."""
    return Config(
        model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict
    )


def build_dataset(config):
    """Seed, then create (or reload RecBole's cached copy of) the configured dataset.

    With ``kg_linked_items_only: True`` a model without a knowledge graph (BPR, LightGCN, ...) is
    given the interactions a knowledge-aware model sees: RecBole's knowledge-based dataset drops
    every interaction whose item has no entity in the KG, before the split. Comparisons set it so
    that every model is trained and tested on the same pairs.
    """
    from recbole_kgin.data import kg_links, kg_variant_hook

    kg_links.install()
    kg_variant_hook.install()
    init_seed(split_seed(config), config["reproducibility"])
    if _wants_kg_filter(config):
        return _kg_filtered_dataset(config)
    return create_dataset(config)


def load_data(config, dataset=None):
    """Build the dataset (:func:`build_dataset`) and split it into loaders. A ``dataset`` built
    before (e.g. unpickled) is split exactly as a freshly built one: seed, then split."""
    if dataset is None:
        dataset = build_dataset(config)
    else:
        init_seed(split_seed(config), config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, dataset)
    return dataset, train_data, valid_data, test_data


def check_topk(config, dataset):
    """Full ranking needs fewer cut-offs than items: refuse before training, not at validation."""
    topk = config["topk"]
    topk = [topk] if isinstance(topk, int) else list(topk or [])
    n_items = dataset.item_num - 1  # without RecBole's padding item
    if topk and max(topk) > dataset.item_num:  # RecBole ranks the padding item too
        raise UsageError(
            f"config key 'topk' = {topk}: dataset '{config['dataset']}' has only {n_items} items; "
            f"use cut-offs up to {n_items} (e.g. --topk=[{min(10, n_items)}] "
            f"--valid_metric=Recall@{min(10, n_items)})")


def split_seed(config):
    """The seed of the data split: ``split_seed`` when set, else RecBole's ``seed``. Keeping it apart
    lets repeated runs vary initialisation and sampling (``seed``) on one fixed split."""
    value = config["split_seed"] if "split_seed" in config else None
    return config["seed"] if value is None else int(value)


def _wants_kg_filter(config):
    """RecBole picks the dataset class by model type, so a model that reads the KG but trains in
    closed form (KGItemKNN, KGEASE: ``ModelType.TRADITIONAL``) gets its knowledge-based dataset
    here, as does any other model with ``kg_linked_items_only``."""
    from recbole.utils import ModelType

    from recbole_kgin.utils import uses_kg

    if config["MODEL_TYPE"] == ModelType.KNOWLEDGE:
        return False
    return bool(config["kg_linked_items_only"]) or uses_kg(config["model"])


def _kg_filtered_dataset(config):
    """RecBole's knowledge-based dataset for a model that uses only its interactions. Never
    reloaded from RecBole's cache (its file name is the knowledge-aware models' one); saved like
    RecBole saves datasets when ``save_dataset`` is on."""
    import os

    from recbole.data.dataset import KnowledgeBasedDataset

    missing = [suffix for suffix in ("kg", "link") if not os.path.isfile(
        os.path.join(config["data_path"], f"{config['dataset']}.{suffix}"))]
    if missing:
        raise ValueError(
            f"kg_linked_items_only: dataset {config['dataset']} has no "
            f"{' / '.join('.' + m for m in missing)} file in {config['data_path']}; set "
            "kg_linked_items_only to False for a dataset without a knowledge graph"
        )
    dataset = KnowledgeBasedDataset(config)
    if config["save_dataset"]:
        dataset.save()
    return dataset


def build_model(config, train_data):
    """Instantiate the configured model on the training split, seeded like RecBole does; with
    ``retain_cpu_memory`` (properties/overall.yaml) the process keeps freed memory for reuse."""
    apply_setting(config["retain_cpu_memory"])
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    return get_model(config["model"])(config, train_data._dataset).to(config["device"])


def build_trainer(config, model):
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, model)


def count_parameters(model):
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def fit_and_test(config, model, trainer, train_data, valid_data, test_data, saved=True,
                 show_progress=None, evaluate_test=True, keep_ranked_items=False):
    """Train with early stopping on validation, then (optionally) evaluate the selected model on
    test once. Returns a plain dict (JSON-serialisable). ``keep_ranked_items``: the test evaluation
    also keeps every user's top-``max(topk)`` item ids (RecBole's ``rec.items``, in the evaluator's
    last data; validation does not pay for it)."""
    if show_progress is None:
        show_progress = bool(config["show_progress"])
    check_topk(config, train_data._dataset)
    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=show_progress
    )
    train_seconds = time.perf_counter() - start
    test_result = None
    if evaluate_test:
        if keep_ranked_items:
            setattr(trainer.eval_collector.register, "rec.items", True)
        test_result = trainer.evaluate(
            test_data, load_best_model=saved, show_progress=show_progress
        )
    history = trainer.valid_history
    progress = training_progress(trainer)
    bigger = bool(config["valid_metric_bigger"])
    best_epoch = getattr(trainer, "best_epoch", None)
    if best_epoch is None:
        for epoch, score, _ in history:  # on a tie the later epoch, like RecBole's early stopping
            if best_epoch is None or (score >= best if bigger else score <= best):
                best_epoch, best = epoch, score
    epochs = trainer.epoch_seconds
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": float(best_valid_score),
        "valid_score_bigger": bigger,
        "valid_metric": config["valid_metric"],
        "best_valid_result": _floats(best_valid_result),
        "test_result": _floats(test_result),
        "best_epoch": best_epoch,
        "epochs_run": len(epochs),
        "epoch_seconds": progress["epoch_seconds"],
        "seconds_per_epoch": (sum(epochs) / len(epochs)) if epochs else None,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - start,
        "n_params": count_parameters(model),
        "valid_history": progress["valid_history"],
        "saved_model_file": trainer.saved_model_file if saved else None,
    }


def training_progress(trainer):
    """What a recording trainer has seen so far, JSON-ready: seconds of each training epoch and
    every validation (``{"epoch", "score", "result"}``)."""
    return {
        "epoch_seconds": [round(s, 4) for s in trainer.epoch_seconds],
        "valid_history": [
            {"epoch": e, "score": s, "result": _floats(r)} for e, s, r in trainer.valid_history
        ],
    }


def _floats(result):
    return None if result is None else {k: float(v) for k, v in dict(result).items()}


# keys that may differ when a run is resumed: they change where and how verbosely it runs, not
# what it computes (the dataset fingerprint guards the data itself)
RESUME_OVERRIDABLE = ("data_path", "show_progress", "state", "gpu_id", "use_gpu", "worker")


def config_from_checkpoint(checkpoint, overrides=None, path="checkpoint"):
    """Rebuild a checkpoint's configuration: its model, dataset and the settings it was given on
    top of the property files; ``overrides`` may only touch :data:`RESUME_OVERRIDABLE`."""
    overrides = dict(overrides or {})
    refused = sorted(k for k in overrides if k not in RESUME_OVERRIDABLE)
    if refused:
        raise UsageError(
            f"--{refused[0]} cannot change when continuing {path}: the run's configuration is "
            f"stored in it (only {', '.join(RESUME_OVERRIDABLE)} may be given)")
    settings = {k: v for k, v in dict(checkpoint.get("config_overrides") or {}).items()
                if k not in ("model", "dataset", "config_files")}
    settings.update(overrides)
    return create_config(checkpoint["model"], checkpoint["dataset"], None, settings)


def result_summary(result):
    """What ``--result_file`` holds: JSON-ready, best epoch counted from 1."""
    best = result.get("best_epoch")
    return {
        "model": result["model"],
        "dataset": result["dataset"],
        "valid_metric": result["valid_metric"],
        "best_valid_score": result["best_valid_score"],
        "best_valid_result": result["best_valid_result"],
        "test_result": result["test_result"],
        "best_epoch": None if best is None else int(best) + 1,
        "epochs_run": result["epochs_run"],
        "seconds_per_epoch": result["seconds_per_epoch"],
        "total_seconds": result["total_seconds"],
        "checkpoint": result["saved_model_file"],
    }


def check_result_file(result_file):
    """Refuse an unusable ``--result_file`` before anything trains."""
    if result_file is None:
        return None
    import os
    from pathlib import Path

    path = Path(result_file)
    if path.is_dir():
        raise UsageError(f"--result_file {path} is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"--result_file {path}: directory {existing} is not writable")
    return path


def run_recbole_kgin(model=None, dataset=None, config_file_list=None, config_dict=None,
                     saved=True, resume=None, trust_checkpoint=False, result_file=None):
    """Train and test one model, like :func:`recbole.quick_start.run_recbole`.

    ``model`` may be one of this package's models (``KGIN``) or any RecBole model name.
    Returns a dict with ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``,
    ``test_result`` and timing fields (see :func:`fit_and_test`).

    ``resume``: a checkpoint of an interrupted run; the run continues from its last epoch with its
    own configuration (``model``, ``dataset`` and ``config_file_list`` must then be None).
    ``result_file``: write :func:`result_summary` there as JSON (atomically).
    """
    result_path = check_result_file(result_file)
    checkpoint = None
    if resume is not None:
        if model is not None or dataset is not None or config_file_list:
            raise UsageError("--resume continues a run with the configuration stored in its "
                             "checkpoint: do not pass --model, --dataset or --config_files")
        checkpoint = load_checkpoint(resume, trust=trust_checkpoint)
        config = config_from_checkpoint(checkpoint, config_dict, path=str(resume))
    else:
        config = create_config(model, dataset, config_file_list, config_dict)
    check_dataset_exists(config)
    start = time.perf_counter()
    if checkpoint is not None:  # check the data before anything (the log) is written
        dataset_obj, train_data, valid_data, test_data = load_data(config)
        ckpt.check_dataset(checkpoint, train_data._dataset, resume)
        init_logger(config)
        logger = getLogger()
        logger.info(config)
    else:
        init_logger(config)
        logger = getLogger()
        logger.info(config)
        dataset_obj, train_data, valid_data, test_data = load_data(config)
    logger.info(dataset_obj)
    model_obj = build_model(config, train_data)
    logger.info(model_obj)
    trainer = build_trainer(config, model_obj)
    if checkpoint is not None:
        saved = True
        trainer.resume_checkpoint(resume, checkpoint)
    result = fit_and_test(config, model_obj, trainer, train_data, valid_data, test_data,
                          saved=saved)
    result["total_seconds"] = time.perf_counter() - start
    logger.info(set_color("best valid ", "yellow") + f": {result['best_valid_result']}")
    logger.info(set_color("test result", "yellow") + f": {result['test_result']}")
    if result_path is not None:
        ckpt.atomic_write_json(result_path, result_summary(result))
    return result


def load_checkpoint_run(model_file, trust=False, overrides=None, checkpoint=None):
    """Rebuild a checkpoint's run: ``(checkpoint, config, dataset, train, valid, test, model)``
    with the selected weights loaded and the dataset checked against the checkpoint
    (``checkpoint``: the file's content when already loaded)."""
    if checkpoint is None:
        checkpoint = load_checkpoint(model_file, trust=trust)
    config = config_from_checkpoint(checkpoint, overrides, path=str(model_file))
    check_dataset_exists(config)
    dataset, train_data, valid_data, test_data = load_data(config)
    ckpt.check_dataset(checkpoint, train_data._dataset, model_file)
    model = build_model(config, train_data)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise ckpt.CheckpointError(
            f"checkpoint {model_file} does not fit model {config['model']} "
            f"({str(err).splitlines()[0][:160]})") from None
    model.load_other_parameter(ckpt.unpack_other(checkpoint.get("other_parameter")))
    model.eval()
    return checkpoint, config, dataset, train_data, valid_data, test_data, model


def load_data_and_model(model_file, trust=False):
    """Reload a saved run: ``(config, model, dataset, train_data, valid_data, test_data)``.

    Same as RecBole's function of that name, for this package's safe checkpoints (RecBole's own
    pickled checkpoints only with ``trust=True``).
    """
    _, config, dataset, train_data, valid_data, test_data, model = load_checkpoint_run(
        model_file, trust=trust)
    return config, model, dataset, train_data, valid_data, test_data


def metrics_table(results, ks=(10, 20), metrics=HEADLINE_METRICS, title=None):
    """Format ``{name: RecBole result dict}`` as a fixed-width text table (rows = names)."""
    columns = [f"{m}@{k}" for k in ks for m in metrics]
    header = ["", *[c.replace("recall", "Recall").replace("ndcg", "NDCG")
                    .replace("hit", "Hit").replace("precision", "Precision") for c in columns]]
    rows = []
    for name, result in results.items():
        result = result or {}
        rows.append([name, *[("%.4f" % result[c]) if c in result else "-" for c in columns]])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    fmt = lambda r: " | ".join(str(v).rjust(w) for v, w in zip(r, widths))
    out = [title] if title else []
    out += [fmt(header), line, *[fmt(r) for r in rows]]
    return "\n".join(out)


def quiet_recbole_logger():
    """Keep RecBole's INFO chatter in its log file only (used by comparisons and searches)."""
    for handler in getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(logging.WARNING)
