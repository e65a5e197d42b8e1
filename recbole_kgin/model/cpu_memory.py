# -*- coding: utf-8 -*-
"""Keep freed CPU memory in the process for reuse (glibc only), so big tensors stop page-faulting.

A KGIN step allocates and frees dozens of tensors of 25-60 MB. glibc serves every block above its
mmap threshold (at most 32 MB) with a fresh ``mmap`` and returns it with ``munmap`` when freed, so
each such tensor is zero-filled by the kernel page by page on every step. ``retain_freed_memory``
asks glibc (``mallopt``) to serve large blocks from its heap and not to trim the heap, so freed
blocks are reused. Process-wide; peak memory is unchanged, but the process keeps its peak
allocation until it exits. A no-op (returns False) where the C library is not glibc.
"""

import ctypes
import ctypes.util
import platform

from recbole_kgin.model.options import checked_bool

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

_applied = None


def retain_freed_memory():
    """Apply the glibc settings once per process; True when they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok_mmap = libc.mallopt(M_MMAP_MAX, 0)  # no mmap for large blocks: use the heap
        ok_trim = libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)  # int: about 2 GB before trimming
    except (OSError, AttributeError):
        return False
    _applied = bool(ok_mmap and ok_trim)
    return _applied


def apply_setting(value):
    """The configuration key ``retain_cpu_memory``: True applies :func:`retain_freed_memory`,
    False or None leaves glibc's defaults. Returns whether the settings are in effect."""
    return checked_bool("retain_cpu_memory", value, False) and retain_freed_memory()
