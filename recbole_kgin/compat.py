# -*- coding: utf-8 -*-
"""Shims that let RecBole 1.2.1 run on current NumPy and SciPy. Applied once, when the package is
imported (``recbole_kgin/__init__.py``); nothing else in the package patches a library.

Each shim restores exactly one removed API, and only where it is missing, so on old versions of
the libraries this module changes nothing.
"""

import numpy as np


def _restore_numpy_aliases():
    """NumPy 2.0 removed ``np.float_``, ``np.complex_`` and ``np.unicode_``. RecBole 1.2.1 uses them
    in ``Config.compatibility_settings`` (recbole/config/configurator.py, run by every Config), which
    maps ``np.float`` / ``np.complex`` / ``np.unicode`` onto them."""
    aliases = {"float_": np.float64, "complex_": np.complex128, "unicode_": np.str_}
    for name, value in aliases.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def _restore_dok_update():
    """SciPy 1.12 removed ``dok_matrix._update`` (the dok matrix is no longer a ``dict``; its entries
    live in ``_dict``). RecBole 1.2.1 builds its normalised adjacency with ``A._update(data_dict)`` in
    LightGCN, NGCF, NCL, GCMC, SpectralCF, KGIN and MCCLK (``get_norm_adj_mat``)."""
    from scipy.sparse import dok_matrix

    if hasattr(dok_matrix, "_update"):
        return

    def _update(self, data):
        self._dict.update(data)

    dok_matrix._update = _update


def apply():
    _restore_numpy_aliases()
    _restore_dok_update()
