# -*- coding: utf-8 -*-
"""One run of one configuration: a search trial (validation only) or a final run (validation, then
test once, with per-user metrics). Both are the shared pipeline of :mod:`recbole_kgin.quick_start`
on a dataset built once per experiment; :func:`run_trial` is the Ray Tune trainable of both.
"""

import pickle
import time
from pathlib import Path

import numpy as np

PER_USER_METRICS = ("recall", "ndcg")
METRIC = "valid_score"  # what search trials report and Ray optimises (the configured valid_metric)
RANKED = "ranked"  # key of the ranked lists inside a final run's per-user result


# ---------------------------------------------------------------------------------------------
# the dataset, built once per experiment


def build_dataset_blob(model, dataset, user_layer, folder):
    """Create the dataset once with RecBole's dataset saving into ``folder``; return the pickle's
    bytes. A later call (a resumed experiment) reloads the saved file instead of parsing the data
    again; RecBole checks that its dataset arguments are unchanged."""
    from recbole_kgin.quick_start import build_dataset, create_config

    folder = Path(folder)
    saved = sorted(folder.glob("*.pth"))
    extra = {"save_dataset": True, "checkpoint_dir": str(folder)}
    if saved:
        extra["dataset_save_path"] = str(saved[0])
    config = create_config(model, dataset, config_dict={**user_layer, **extra})
    built = build_dataset(config)
    file = folder / f"{config['dataset']}-{type(built).__name__}.pth"
    if not file.is_file():
        raise RuntimeError(f"RecBole did not save the dataset to {file}")
    return file.read_bytes()


def split_dataset(config, dataset_blob):
    """The shared pipeline's :func:`~recbole_kgin.quick_start.load_data` on the pickled dataset, so
    every run gets the split a single run gets."""
    from recbole_kgin.quick_start import load_data

    return load_data(config, pickle.loads(dataset_blob))


# ---------------------------------------------------------------------------------------------
# per-user metrics and the split's fingerprint


def per_user_metrics(config, trainer, test_data, ks):
    """Per-user Recall@K / NDCG@K of the last evaluation of ``test_data``, computed by RecBole's own
    metric classes from the top-K hits the evaluator saw. Returns ``{"users": tokens,
    "recall@20": array, ...}``, users in the evaluation order, with the group columns of
    :func:`ranked_lists` when the evaluation kept its ranked items."""
    from recbole.evaluator.metrics import NDCG, Recall

    struct = trainer.evaluator.last_struct
    if struct is None:
        raise RuntimeError("no evaluation was recorded")
    classes = {"recall": Recall, "ndcg": NDCG}
    out = {}
    for name in PER_USER_METRICS:
        metric = classes[name](config)
        pos_index, pos_len = metric.used_info(struct)
        values = metric.metric_info(pos_index, pos_len)
        for k in ks:
            out[f"{name}@{k}"] = np.asarray(values[:, k - 1], dtype=np.float64)
    dataset = test_data._dataset
    uids = np.asarray(test_data.uid_list)
    out["users"] = np.asarray(dataset.id2token(dataset.uid_field, uids)).astype(str)
    if len(out["users"]) != len(out[f"recall@{ks[0]}"]):
        raise RuntimeError("per-user metrics do not line up with the test users")
    return out


def ranked_lists(trainer, train_data, test_data):
    """What the test evaluation ranked, with what groups and recomputations need, from RecBole's
    ``rec.items`` (see ``keep_ranked_items`` of :func:`~recbole_kgin.quick_start.fit_and_test`):
    ``(per_user_columns, lists)``. ``per_user_columns``: ``train_count``, ``test_count`` and the
    pair-group columns of :func:`recbole_kgin.experiment.groups.per_user_group_arrays`.
    ``lists``: ``users`` (tokens), ``topk`` (``[users, max(topk)]`` int32 ids into
    ``item_tokens``), ``test_items`` / ``test_offsets`` (each user's test item ids, concatenated)
    and ``item_train_count`` (training interactions of every item id)."""
    from recbole_kgin.experiment.groups import per_user_group_arrays

    struct = trainer.evaluator.last_struct
    topk = struct.get("rec.items").numpy().astype(np.int32)
    dataset = test_data._dataset
    train = train_data._dataset
    uids = np.asarray(test_data.uid_list)
    positives = [test_data.uid2positive_item[u].numpy() for u in uids]
    item_counts = np.bincount(train.inter_feat[train.iid_field].numpy(), minlength=dataset.item_num)
    user_counts = np.bincount(train.inter_feat[train.uid_field].numpy(), minlength=dataset.user_num)
    columns = {"train_count": user_counts[uids], "test_count": np.array([len(p) for p in positives]),
               **per_user_group_arrays(topk, positives, item_counts)}
    lists = {
        "users": np.asarray(dataset.id2token(dataset.uid_field, uids)).astype(str),
        "topk": topk,
        "item_tokens": np.asarray(dataset.field2id_token[dataset.iid_field]).astype(str),
        "test_items": np.concatenate(positives).astype(np.int32) if positives else
        np.zeros(0, np.int32),
        "test_offsets": np.concatenate([[0], np.cumsum([len(p) for p in positives])]),
        "item_train_count": item_counts,
    }
    return columns, lists


