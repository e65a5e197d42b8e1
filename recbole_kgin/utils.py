# -*- coding: utf-8 -*-
"""Model and trainer lookup: this package's models first, then RecBole's."""

import importlib

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_kgin.trainer import RecordingTrainerMixin

# name -> (module, class name, trainer: ("own", class) | ("recbole", name RecBole looks it up by))
MODELS = {
    "KGIN": ("recbole_kgin.model.kgin", "KGIN", ("own", "KGINTrainer")),
}


def get_model(model_name):
    """Return the model class for ``model_name``: ours when we define it, else RecBole's."""
    if model_name in MODELS:
        module, cls, _ = MODELS[model_name]
        return getattr(importlib.import_module(module), cls)
    return recbole_get_model(model_name)


_trainer_cache = {}


def get_trainer(model_type, model_name):
    """Return the trainer class for a model, with :class:`RecordingTrainerMixin` in front of it."""
    if model_name in MODELS:
        kind, name = MODELS[model_name][2]
        if kind == "own":
            base = getattr(importlib.import_module("recbole_kgin.trainer"), name)
        else:
            base = recbole_get_trainer(model_type, name)
    else:
        base = recbole_get_trainer(model_type, model_name)
    if base not in _trainer_cache:
        _trainer_cache[base] = type(base.__name__, (RecordingTrainerMixin, base), {})
    return _trainer_cache[base]
