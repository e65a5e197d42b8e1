# -*- coding: utf-8 -*-
"""Errors shared by every module of the package. Imports nothing of ours, so anything may import it."""


class UsageError(Exception):
    """A mistake in what the user asked for: reported on one line, exit code 2."""


class OutputError(UsageError):
    """A file or directory that cannot be written (disk full, permission, a file in the way, a
    name too long): one line naming the path; what was there before is kept."""


def os_error_line(exc, path=None):
    """One line for an ``OSError`` raised while writing ``path``."""
    where = path if path is not None else (exc.filename or "an output file")
    why = exc.strerror or type(exc).__name__
    return f"cannot write {where}: {why}; nothing was replaced (the previous file, if any, is kept)"


def split_overrides(tokens):
    """Turn ``--key=value`` tokens into a dict of strings (RecBole converts the values)."""
    overrides = {}
    for token in tokens:
        if not token.startswith("--") or "=" not in token or token.startswith("--="):
            raise UsageError(f"unrecognised argument {token!r} (configuration overrides are --key=value)")
        key, value = token[2:].split("=", 1)
        if key in overrides and overrides[key] != value:
            raise UsageError(f"--{key} given twice with different values")
        overrides[key] = value
    return overrides
