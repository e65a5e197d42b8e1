# -*- coding: utf-8 -*-
"""Checks of a configuration before any data is read: known keys, value types and ranges, model
names. Every failure is a one-line :class:`~recbole_kgin.errors.UsageError` naming the key and where
it came from (``--key`` or the config file).

Known keys are RecBole's (every YAML file of its ``properties/`` tree and its argument lists), this
project's (``properties/overall.yaml``, ``model/*.yaml``, ``dataset/*.yaml``, ``quick_start.yaml``)
and whatever the layers below the user's own put in (e.g. the dataset's converted YAML).
"""

import difflib
import functools
import importlib
import math
import os
import re
from pathlib import Path

import yaml

from recbole_kgin.data.kg_variants import VARIANTS as KG_VARIANTS
from recbole_kgin.errors import UsageError


class ConfigValueError(UsageError, ValueError):
    """A bad configuration key or value (a ValueError too, as RecBole's own checks raise)."""


PROJECT_PROPERTIES = Path(__file__).resolve().parents[1] / "properties"

# keys RecBole sets itself or reads without listing them in a YAML file
RECBOLE_RUNTIME_KEYS = {
    "model", "dataset", "config_files", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "device",
    "single_spec", "local_rank", "train_neg_sample_args", "valid_neg_sample_args",
    "test_neg_sample_args", "eval_neg_sample_args", "additional_feat_suffix", "verbose",
    "is_ddp", "nproc", "world_size", "offset", "ip", "port", "backend",
}


def _yaml_keys(folder, skip=()):
    keys = set()
    for file in sorted(Path(folder).rglob("*.yaml")):
        if file.name in skip:
            continue
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(data, dict):
            keys.update(str(k) for k in data)
    return keys


@functools.lru_cache(maxsize=1)
def static_known_keys():
    """RecBole's and this project's configuration keys (not the dataset-specific ones)."""
    import recbole
    from recbole.utils import argument_list

    keys = set(RECBOLE_RUNTIME_KEYS)
    keys |= _yaml_keys(Path(recbole.__file__).parent / "properties",
                       skip=("url.yaml", "kg_url.yaml"))
    for name in dir(argument_list):
        value = getattr(argument_list, name)
        if name.endswith("_arguments") and isinstance(value, list):
            keys.update(value)
    keys |= _yaml_keys(PROJECT_PROPERTIES, skip=())
    keys -= _tune_only_keys()
    return frozenset(keys)


def _tune_only_keys():
    """Top-level keys of the search-space files (a format of their own, not configuration)."""
    keys = set()
    for file in (PROJECT_PROPERTIES / "tune").glob("*.yaml"):
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue
        if isinstance(data, dict):
            keys.update(k for k in data if k in ("search", "space", "fixed", "params"))
    return keys


def closest(name, candidates):
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in candidates}
        match = [lowered[name.lower()]] if name.lower() in lowered else []
    return match[0] if match else None


def check_keys(external, internal, sources):
    """Refuse keys the user set that no layer knows."""
    known = static_known_keys() | set(internal)
    for key in external:
        if key in known:
            continue
        hint = closest(str(key), known)
        where = sources.get(key, f"--{key}")
        suggestion = f": did you mean '{hint}'?" if hint else ""
        raise ConfigValueError(f"unknown config key '{key}' (from {where}){suggestion}")


# ---------------------------------------------------------------------------------- values
def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(v):
    return _is_int(v) and v > 0


def _non_negative_int(v):
    return _is_int(v) and v >= 0


def _int_or_negative(v):  # RecBole: eval_step <= 0 turns validation off
    return _is_int(v)


def _positive_number(v):
    return _is_number(v) and v > 0


def _non_negative_number(v):
    return _is_number(v) and v >= 0


def _non_negative_numbers(v):
    if isinstance(v, (list, tuple)):
        return len(v) > 0 and all(_non_negative_number(x) for x in v)
    return _non_negative_number(v)


def _rate(v):
    return _is_number(v) and 0 <= v < 1


def _bool(v):
    return isinstance(v, bool)


def _int_or_none(v):
    return v is None or _is_int(v)


def _topk(v):
    if isinstance(v, (list, tuple)):
        return len(v) > 0 and all(_positive_int(x) for x in v)
    return _positive_int(v)


def _choice(*options):
    def check(v):
        return isinstance(v, str) and v.lower() in options
    return check


