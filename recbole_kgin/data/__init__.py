"""Dataset tools: conversion of KGIN/KGAT text-format datasets into RecBole atomic files.

The converter lives in :mod:`recbole_kgin.data.convert` (``convert.convert(...)`` and the
command-line ``convert.main(argv)``); the module name is deliberately not shadowed here.
"""

from recbole_kgin.data.convert import ConvertError, main

__all__ = ["ConvertError", "main"]