def _pairs_digest(data_loader):
    import hashlib

    dataset = data_loader._dataset
    uid, iid = dataset.uid_field, dataset.iid_field
    users = dataset.field2id_token[uid][dataset.inter_feat[uid].numpy()]
    items = dataset.field2id_token[iid][dataset.inter_feat[iid].numpy()]
    pairs = sorted(zip(users.tolist(), items.tolist()))
    digest = hashlib.sha256("\n".join(f"{u}\t{i}" for u, i in pairs).encode("utf-8"))
    return {"pairs": len(pairs), "sha256": digest.hexdigest()}


def split_fingerprint(train_data, valid_data, test_data):
    """Digest of the (user token, item token) pairs of each part of the split. Tokens, not internal
    ids: knowledge-aware datasets renumber items, the pairs stay the same."""
    return {"train": _pairs_digest(train_data), "valid": _pairs_digest(valid_data),
            "test": _pairs_digest(test_data)}


# ---------------------------------------------------------------------------------------------
# the trial


class ValidationReporter:
    """``trainer.epoch_callback``: report every validation, keeping the running best (on a tie the
    later epoch, as RecBole's early stopping keeps the later checkpoint)."""

    def __init__(self, bigger, epochs, report):
        self.bigger = bigger
        self.epochs = epochs
        self.report = report
        self.best = None
        self.last = None

    def restore(self, history):
        """Take up the validations of a resumed run (``trainer.valid_history``) without reporting
        them: the running best and the last result continue from there."""
        for epoch_idx, valid_score, valid_result in history:
            self._update(epoch_idx, valid_score, valid_result)

    def __call__(self, epoch_idx, valid_score, valid_result):
        self._update(epoch_idx, valid_score, valid_result)
        self.report(dict(self.last))

    def _update(self, epoch_idx, valid_score, valid_result):
        score = float(valid_score)
        if self.best is None or (score >= self.best[0] if self.bigger else score <= self.best[0]):
            self.best = (score, epoch_idx)
        self.last = {
            METRIC: score,
            "best_valid_score": self.best[0],
            "best_epoch": self.best[1],
            "epoch": epoch_idx,
            "epochs_run": epoch_idx + 1,
            # the last epoch of the budget; a trial that stops early says so in one more report
            # after fit (a scheduler may stop the trial on this very result)
            "finished": epoch_idx + 1 >= self.epochs,
            **{f"valid_{k}": float(v) for k, v in valid_result.items()},
        }


def set_threads(cpus):
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cpus)))
    return previous