# key -> (check, expected)
VALUE_RULES = {
    "epochs": (_positive_int, "an integer >= 1"),
    "train_batch_size": (_positive_int, "an integer >= 1"),
    "eval_batch_size": (_positive_int, "an integer >= 1"),
    "stopping_step": (_positive_int, "an integer >= 1"),
    "eval_step": (_int_or_negative, "an integer (<= 0 turns validation off)"),
    "learning_rate": (_positive_number, "a finite number > 0"),
    "weight_decay": (_non_negative_number, "a finite number >= 0"),
    "seed": (_is_int, "an integer"),
    "split_seed": (_int_or_none, "an integer or ~"),
    "worker": (_non_negative_int, "an integer >= 0"),
    "learner": (_choice("adam", "adamw", "sgd", "adagrad", "rmsprop", "sparse_adam"),
                "one of adam, adamw, sgd, adagrad, rmsprop, sparse_adam"),
    "topk": (_topk, "a positive integer or a list of them"),
    "reproducibility": (_bool, "True or False"),
    "use_gpu": (_bool, "True or False"),
    "show_progress": (_bool, "True or False"),
    "save_dataset": (_bool, "True or False"),
    "save_dataloaders": (_bool, "True or False"),
    "valid_metric_bigger": (_bool, "True or False"),
    "kg_reverse_r": (_bool, "True or False"),
    "kg_linked_items_only": (_bool, "True or False"),
    "kg_keep_unlinked_items": (_bool, "True or False"),
    "kg_dedup": (_bool, "True or False"),
    "kg_variant": (lambda v: v in KG_VARIANTS, "one of " + ", ".join(KG_VARIANTS)),
    "kg_variant_seed": (_int_or_none, "an integer or ~"),
    "trial_checkpoint_s": (_non_negative_number, "a finite number of seconds >= 0"),
    "joint_init": (_bool, "True or False"),
    "checkpoint_dir": (lambda v: isinstance(v, str) and v != "", "a directory name"),
    "data_path": (lambda v: isinstance(v, str) and v != "", "a directory name"),
    # KGIN (properties/model/KGIN.yaml)
    "embedding_size": (_positive_int, "an integer >= 1"),
    "n_factors": (_positive_int, "an integer >= 1"),
    "context_hops": (_positive_int, "an integer >= 1"),
    "node_dropout_rate": (_rate, "a number in [0, 1)"),
    "mess_dropout_rate": (_rate, "a number in [0, 1)"),
    "reg_weight": (_non_negative_numbers, "a finite number >= 0 (or a list of them)"),
    "sim_regularity": (_non_negative_number, "a finite number >= 0"),
    "temperature": (_positive_number, "a finite number > 0"),
    "fused_normalize": (_bool, "True or False"),
    "fused_propagation": (_bool, "True or False"),
    "fused_loss": (_bool, "True or False"),
    "static_graph": (_bool, "True or False"),
    "cuda_graph": (_bool, "True or False"),
    "neg_sampling_device": (_bool, "True or False"),
}

def _unit(v):
    return _is_number(v) and 0 <= v <= 1


def _int_list(v):
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(_positive_int(x) for x in v)


# model -> key -> (check, expected): keys whose meaning depends on the model
MODEL_VALUE_RULES = {
    "KGItemKNN": {
        "k": (_positive_int, "an integer >= 1"),
        "shrink": (_non_negative_number, "a finite number >= 0"),
        "alpha": (_unit, "a number in [0, 1]"),
        "similarity": (_choice("cosine", "asymmetric"), "one of cosine, asymmetric"),
        "kg_weighting": (_choice("none", "idf", "bm25"), "one of none, idf, bm25"),
        "kg_hops": (_positive_int, "an integer >= 1"),
    },
    "KGEASE": {
        "kg_weight": (_non_negative_number, "a finite number >= 0"),
        "kg_weighting": (_choice("none", "idf", "bm25"), "one of none, idf, bm25"),
        "kg_hops": (_positive_int, "an integer >= 1"),
    },
    "ItemKNN": {"k": (_positive_int, "an integer >= 1"),
                "shrink": (_non_negative_number, "a finite number >= 0")},
    "LightGCN": {"n_layers": (_positive_int, "an integer >= 1")},
    "KGAT": {"layers": (_int_list, "a list of integers >= 1"),
             "mess_dropout": (_rate, "a number in [0, 1)")},
    "CFKG": {"margin": (_non_negative_number, "a finite number >= 0")},
    "KGCN": {"n_iter": (_positive_int, "an integer >= 1"),
             "neighbor_sample_size": (_positive_int, "an integer >= 1"),
             "aggregator": (_choice("sum", "concat", "neighbor"), "one of sum, concat, neighbor")},
}


def value_rules(model):
    """``{key: (check, expected)}`` that values of ``model``'s configuration must meet."""
    return {**VALUE_RULES, **MODEL_VALUE_RULES.get(str(model), {})}


KGIN_CHOICES = {
    "ind": ("distance", "cosine", "mi"),
    "node_dropout_semantics": ("drop", "reference"),
    "relation_messages": ("gather", "blocks"),
    "adam_impl": ("auto", "loop", "foreach", "fused"),
}


