# -*- coding: utf-8 -*-
"""Search-space files for ``run_recbole_kgin.py tune``.

A space file is a YAML mapping from a configuration key to exactly one distribution::

    learning_rate: {choice: [1.0e-4, 1.0e-3, 5.0e-3]}   # one of the listed values
    n_factors: {grid: [4, 8]}                             # every value (crossed with other grids)
    node_dropout_rate: {uniform: [0.1, 0.5]}              # float, low <= x <= high
    sim_regularity: {loguniform: [1.0e-5, 1.0e-3]}        # float, log-uniform, 0 < low < high
    context_hops: {randint: [1, 3]}                       # int, both ends included

``choice`` / ``grid`` values may be any YAML value (numbers, strings, lists such as ``[64, 32]``).
Numbers like ``1e-4`` are read as floats (as RecBole reads its own YAML files).

Every key must be a key of the merged configuration of the model and dataset (RecBole's defaults,
this project's property files, the user's config files and overrides), and must not be one that
fixes the data (the dataset is built once and shared by all trials) or the model-selection protocol.
Everything is checked before Ray starts; the first problem is reported on one line naming the file
and the key.
"""

import math
import random
import re
from numbers import Integral, Real
from pathlib import Path

import yaml

from recbole_kgin.errors import UsageError

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")
DISCRETE = ("choice", "grid")

# Keys that cannot be searched, besides the dataset keys RecBole lists (Config.parameters["Dataset"]).
FIXED_KEYS = {
    "model": "the model is given by --model",
    "dataset": "the dataset is given by --dataset",
    "data_path": "the dataset is built once for all trials",
    "kg_reverse_r": "it changes how the dataset is built, and the dataset is built once for all trials",
    "eval_args": "the split must be the same for every trial",
    "seed": "the split must be the same for every trial",
    "split_seed": "the split must be the same for every trial",
    "reproducibility": "trials must be comparable",
    "metrics": "it changes the model-selection protocol",
    "topk": "it changes the model-selection protocol",
    "valid_metric": "it changes the model-selection protocol",
    "valid_metric_bigger": "it changes the model-selection protocol",
    "checkpoint_dir": "the search sets it for every trial",
    "save_dataset": "the search sets it for every trial",
    "dataset_save_path": "the search sets it for every trial",
    "save_dataloaders": "the search sets it for every trial",
    "dataloaders_save_path": "the search sets it for every trial",
    "gpu_id": "GPUs are assigned by Ray (--gpus-per-trial)",
    "use_gpu": "GPUs are assigned by Ray (--gpus-per-trial)",
    "show_progress": "the search sets it for every trial",
}

_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.1 only reads 1.0e-4 as a float; this also accepts 1e-4, like RecBole's config loader.
_FLOAT_PATTERN = re.compile(
    r"^(?:[-+]?(?:\d[\d_]*\.\d*|\.\d+)(?:[eE][-+]?\d+)?"
    r"|[-+]?\d[\d_]*[eE][-+]?\d+"
    r"|[-+]?\.(?:inf|Inf|INF)"
    r"|\.(?:nan|NaN|NAN))$"
)


class SpaceLoader(yaml.SafeLoader):
    """Safe YAML loader that reads ``1e-4`` as a float."""


SpaceLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpaceLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_PATTERN, list("-+0123456789."))


class SpaceError(UsageError):
    """A problem in a search-space file (one line: file, key, what is wrong)."""


def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def read_space(path):
    """Parse a space file into ``{key: (distribution, args)}`` (structure only, no config check)."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"space file not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=SpaceLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise SpaceError(f"{path}: not valid YAML{where} ({problem})") from None
    if raw is None:
        raise SpaceError(f"{path}: the space is empty (expected key: {{distribution: args}})")
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping of key: {{distribution: args}}, "
                         f"got {type(raw).__name__}")
    space = {}
    for key, spec in raw.items():
        if not isinstance(key, str):
            raise SpaceError(f"{path}: key {key!r} is not a string")
        space[key] = _parse_spec(path, key, spec)
    return space


def _parse_spec(path, key, spec):
    def fail(message):
        raise SpaceError(f"{path}: key '{key}': {message}")

    if not isinstance(spec, dict) or len(spec) != 1:
        fail(f"expected exactly one distribution, e.g. {{choice: [...]}}; "
             f"distributions: {', '.join(DISTRIBUTIONS)}")
    (dist, args), = spec.items()
    if dist not in DISTRIBUTIONS:
        fail(f"unknown distribution {dist!r} (expected one of {', '.join(DISTRIBUTIONS)})")
    if dist in DISCRETE:
        if not isinstance(args, list) or not args:
            fail(f"{dist} needs a non-empty list of values")
        return dist, list(args)
    if not isinstance(args, list) or len(args) != 2:
        fail(f"{dist} needs [low, high]")
    low, high = args
    if dist == "randint":
        if not (_is_int(low) and _is_int(high)):
            fail(f"randint bounds must be integers, got {args}")
        if low > high:
            fail(f"low {low} > high {high}")
        return dist, [int(low), int(high)]
    if not (_is_number(low) and _is_number(high)):
        fail(f"{dist} bounds must be finite numbers, got {args}")
    if low >= high:
        fail(f"low {low} must be < high {high}")
    if dist == "loguniform" and low <= 0:
        fail(f"loguniform needs 0 < low, got {low}")
    return dist, [float(low), float(high)]


def check_space(space, path, config, fixed_keys=None):
    """Check every key against the merged :class:`~recbole_kgin.config.Config` ``config``."""
    known = set(config.final_config_dict)
    dataset_keys = set(config.parameters.get("Dataset", ()))
    fixed = dict(FIXED_KEYS, **(fixed_keys or {}))
    model = config["model"]
    for key in space:
        if key in fixed:
            raise SpaceError(f"{path}: key '{key}' cannot be searched: {fixed[key]}")
        if key in dataset_keys:
            raise SpaceError(f"{path}: key '{key}' cannot be searched: it is a dataset key and the "
                             f"dataset is built once for all trials")
        if key not in known:
            raise SpaceError(f"{path}: unknown key '{key}': not a configuration key of {model} on "
                             f"{config['dataset']}")
        check_values_of(key, space[key], path, model)


def check_values_of(key, spec, path, model):
    """Every value a distribution can give (each listed value; both bounds of a range) must meet
    the key's rule for ``model`` (:func:`recbole_kgin.config_check.value_rules`)."""
    from recbole_kgin.config_check import value_rules

    rule = value_rules(model).get(key)
    if rule is None:
        return
    check, expected = rule
    dist, args = spec
    values = args
    if dist == "uniform" or dist == "loguniform":
        kind = "floats in"
    elif dist == "randint":
        kind = "integers in"
    else:
        kind = None
    for value in values:
        if kind is None and not check(value):
            raise SpaceError(f"{path}: key '{key}': {dist} value {value!r} is not {expected} "
                             f"for {model}")
        if kind is not None and not check(int(value) if dist == "randint" else float(value)):
            raise SpaceError(f"{path}: key '{key}': {dist} [{args[0]!r}, {args[1]!r}] gives "
                             f"{kind} that range; {value!r} is not {expected} for {model}")