def plain(value):
    """JSON/YAML-safe copy of a configuration value (numpy scalars, tuples)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def run_configuration(run_config, dataset_blob, *, evaluate_test, on_validation=None,
                      per_user_ks=(20,), partial_file=None):
    """Train ``run_config`` on the shared dataset through the shared pipeline (early stopping on
    validation), then, with ``evaluate_test``, evaluate the selected model on test once. Returns
    ``(result, per_user, split)``; ``per_user`` is None without a test evaluation.

    ``partial_file``: where the run keeps its checkpoint while it trains (at most one write per
    ``trial_checkpoint_s`` seconds of the configuration, and one when training ends). A usable checkpoint there (same
    configuration, same data: :func:`usable_partial`) is continued exactly, from the epoch after
    it, instead of starting again; ``result["resumed_from_epoch"]`` says from which (None: from
    the start). Models trained in one epoch (RecBole's traditional trainer: Pop, ItemKNN, EASE
    and the KG-content models) and trainers with their own ``fit`` keep none."""
    from recbole_kgin.quick_start import build_model, build_trainer, fit_and_test

    _, train_data, valid_data, test_data = split_dataset(run_config, dataset_blob)
    split = split_fingerprint(train_data, valid_data, test_data)
    model = build_model(run_config, train_data)
    trainer = build_trainer(run_config, model)
    saved, resumed_from = evaluate_test, None
    if partial_file is not None and getattr(trainer, "resumable", False) and trainer.epochs > 1:
        saved = True
        trainer.checkpoint_interval_s = float(run_config["trial_checkpoint_s"] or 0) or None
        trainer.saved_model_file = str(partial_file)
        checkpoint = usable_partial(partial_file, run_config, train_data)
        if checkpoint is not None:
            trainer.resume_checkpoint(partial_file, checkpoint)
            resumed_from = trainer.start_epoch
            if on_validation is not None:
                on_validation.restore(trainer.valid_history)
    trainer.epoch_callback = on_validation
    result = fit_and_test(run_config, model, trainer, train_data, valid_data,
                          test_data if evaluate_test else None, saved=saved,
                          show_progress=False, evaluate_test=evaluate_test,
                          keep_ranked_items=evaluate_test)
    result["resumed_from_epoch"] = resumed_from
    result["backend"] = {k: getattr(model, a) for k, a in
                         (("scatter", "scatter_backend"), ("graph", "graph_backend"))
                         if hasattr(model, a)}
    per_user = None
    if evaluate_test:
        per_user = per_user_metrics(run_config, trainer, test_data, per_user_ks)
        columns, lists = ranked_lists(trainer, train_data, test_data)
        if list(lists["users"]) != list(per_user["users"]):
            raise RuntimeError("ranked lists do not line up with the test users")
        per_user.update(columns)
        per_user[RANKED] = lists
    return result, per_user, split


# configuration keys that name where and how a run happens, not what it computes
_PLACE_KEYS = ("data_path", "checkpoint_dir", "show_progress", "state", "gpu_id", "use_gpu",
               "device", "worker", "save_dataset", "save_dataloaders", "dataset_save_path",
               "dataloaders_save_path", "local_rank", "nproc", "world_size", "ip", "port",
               "trial_checkpoint_s")


def partial_name(setup, params):
    """File name of a run's checkpoint while it trains: a digest of what the run computes (model,
    dataset, the user's settings less data paths, the trial's parameters and seed, search or
    final), the same on every machine and for every Ray trial of that run."""
    import hashlib
    import json

    layer = {k: v for k, v in (setup.get("user_layer") or {}).items() if k not in _PLACE_KEYS}
    blob = json.dumps({"model": setup["model"], "dataset": setup["dataset"], "user_layer": layer,
                       "params": params, "mode": setup.get("mode")}, sort_keys=True, default=str)
    return f"{setup.get('mode') or 'run'}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.pth"


def usable_partial(path, run_config, train_data):
    """The checkpoint at ``path`` if the run can continue from it: it loads (its digest holds),
    holds training state, was made with the same configuration (less :data:`_PLACE_KEYS`) and on
    the same training data. None when there is no file; for a file that cannot be used, one line
    on stderr says why and None is returned (the run starts again; the file is overwritten)."""
    import sys

    from recbole_kgin import checkpoint as ckpt
    from recbole_kgin.trainer import load_checkpoint

    path = Path(path)
    if not path.is_file():
        return None
    try:
        checkpoint = load_checkpoint(path)
        if not checkpoint.get("training"):
            raise ckpt.CheckpointError("it holds no training state")
        now = ckpt.plain(dict(run_config.final_config_dict))
        then = checkpoint.get("config") or {}
        changed = sorted(k for k in set(now) | set(then)
                         if k not in _PLACE_KEYS and now.get(k) != then.get(k))
        if changed:
            raise ckpt.CheckpointError(f"made with another configuration ({changed[0]}: "
                                       f"{then.get(changed[0])!r} then, {now.get(changed[0])!r} now)")
        ckpt.check_dataset(checkpoint, train_data._dataset, path)
    except Exception as err:  # an optimisation: never fail the run over it
        line = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"not continuing from {path}: {line}; training from the first epoch",
              file=sys.stderr, flush=True)
        return None
    return checkpoint


def write_final(folder, seed, record, per_user):
    """``seed-<seed>.json`` (the run's record), ``seed-<seed>.npz`` (per-user test metrics) and
    ``seed-<seed>.ranked.npz`` (the ranked lists, :func:`ranked_lists`), each written atomically;
    the JSON last, so its presence means the run is complete."""
    from recbole_kgin.experiment.files import write_json, write_npz

    folder = Path(folder)
    per_user = dict(per_user)
    lists = per_user.pop(RANKED, None)
    if lists is not None:
        write_npz(folder / f"seed-{seed}.ranked.npz", lists, compressed=True)
    write_npz(folder / f"seed-{seed}.npz", per_user)
    write_json(folder / f"seed-{seed}.json", record)


def _read_npz(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def read_per_user(folder, seed):
    return _read_npz(Path(folder) / f"seed-{seed}.npz")


def read_ranked(folder, seed):
    """The ranked lists of a final run, or None for a run made before they were kept."""
    path = Path(folder) / f"seed-{seed}.ranked.npz"
    return _read_npz(path) if path.is_file() else None


# Key of a trial's configuration when a search runs a given list of configurations (a grid over
# whole configurations: Ray's own ``points_to_evaluate`` cannot hold list values such as CKE's
# ``reg_weights``).
POINT_KEY = "configuration"


def trial_params(config):
    """A trial's parameters: ``config`` with a whole-configuration entry unpacked."""
    config = dict(config or {})
    point = config.pop(POINT_KEY, None)
    return {**(point or {}), **config}


def run_trial(params, *, setup, dataset_blob):
    """Ray Tune function trainable. ``setup["mode"]``: ``search`` (validation only, every validation
    reported so that a scheduler can stop the trial) or ``final`` (the selected configuration with
    one ``seed``: test evaluated once, record and per-user metrics written to ``setup["final_dir"]``)."""
    import ray

    from recbole_kgin import quiet, ray_api
    from recbole_kgin.quick_start import create_config

    quiet.install()
    params = {k: plain(v) for k, v in trial_params(params).items()}
    node_id = ray.get_runtime_context().get_node_id()  # which Ray node ran it (trials.md, results)

    def report(values):
        # started_at / reported_at: this trial's own wall clock (float s; Ray's "timestamp" is
        # whole seconds), so that when trials ran at once can be read back from their reports
        ray_api.report({**values, "node_id": node_id, "started_at": started_at,
                        "reported_at": time.time(), "gpu_share": float(setup["gpus_per_trial"])})

    trial_dir = Path(ray_api.trial_dir()).resolve()
    gpu_ids = ray.get_gpu_ids() if setup["gpus_per_trial"] > 0 else []
    import torch

    if gpu_ids and not torch.cuda.is_available():  # GPUs declared to Ray, none here: the CPU
        gpu_ids = []
    started_at = time.time()
    final = setup.get("mode") == "final"
    forced = {
        "checkpoint_dir": str(trial_dir / "checkpoints"),
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        # RecBole sets CUDA_VISIBLE_DEVICES from gpu_id: give it the GPUs Ray assigned ("" = CPU)
        "gpu_id": ",".join(str(g) for g in gpu_ids),
    }
    run_config = create_config(setup["model"], setup["dataset"],
                               config_dict={**setup["user_layer"], **params, **forced})
    set_threads(setup["cpus_per_trial"])
    reporter = ValidationReporter(bool(run_config["valid_metric_bigger"]),
                                  int(run_config["epochs"]),
                                  report)  # seed runs too: progress lines, the node it ran on
    partial_file = None
    if setup.get("partial_dir"):  # see run_configuration: a run killed mid-way continues
        partial_file = Path(setup["partial_dir"]) / partial_name(setup, params)
        partial_file.parent.mkdir(parents=True, exist_ok=True)
    result, per_user, split = run_configuration(
        run_config, dataset_blob, evaluate_test=final, on_validation=reporter,
        per_user_ks=tuple(setup.get("per_user_ks", (20,))), partial_file=partial_file)
    if reporter.last is None:
        raise RuntimeError("the run finished without a validation (check epochs and eval_step)")
    if final:
        result["saved_model_file"] = None  # inside the trial directory; not kept
        record = {**result, "params": params, "seed": int(run_config["seed"]), "split": split,
                  "trial_dir": str(trial_dir), "node_id": node_id}
        write_final(setup["final_dir"], int(run_config["seed"]), record, per_user)
    report({**reporter.last, "finished": True, "seconds_per_epoch": result["seconds_per_epoch"],
            "n_params": result["n_params"], "resumed_from_epoch": result["resumed_from_epoch"]})
    if partial_file is not None:  # done: a rerun of the same run starts afresh (or is skipped)
        partial_file.unlink(missing_ok=True)
