# -*- coding: utf-8 -*-
"""Result files, written atomically (temporary file in the same folder, fsync, rename) so that an
interrupted run never leaves a half-written file behind."""

import json
import os
import tempfile
from pathlib import Path


def write_atomic(path, data):
    """Write ``data`` (str or bytes) to ``path`` through a temporary file and ``os.replace``. The
    file gets the usual permissions (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