def _describe(value):
    return repr(value) if not isinstance(value, str) else f"'{value}'"


def check_values(final, sources, model=None):
    """Type and range of the common keys and the model's own; metrics and the validation metric.
    ``model``: the model's name (RecBole puts it into the configuration only afterwards)."""
    for key, (check, expected) in value_rules(model or final.get("model")).items():
        if key in final and final[key] is not None or key in ("epochs", "learning_rate"):
            value = final.get(key)
            if key in ("split_seed", "kg_variant_seed") and value is None:
                continue
            if not check(value):
                raise ConfigValueError(f"config key '{key}' = {_describe(value)} (from "
                                 f"{sources.get(key, 'the defaults')}): expected {expected}")
    if str(model or final.get("model", "")) == "KGIN" or "ind" in sources:
        for key, options in KGIN_CHOICES.items():
            value = final.get(key)
            if value is not None and value not in options:
                raise ConfigValueError(f"config key '{key}' = {_describe(value)} (from "
                                 f"{sources.get(key, 'the defaults')}): expected one of "
                                 f"{', '.join(options)}")
    check_passed_through(final, sources)
    _check_metrics(final, sources)


_GPU_IDS = re.compile(r"^\s*(\d+\s*(,\s*\d+\s*)*)?$")
_STATES = ("debug", "info", "warning", "error", "critical")
_EVAL_KEYS = ("split", "group_by", "order", "mode")
_NEG_KEYS = ("distribution", "sample_num", "alpha", "dynamic", "candidate_num")


def _fail(key, value, sources, expected):
    raise ConfigValueError(f"config key '{key}' = {_describe(value)} (from "
                           f"{sources.get(key, 'the defaults')}): expected {expected}")


def _check_eval_mode(mode):
    modes = mode.values() if isinstance(mode, dict) else [mode]
    if isinstance(mode, dict) and set(mode) - {"valid", "test"}:
        return False
    for m in modes:
        if not isinstance(m, str):
            return False
        low = m.lower()
        if low in ("full", "labeled"):
            continue
        if low[:3] in ("uni", "pop") and low[3:].isdigit() and int(low[3:]) > 0:
            continue
        return False
    return True


def _check_split(split):
    if split is None:
        return True
    if not isinstance(split, dict) or len(split) != 1:
        return False
    (how, value), = split.items()
    if how == "RS":
        return (isinstance(value, (list, tuple)) and len(value) in (2, 3)
                and all(_non_negative_number(v) for v in value) and sum(value) > 0)
    if how == "LS":
        return value in ("valid_and_test", "test_only")
    return False


def check_passed_through(final, sources):
    """RecBole keys we pass on unchecked would fail later with RecBole's traceback, or be ignored:
    ``eval_args``, ``train_neg_sample_args``, ``load_col``, ``state``, ``gpu_id``, ``device``."""
    if "device" in sources:
        raise ConfigValueError(f"config key 'device' (from {sources['device']}) cannot be set: "
                               "RecBole derives it from use_gpu and gpu_id; use --gpu_id=N, or "
                               "--use_gpu=False for the CPU")
    gpu_id = final.get("gpu_id")
    text = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (list, tuple)) else str(
        "" if gpu_id is None else gpu_id)
    if not _GPU_IDS.match(text):
        _fail("gpu_id", gpu_id, sources, "GPU ids, e.g. 0 or 0,1 (or '' for the CPU)")
    state = final.get("state")
    if state is not None and str(state).lower() not in _STATES:
        _fail("state", state, sources, "one of " + ", ".join(s.upper() for s in _STATES))
    eval_args = final.get("eval_args")
    if eval_args is not None:
        if not isinstance(eval_args, dict) or set(eval_args) - set(_EVAL_KEYS):
            _fail("eval_args", eval_args, sources,
                  "a mapping with keys among " + ", ".join(_EVAL_KEYS))
        if not _check_split(eval_args.get("split")):
            _fail("eval_args", eval_args, sources,
                  "split {'RS': [train, valid, test]} or {'LS': 'valid_and_test'|'test_only'}")
        if eval_args.get("order") not in (None, "RO", "TO"):
            _fail("eval_args", eval_args, sources, "order RO or TO")
        if eval_args.get("group_by") not in (None, "user", "none", "None"):
            _fail("eval_args", eval_args, sources, "group_by user or none")
        if "mode" in eval_args and not _check_eval_mode(eval_args["mode"]):
            _fail("eval_args", eval_args, sources,
                  "mode full, labeled, uniN or popN (or {valid: ..., test: ...})")
    neg = final.get("train_neg_sample_args")
    if neg is not None and "train_neg_sample_args" in sources:
        if not isinstance(neg, dict) or set(neg) - set(_NEG_KEYS):
            _fail("train_neg_sample_args", neg, sources,
                  "~ or a mapping with keys among " + ", ".join(_NEG_KEYS))
        if neg.get("distribution") not in (None, "none", "None", "uniform", "popularity"):
            _fail("train_neg_sample_args", neg, sources, "distribution uniform or popularity")
        if "sample_num" in neg and not _positive_int(neg["sample_num"]):
            _fail("train_neg_sample_args", neg, sources, "sample_num an integer >= 1")
        if "candidate_num" in neg and not _non_negative_int(neg["candidate_num"]):
            _fail("train_neg_sample_args", neg, sources, "candidate_num an integer >= 0")
        if "dynamic" in neg and not _bool(neg["dynamic"]):
            _fail("train_neg_sample_args", neg, sources, "dynamic True or False")
    load_col = final.get("load_col")
    if load_col is not None and not (
            isinstance(load_col, dict) and all(
                isinstance(k, str) and isinstance(v, (list, tuple)) and v
                and all(isinstance(c, str) for c in v) for k, v in load_col.items())):
        _fail("load_col", load_col, sources,
              "~ or a mapping of file suffix to a list of column names, e.g. {inter: [user_id, "
              "item_id]}")


