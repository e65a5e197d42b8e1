# -*- coding: utf-8 -*-
"""Model and trainer lookup: this package's models first, then RecBole's."""

import contextlib
import functools
import importlib
from pathlib import Path

import recbole.model
import torch
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_kgin.trainer import RecordingTrainerMixin

# name -> (module, class name, trainer: ("own", class) | ("recbole", name RecBole looks it up by))
MODELS = {
    "KGIN": ("recbole_kgin.model.kgin", "KGIN", ("own", "KGINTrainer")),
    # RecBole's KGAT with a DGL-free graph construction (RecBole's KGAT.yaml and KGATTrainer apply)
    "KGAT": ("recbole_kgin.model.kgat", "KGAT", ("recbole", "KGAT")),
    # RecBole's CFKG with a full-ranking evaluation over all items at once
    "CFKG": ("recbole_kgin.model.cfkg", "CFKG", ("recbole", "CFKG")),
    # RecBole's KGCN with a full-ranking evaluation computed once per (user, entity)
    "KGCN": ("recbole_kgin.model.kgcn", "KGCN", ("recbole", "KGCN")),
    # RecBole's own KGIN, runnable without torch-scatter (RecBole's KGIN.yaml, KGTrainer)
    "RecBoleKGIN": ("recbole_kgin.model.recbole_builtin", "RecBoleKGIN", ("recbole", "KGIN")),
    # RecBole's MCCLK, runnable without torch-scatter (RecBole's MCCLK.yaml and trainer apply)
    "MCCLK": ("recbole_kgin.model.mcclk", "MCCLK", ("recbole", "MCCLK")),
    # KG-content baselines, closed form (RecBole's TraditionalTrainer: no training epochs)
    "KGItemKNN": ("recbole_kgin.model.kg_itemknn", "KGItemKNN", ("recbole", "KGItemKNN")),
    "KGEASE": ("recbole_kgin.model.kg_ease", "KGEASE", ("recbole", "KGEASE")),
}


_RECBOLE_MODEL_DIRS = ("general_recommender", "context_aware_recommender",
                       "sequential_recommender", "knowledge_aware_recommender",
                       "exlib_recommender")


@functools.lru_cache(maxsize=1)
def recbole_model_modules():
    """``{file stem: module}`` of every RecBole 1.2.1 model file (read from the folders, nothing
    imported: importing some of them changes global state, see :func:`anomaly_setting_kept`)."""
    root = Path(recbole.model.__file__).parent
    return {file.stem: f"recbole.model.{sub}.{file.stem}"
            for sub in _RECBOLE_MODEL_DIRS for file in sorted((root / sub).glob("*.py"))
            if file.stem != "__init__"}


def _is_recbole_model(model_name):
    return model_name.lower() in recbole_model_modules()


def get_model(model_name):
    """Return the model class for ``model_name``: ours when we define it, else RecBole's."""
    if model_name in MODELS:
        module, cls, _ = MODELS[model_name]
        return getattr(importlib.import_module(module), cls)
    if not _is_recbole_model(model_name):
        raise ValueError(
            f"unknown model '{model_name}': not one of {sorted(MODELS)} nor a RecBole 1.2.1 model"
        )
    with anomaly_setting_kept():  # it imports its sequential models on the way to the others
        return recbole_get_model(model_name)


@contextlib.contextmanager
def anomaly_setting_kept():
    """Run a block that may import RecBole's model modules, keeping autograd's anomaly detection as
    the caller had it. ``recbole/model/sequential_recommender/sine.py`` turns it on for the whole
    process when it is imported (and importing any of RecBole's sequential models imports it):
    every later step would then record a traceback per operation and check every gradient for NaN
    (no value changes, only the speed: one CKE epoch on ml-100k takes about twice as long)."""
    anomaly, check_nan = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    try:
        yield
    finally:
        torch.autograd.set_detect_anomaly(anomaly, check_nan)


def uses_kg(model_name):
    """True for a model that reads the knowledge graph (a RecBole ``KnowledgeRecommender``),
    whatever its training type: KGItemKNN and KGEASE are knowledge-aware but train in closed form."""
    from recbole.model.abstract_recommender import KnowledgeRecommender

    return issubclass(get_model(model_name), KnowledgeRecommender)


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
