# -*- coding: utf-8 -*-
"""Checks that run before anything is written or Ray starts: output paths, the Ray cluster's
address, and whether any node can hold one trial. Each failure is one
:class:`~recbole_kgin.errors.UsageError` line naming the option."""

import math
import os
import socket
import time
from pathlib import Path

from recbole_kgin.errors import UsageError

ADDRESS_TIMEOUT_S = 30.0


def _exists(path):
    try:
        return path.exists()
    except OSError:  # e.g. a name too long to look up
        return False


def check_output_dir(path, option):
    """``path`` must be a directory or creatable as one: every existing part a directory, the
    first existing ancestor writable, every name within the file system's length limit."""
    path = Path(path).expanduser()
    absolute = Path(os.path.abspath(path))
    ancestor = absolute
    while not _exists(ancestor):
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{option} {path}: {ancestor} is a file, not a directory")
    try:
        name_max = os.pathconf(ancestor, "PC_NAME_MAX")
        path_max = os.pathconf(ancestor, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    for part in absolute.relative_to(ancestor).parts:
        if len(os.fsencode(part)) > name_max:
            raise UsageError(f"{option} {path}: the name {part[:40]}... is longer than the "
                             f"{name_max} bytes this file system allows")
    if len(os.fsencode(str(absolute))) >= path_max:
        raise UsageError(f"{option} {path}: the path is longer than the {path_max} bytes this "
                         "file system allows")
    if absolute == ancestor:
        if not os.access(absolute, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {path}: the directory is not writable")
    elif not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: cannot create it, {ancestor} is not writable")


def parse_host_port(address):
    """``(host, port)`` of a ``HOST:PORT`` address, or None for ``auto`` / no address."""
    if address in (None, "", "auto", "local"):
        return None
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--address {address}: expected auto or HOST:PORT")
    return host.strip("[]"), int(port)


def ray_bootstrap_address(address):
    """The ``HOST:PORT`` Ray's driver really connects to for ``address``: on Linux Ray replaces a
    loopback host by this machine's outward address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    (None when Ray cannot say)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(str(address))
    except Exception:  # noqa: BLE001 - an older or newer Ray: nothing more to check
        return None


def check_reachable(address, timeout=None, connect=socket.create_connection,
                    bootstrap=ray_bootstrap_address):
    """Fail in about ``timeout`` seconds with one line when nothing accepts connections at a
    ``HOST:PORT`` address (Ray itself retries for minutes), or when the address Ray's driver
    turns it into (``bootstrap``) does not answer although the given one does: a head bound to
    127.0.0.1 only, reached through Ray's outward-address rewrite, which would hang."""
    target = parse_host_port(address)
    if target is None:
        return
    timeout = ADDRESS_TIMEOUT_S if timeout is None else timeout
    _wait_for(address, target, timeout, connect)
    rewritten = bootstrap(address)
    if rewritten and parse_host_port(rewritten) != target:
        try:  # the cluster answered a moment ago: a short probe is enough
            _wait_for(rewritten, parse_host_port(rewritten), min(5.0, timeout), connect)
        except UsageError:
            raise UsageError(
                f"--address {address}: a Ray cluster answers there, but Ray's driver would "
                f"connect to {rewritten} (Ray's rewrite of a loopback host), where nothing "
                "answers; start the head without a loopback --node-ip-address, or set "
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for the head and for this command") from None


def _wait_for(address, target, timeout, connect):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        left = deadline - time.monotonic()
        try:
            with connect(target, timeout=max(0.5, min(5.0, left))):
                return
        except OSError as exc:
            last = exc.strerror or type(exc).__name__
        if time.monotonic() + 1.0 > deadline:
            break
        time.sleep(1.0)
    raise UsageError(f"--address {address}: no Ray cluster answers there ({last}; tried for "
                     f"{timeout:.0f} s); start one with 'ray start --head --port PORT' or give "
                     "the right address")


def _number(value):
    return float(value) if value is not None else 0.0


def unmet_resources(request, nodes):
    """Why no node in ``nodes`` (Ray resource dicts: ``CPU``, ``GPU``, ``memory`` in bytes) can
    hold a trial asking for ``request`` (``cpu``, ``gpu``, ``memory``), or None when one can."""
    nodes = list(nodes)
    want = {"CPU": _number(request.get("cpu")), "GPU": _number(request.get("gpu")),
            "memory": _number(request.get("memory"))}
    if any(all(_number(node.get(key)) + 1e-9 >= need for key, need in want.items())
           for node in nodes):
        return None
    have = "; ".join(
        f"{_number(n.get('CPU')):g} CPU, {_number(n.get('GPU')):g} GPU, "
        f"{_number(n.get('memory')) / 2**30:.1f} GiB" for n in nodes) or "no live node"
    missing = [key for key in want if want[key] > max((_number(n.get(key)) for n in nodes),
                                                      default=0.0)]
    asked = ", ".join(f"{want[k] / 2**30:.1f} GiB memory" if k == "memory" else f"{want[k]:g} {k}"
                      for k in (missing or want))
    return f"a trial asks for {asked}, which no node has (nodes: {have})"


def local_resources():
    """What Ray would offer when it starts on this machine."""
    import torch

    cpus = os.cpu_count() or 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = math.inf
    return {"CPU": float(cpus), "GPU": float(gpus), "memory": float(memory)}


def check_local_resources(cpus, gpus, address):
    """Without ``--address`` Ray starts here: refuse a per-trial request this machine cannot
    meet before anything is written (Ray would otherwise wait for it forever)."""
    if address not in (None, ""):
        return
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # the caller's own Ray: checked against its nodes
        return
    why = unmet_resources({"cpu": cpus, "gpu": gpus}, [local_resources()])
    if why:
        raise UsageError(f"--cpus-per-trial {cpus:g} --gpus-per-trial {gpus:g}: {why}")
