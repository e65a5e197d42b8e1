# -*- coding: utf-8 -*-
"""Reading a model's own on/off configuration keys."""


def bool_option(config, key, default=True):
    """``config[key]`` as a bool (``default`` when unset); anything else is a ValueError naming
    the key."""
    value = config[key]
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValueError(f"config key '{key}' = {value!r}: expected True or False")
    return value
