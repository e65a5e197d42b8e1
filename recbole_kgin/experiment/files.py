# -*- coding: utf-8 -*-
"""Result files, written atomically (temporary file in the same folder, fsync, rename) so that an
interrupted run never leaves a half-written file behind."""

import json


def write_atomic(path, data):
    """Write ``data`` (str or bytes) to ``path`` atomically with the checkpoint writer
    (:func:`recbole_kgin.checkpoint.atomic_write`: temporary file, fsync, rename, usual mode)."""
    from recbole_kgin.checkpoint import atomic_write

    payload = data.encode("utf-8") if isinstance(data, str) else data
    atomic_write(path, lambda handle: handle.write(payload))


def write_npz(path, arrays, compressed=False):
    """``np.savez`` (``np.savez_compressed``) of ``arrays`` (no pickled objects), written
    atomically."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def write_json(path, obj):
    """Strict JSON (no NaN / Infinity: they become null)."""
    write_atomic(path, json.dumps(_finite(obj), indent=2, default=jsonable, allow_nan=False) + "\n")


def _finite(obj):
    import math

    if hasattr(obj, "item") and not isinstance(obj, (dict, list, tuple, str)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def read_json(path):
    """The parsed file, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None