def check_search_compatible(space, path, search):
    """Reject distributions the chosen search algorithm cannot sample."""
    for key, (dist, _) in space.items():
        if search == "grid" and dist not in DISCRETE:
            raise SpaceError(f"{path}: key '{key}': --search grid needs choice or grid values, "
                             f"not {dist}")
        if search in ("hyperopt", "optuna") and dist == "grid":
            raise SpaceError(f"{path}: key '{key}': grid is only supported by --search random or "
                             f"grid (use choice with --search {search})")


def grid_size(space, search):
    """Number of grid points (trials per sample) Ray's variant generator expands the space into."""
    size = 1
    for dist, args in space.values():
        if dist == "grid" or (search == "grid" and dist == "choice"):
            size *= len(args)
    return size


def distinct_samples(space, count, seed):
    """The configurations a random search runs, drawn up front by a ``seed``-ed generator, so that
    every machine draws the same ones and a search can be continued from its ledger; None for a
    space with a ``grid`` key (grids are crossed by Ray's variant generator).

    - The discrete keys (``choice``, and ``randint`` as its listed integers) are drawn without
      replacement over their product: a space of discrete keys only gives ``count`` distinct
      configurations, or all of them when there are fewer. (Random search samples each trial
      independently, so over a small discrete space it repeats configurations and a model gets
      fewer distinct trials than its budget says.)
    - A space with a continuous key (``uniform``, ``loguniform``) gives ``count`` configurations:
      the discrete part is drawn without replacement until the product is used up, then again
      from the whole product; each continuous key is drawn independently for every configuration
      (log-uniform: uniform in the logarithm), from the same generator after the discrete draws.
    """
    if not space or any(dist == "grid" for dist, _ in space.values()):
        return None
    rng = random.Random(seed)
    keys = list(space)
    discrete = {k: _values(*space[k]) for k in keys if space[k][0] in ("choice", "randint")}
    sizes = [len(v) for v in discrete.values()]
    total = math.prod(sizes)
    continuous = [k for k in keys if k not in discrete]
    if not continuous:
        count = min(count, total)
    indices = []
    while len(indices) < count:  # a second round only for a space with a continuous key
        indices += rng.sample(range(total), min(count - len(indices), total))
    points = []
    for index in indices:
        point = {}
        for key, size in zip(discrete, sizes):
            index, pick = divmod(index, size)
            point[key] = discrete[key][pick]
        points.append(point)
    for point in points:
        for key in continuous:
            dist, (low, high) = space[key]
            point[key] = rng.uniform(low, high) if dist == "uniform" else \
                math.exp(rng.uniform(math.log(low), math.log(high)))
    return [{k: p[k] for k in keys} for p in points]  # the space's key order


def _values(dist, args):
    """The values a discrete distribution draws from: a ``choice``'s list, a ``randint``'s
    integers (both ends included)."""
    return list(args) if dist == "choice" else range(int(args[0]), int(args[1]) + 1)


def to_param_space(space, search):
    """Ray Tune domains for ``space`` (``choice`` becomes a grid under ``--search grid``)."""
    from ray import tune

    domains = {}
    for key, (dist, args) in space.items():
        if dist == "grid" or (search == "grid" and dist == "choice"):
            domains[key] = tune.grid_search(list(args))
        elif dist == "choice":
            domains[key] = tune.choice(list(args))
        elif dist == "uniform":
            domains[key] = tune.uniform(*args)
        elif dist == "loguniform":
            domains[key] = tune.loguniform(*args)
        else:  # randint: both ends included; Ray's upper bound is exclusive
            domains[key] = tune.randint(args[0], args[1] + 1)
    return domains
