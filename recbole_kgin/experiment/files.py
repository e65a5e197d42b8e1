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


def sha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_commit(folder):
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return {"commit": out.stdout.strip(), "modified": bool(dirty.stdout.strip())}


def manifest(argv, groups):
    """What a result was made from: the command line, sha256 of every file in ``groups``
    (``{"dataset": [paths], "search_spaces": [...], "config_files": [...]}``), the versions of
    Python and the libraries, the git commit of this package's checkout (None when installed
    elsewhere) and the machine."""
    import importlib.metadata
    import os
    import platform
    import sys
    from pathlib import Path

    versions = {"python": platform.python_version()}
    for package in ("torch", "recbole", "ray", "numpy", "scipy", "pandas", "recbole-kgin"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    machine = {"platform": platform.platform(), "processor": platform.processor() or None,
               "cpu_count": os.cpu_count()}
    try:
        machine["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                     / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        machine["memory_gb"] = None
    try:
        import torch

        machine["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no CUDA build or driver: no GPU to name
        machine["gpus"] = []
    files = {name: [{"path": str(p), "sha256": sha256(p), "bytes": Path(p).stat().st_size}
                    for p in sorted({str(p) for p in paths}) if Path(p).is_file()]
             for name, paths in groups.items()}
    return {"command": list(argv), "executable": sys.executable, "files": files,
            "versions": versions, "git": _git_commit(Path(__file__).resolve().parents[2]),
            "machine": machine}
