# -*- coding: utf-8 -*-
"""RecBole ``Config`` that knows this package's models and property files.

Configuration is layered, later layers winning:

1. RecBole's own defaults (``overall.yaml``, its model and dataset files, ``knowledge_base.yaml``);
2. this project's ``properties/overall.yaml``;
3. ``properties/model/<model>.yaml``;
4. ``properties/dataset/<dataset>.yaml``;
5. the file a conversion generated beside the data, ``<data_path>/<dataset>/<dataset>.yaml``;
6. what the user passes: config files, then the config dict (the command line of
   ``run_recbole_kgin.py`` arrives here: ``--key=value`` pairs become the config dict).

Unlike RecBole's ``Config``, ``sys.argv`` is not read unless ``cmd_line=True``: the same code runs
inside pytest, Ray workers and sub-commands whose own flags are not configuration keys.

Everything is checked before any data is read (:mod:`recbole_kgin.config_check`): YAML errors name
the file and line, unknown keys are refused with the closest known key, model names are
case-insensitive, and the values of the common keys are checked for type and range.
"""

import os
from pathlib import Path

import yaml

from recbole.config import Config as RecBoleConfig

from recbole_kgin.config_check import check_device, check_keys, check_values, resolve_model
from recbole_kgin.errors import UsageError
from recbole_kgin.utils import get_model

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROPERTIES_DIR = PROJECT_ROOT / "properties"
ATOMIC_DATA_DIR = PROJECT_ROOT / "atomic_data"

# models whose RecBole defaults live under another name in RecBole's properties/model/
RECBOLE_YAML_NAME = {"RecBoleKGIN": "KGIN"}


def read_yaml(file, loader=None):
    """A YAML config file as a dict; a one-line error naming the file (and line) otherwise."""
    if not os.path.isfile(file):
        raise FileNotFoundError(f"config file not found: {file}")
    try:
        with open(file, "r", encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError:
        raise UsageError(f"{file}: not a UTF-8 text file") from None
    try:
        data = yaml.load(text, Loader=loader or yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UsageError(f"{where}: YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{file}: expected 'key: value' lines at the top level, "
                         f"found a {type(data).__name__}")
    return data


class Config(RecBoleConfig):
    """Drop-in replacement for :class:`recbole.config.Config` (same arguments, plus ``cmd_line``)."""

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None,
                 cmd_line=False):
        self._read_cmd_line = cmd_line
        self._key_sources = {}
        super().__init__(model, dataset, config_file_list, config_dict)
        check_device(self.final_config_dict, self._key_sources)

    def _load_cmd_line(self):
        return super()._load_cmd_line() if self._read_cmd_line else {}

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise KeyError("config key 'model' is not set (pass --model=NAME)")
        if isinstance(model, str):
            model = resolve_model(model)
            model_class = get_model(model)
        else:
            model_class, model = model, model.__name__
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise KeyError("config key 'dataset' is not set (pass --dataset=NAME)")
        return model, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(
            RECBOLE_YAML_NAME.get(model, model), model_class, dataset
        )
        self._update_internal_config_dict(str(PROPERTIES_DIR / "overall.yaml"))
        if "data_path" not in self.external_config_dict:
            self.internal_config_dict["data_path"] = str(ATOMIC_DATA_DIR)
        model_file = PROPERTIES_DIR / "model" / f"{model}.yaml"
        if model_file.is_file():
            self._update_internal_config_dict(str(model_file))
        data_path = self.external_config_dict.get(
            "data_path", self.internal_config_dict["data_path"]
        )
        for dataset_file in (
            PROPERTIES_DIR / "dataset" / f"{dataset}.yaml",
            Path(data_path) / dataset / f"{dataset}.yaml",
        ):
            if dataset_file.is_file():
                loaded = self._update_internal_config_dict(str(dataset_file)) or {}
                # a new list: RecBole's category lists are shared module-level objects
                self.parameters["Dataset"] = self.parameters["Dataset"] + [
                    key for key in loaded if key not in self.parameters["Dataset"]
                ]

    def _load_config_files(self, file_list):
        merged = {}
        for file in file_list or []:
            data = read_yaml(file, self.yaml_loader)
            for key in data:
                self._key_sources[key] = f"config file {file}"
            merged.update(data)
        return merged

    def _load_variable_config_dict(self, config_dict):
        for key in config_dict or {}:
            self._key_sources[key] = f"--{key}"
        return super()._load_variable_config_dict(config_dict)

    def _get_final_config_dict(self):
        final = super()._get_final_config_dict()
        check_keys(self.external_config_dict, self.internal_config_dict, self._key_sources)
        check_values(final, self._key_sources, model=self.model)
        return final
