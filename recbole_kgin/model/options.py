# -*- coding: utf-8 -*-
"""Reading the models' own configuration keys."""


def checked_bool(key, value, default):
    """``value`` of configuration key ``key`` as a bool (``default`` when None); anything else is a
    ValueError naming the key."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValueError(f"config key '{key}' = {value!r}: expected True or False")
    return value


def bool_option(config, key, default=True):
    """``config[key]`` as a bool (:func:`checked_bool`)."""
    return checked_bool(key, config[key], default)


def option(config, key, default):
    """``config[key]``, or ``default`` when the key is missing or None."""
    return config[key] if key in config and config[key] is not None else default