def check_device(final, sources):
    """After RecBole picked the device: GPU ids the user asked for but that gave the CPU."""
    if "gpu_id" not in sources or not final.get("use_gpu", True):
        return
    text = str(final.get("gpu_id") or "")
    device = final.get("device")
    if text.strip() and getattr(device, "type", str(device)) == "cpu":
        raise ConfigValueError(f"config key 'gpu_id' = '{text}' (from {sources['gpu_id']}): no "
                               "CUDA device with that id is available here; leave gpu_id out or "
                               "pass --use_gpu=False to run on the CPU")


def _check_metrics(final, sources):
    from recbole.evaluator.register import metric_types

    metrics = final.get("metrics")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics or [])
    for metric in metrics:
        if not isinstance(metric, str) or metric.lower() not in metric_types:
            hint = closest(str(metric).lower(), metric_types)
            raise ConfigValueError(f"config key 'metrics': unknown metric {_describe(metric)}"
                             + (f": did you mean '{hint}'?" if hint else ""))
    valid_metric = final.get("valid_metric")
    if not isinstance(valid_metric, str) or not valid_metric:
        raise ConfigValueError(f"config key 'valid_metric' = {_describe(valid_metric)}: expected "
                         "e.g. Recall@20")
    name, _, k = valid_metric.lower().partition("@")
    names = [m.lower() for m in metrics]
    topk = final.get("topk")
    topk = [topk] if _is_int(topk) else list(topk or [])
    if name not in names or (k and (not k.isdigit() or int(k) not in topk)):
        raise ConfigValueError(
            f"config key 'valid_metric' = '{valid_metric}' (from "
            f"{sources.get('valid_metric', 'the defaults')}) is not computed: metrics are "
            f"{metrics} at topk {topk}")


def check_dataset_exists(config):
    """The dataset folder must exist (RecBole would otherwise try to download it). ``config`` is a
    finished Config: its ``data_path`` already ends in the dataset's name."""
    if config["dataset"] == "ml-100k":
        return
    saved = config["dataset_save_path"] if "dataset_save_path" in config else None
    if saved and os.path.isfile(str(saved)):  # RecBole reloads a saved dataset from there
        return
    folder = str(config["data_path"])
    if not os.path.isdir(folder):
        raise ConfigValueError(
            f"dataset '{config['dataset']}' not found: no directory {folder} (convert one with "
            "'run_recbole_kgin.py convert', or set --data_path)")


# ---------------------------------------------------------------------------------- models
def resolve_model(name):
    """The canonical spelling of a model name (ours first, then RecBole's), any case; a one-line
    error with the closest name otherwise."""
    from recbole_kgin.utils import MODELS, anomaly_setting_kept, recbole_model_modules

    if name in MODELS:
        return name
    for ours in MODELS:
        if ours.lower() == name.lower():
            return ours
    module_name = recbole_model_modules().get(name.lower())
    if module_name is not None:
        with anomaly_setting_kept():
            module = importlib.import_module(module_name)
        for attr in dir(module):
            if attr.lower() == name.lower() and isinstance(getattr(module, attr), type):
                return attr
    candidates = list(MODELS) + sorted(recbole_model_modules())
    hint = closest(name.lower(), [c.lower() for c in candidates])
    if hint is not None:
        hint = next(c for c in candidates if c.lower() == hint)
        if hint in recbole_model_modules():
            try:
                hint = resolve_model(hint)
            except UsageError:
                pass
    raise ConfigValueError(f"unknown model '{name}': not one of this package's models "
                     f"({', '.join(MODELS)}) nor a RecBole 1.2.1 model"
                     + (f"; did you mean '{hint}'?" if hint else ""))
